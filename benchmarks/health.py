"""Health benchmark: the overview and the station health page's queries on the reference mast.

Reference mast: 80 channels x 6 years of 10-minute data = 25.2 M readings, built once per
run exactly as ``benchmarks/ingest.py`` builds it (the same generated TOA5 file, imported
in-process by ``core.ingest.import_file``: readings and rollups), plus a few hundred flags
and suggested flags spread over the six years and the ranges timed here, so the flag
paths are exercised. Then ``ANALYZE`` (as autovacuum would have done).

Each query is called through its core function (what the page waits for, pandas included),
once to warm up (reported as "first"), then ``--repeat`` times: median, min and max.
Target: each median <= 300 ms.

- ``core.stations.overview`` as of the day after the last reading;
- ``core.health.heatmap`` over 30 days and over 1 year, with and without ``exclude_flagged``;
- ``core.series.series`` of 4 channels over 6 years (daily), 1 month (hourly) and 3 days
  (raw), with and without ``exclude_flagged``;
- ``core.health.flag_bands`` of those 4 channels over 6 years and over 1 year;
- ``core.health.pair_ratio`` and ``core.health.scatter`` of two anemometers over 1 year.

Results are printed as Markdown and written to a section of ``docs/benchmarks.md``
(``<!-- bench:health-level<N>-<kind> -->``, replaced on the next run of the same kind).

    .venv/bin/python benchmarks/health.py                     # embedded PostgreSQL (level 0)
    .venv/bin/python benchmarks/health.py --database-url postgresql://postgres@127.0.0.1:5433/postgres
    .venv/bin/python benchmarks/health.py --years 1 --no-doc  # a quick check
    .venv/bin/python benchmarks/health.py --keep              # keep the built mast; then:
    .venv/bin/python benchmarks/health.py --home DIR --reuse-db NAME   # time it again, no rebuild
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, p)

import ingest as bench  # noqa: E402  (benchmarks/ingest.py: the reference file and servers)

from core import db, flags, health, ingest, qc, series, stations  # noqa: E402

TARGET_MS = 300.0
SEED = 4242
N_FLAGS = 300
N_SUGGESTIONS = 300
DAY = timedelta(days=1)
#: The channels charted (4) and the anemometer pair compared.
SERIES_COLUMNS = ("WS_120m_Avg", "WS_110m_Avg", "WD_120m_Avg", "T_120m_Avg")
PAIR = ("WS_120m_Avg", "WS_110m_Avg")


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


# --- the reference mast --------------------------------------------------------------------


def build_mast(server: bench.Server, template: str, path: Path, n_readings: int,
               kind: str = "health") -> tuple[str, str, float]:
    """A database holding the imported file; (name, url, seconds)."""
    name, url = server.create(kind, template=template)
    with bench.worker_settings(url, server.home) as settings:
        file_id = bench.receive_file(url, path, server.home)
        t0 = time.perf_counter()
        row = ingest.import_file(file_id, url, settings)
        seconds = time.perf_counter() - t0
        assert row["status"] == "imported" and row["n_readings"] == n_readings, row
    return name, url, seconds


def mast_arguments(p: argparse.ArgumentParser, repeat: int) -> None:
    """The options of a benchmark on the reference mast (built, kept or reused)."""
    p.add_argument("--years", type=float, default=6, help="years of 10-minute rows (default 6)")
    p.add_argument("--channels", type=int, default=80, help="numeric channels (default 80)")
    p.add_argument("--database-url", help="server to use (a scratch database is created and dropped on it); "
                   "default: an embedded PostgreSQL in a temporary STATIONMANAGER_HOME")
    p.add_argument("--repeat", type=int, default=repeat, help=f"timed runs of each measurement (default {repeat})")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--keep", action="store_true", help="keep the built database (and the embedded home)")
    p.add_argument("--home", type=Path, help="embedded server home to use (kept); default: a temporary one")
    p.add_argument("--reuse-db", metavar="NAME", help="time this already built database on the server; no build")


def run_in_home(args: argparse.Namespace, prefix: str, run: Callable[[Path], int]) -> int:
    """``run(home)`` in ``--home`` or a temporary home, removed afterwards unless kept."""
    home = args.home or Path(tempfile.mkdtemp(prefix=prefix))
    home.mkdir(parents=True, exist_ok=True)
    try:
        return run(home)
    finally:
        db.close_pools()
        if not (args.keep or args.home is not None):
            bench.remove_home(home)


def close_mast(args: argparse.Namespace, server: bench.Server, template: str | None, name: str | None) -> None:
    """Drop what :func:`open_mast` built, unless ``--keep`` (or ``--reuse-db``)."""
    db.close_pools()
    if template:
        server.drop(template)
    if name and not args.keep and not args.reuse_db:
        server.drop(name)
    elif name:
        log(f"kept database {name} on {db.redact(server.admin_url)} (home {server.home})")


def open_mast(args: argparse.Namespace, server: bench.Server, n_readings: int, kind: str
              ) -> tuple[str | None, str, str, float | None]:
    """The reference mast to time: ``(template or None, name, url, import seconds or None)``,
    built (the template to drop afterwards) or ``--reuse-db``."""
    if args.reuse_db:
        return None, args.reuse_db, db.with_dbname(server.admin_url, args.reuse_db), None
    path, gen_s, cached = bench.generate_file(args.years, args.channels)
    log(f"file {path.relative_to(ROOT)} ({'cached' if cached else f'generated in {gen_s:.1f} s'})")
    template = bench.migrated_template(server)
    name, url, import_s = build_mast(server, template, path, n_readings, kind)
    log(f"imported {n_readings / 1e6:.1f} M readings in {import_s:.1f} s into {name}")
    return template, name, url, import_s


def add_flags(conn: psycopg.Connection, station_id: int, first: datetime, end: datetime) -> dict[str, int]:
    """``N_FLAGS`` flags and ``N_SUGGESTIONS`` suggestions, deterministic: spread over the
    whole range, plus some in the last month on the charted channels."""
    rng = random.Random(SEED)
    chans = flags.fetch_all(conn, "station_channels", station_id=station_id)
    ids = [c["id"] for c in chans]
    by_name = {c["column_name"]: c["id"] for c in chans}
    charted = [by_name[c] for c in SERIES_COLUMNS]
    steps = int((end - first) / timedelta(minutes=10))

    def when(lo: datetime, n_steps: int) -> datetime:
        return lo + timedelta(minutes=10) * rng.randrange(n_steps)

    n_recent = N_FLAGS // 10
    for i in range(N_FLAGS):
        if i < n_recent:  # the last 30 days, on the charted channels
            start = when(end - 30 * DAY, 30 * 144)
            chosen: Any = rng.sample(charted, rng.randint(1, 4))
        else:
            start = when(first, steps)
            chosen = "station" if rng.random() < 0.1 else rng.sample(ids, rng.randint(1, 8))
        length = timedelta(minutes=10) * rng.randint(6, 3 * 144)
        flags.add_flag(conn, station_id, chosen, start, min(start + length, end), rng.choice(flags.CATEGORIES),
                       note=f"benchmark flag {i}", author="bench")
    rules = [r for r in qc.RULE_TEXT if r not in ("gap", "duplicates")]
    names = list(by_name)
    found = []
    for i in range(N_SUGGESTIONS):
        start = when(end - 30 * DAY, 30 * 144) if i < N_SUGGESTIONS // 10 else when(first, steps)
        length = timedelta(minutes=10) * rng.randint(3, 2 * 144)
        found.append(qc.Finding(rng.choice(rules), (rng.choice(names),), start, min(start + length, end),
                                rng.choice(("suspect", "fail")), ""))
    counts = flags.store_findings(conn, station_id, found, first, end)
    return {"flags": N_FLAGS, "suggestions": counts["new"]}


# --- the timed queries ------------------------------------------------------------------------


def cases(conn: psycopg.Connection, station_id: int, first: datetime, end: datetime
          ) -> list[tuple[str, Callable[[], Any]]]:
    """(label, call) of every query timed; ``end`` is the midnight after the last reading."""
    chans = {c["column_name"]: c["id"] for c in flags.fetch_all(conn, "station_channels", station_id=station_id)}
    four = [chans[c] for c in SERIES_COLUMNS]
    a, b = (chans[c] for c in PAIR)
    m30, y1 = end - 30 * DAY, end - 365 * DAY
    d3 = end - 3 * DAY
    out: list[tuple[str, Callable[[], Any]]] = [
        ("overview (as of the day after the last reading)", lambda: stations.overview(conn, now=end)),
    ]
    for label, start in (("30 days", m30), ("1 year", y1)):
        for excl in (False, True):
            out.append((f"health.heatmap, {label}" + (", exclude_flagged" if excl else ""),
                        lambda s=start, e=excl: health.heatmap(conn, station_id, s, end, exclude_flagged=e)))
    for label, start, res in (("6 years, daily", first, "1d"), ("1 month, hourly", m30, "1h"),
                              ("3 days, raw", d3, "raw")):
        for excl in (False, True):
            out.append((f"series.series, 4 channels, {label}" + (", exclude_flagged" if excl else ""),
                        lambda s=start, r=res, e=excl: series.series(conn, four, s, end, resolution=r,
                                                                     exclude_flagged=e)))
    out += [
        ("health.flag_bands, 4 channels, 6 years", lambda: health.flag_bands(conn, station_id, four, first, end)),
        ("health.flag_bands, 4 channels, 1 year", lambda: health.flag_bands(conn, station_id, four, y1, end)),
        ("health.pair_ratio, 1 year", lambda: health.pair_ratio(conn, a, b, y1, end)),
        ("health.scatter, 1 year", lambda: health.scatter(conn, a, b, y1, end)),
    ]
    return out


def size_of(result: Any) -> str:
    """Rows (or points) a query returned, for the table."""
    if hasattr(result, "frame"):
        result = result.frame
    with contextlib.suppress(TypeError):
        return f"{len(result):,}"
    return ""


def time_case(call: Callable[[], Any], repeat: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = call()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        runs.append(time.perf_counter() - t0)
    return {"first": first, "runs": runs, "median": statistics.median(runs), "min": min(runs), "max": max(runs),
            "rows": size_of(result)}


# --- report ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def render(ctx: dict[str, Any], results: list[tuple[str, dict[str, Any]]]) -> str:
    over = [label for label, r in results if r["median"] * 1000 > TARGET_MS]
    lines = [
        f"## Health queries: {ctx['title']}",
        "",
        *bench.environment_lines(ctx),
        f"- Mast: {ctx['years']:g} years × {ctx['channels']} channels = {ctx['n_readings'] / 1e6:.1f} M readings "
        f"({ctx['first']:%Y-%m-%d} .. {ctx['end']:%Y-%m-%d}), "
        + (f"imported in {ctx['import_s']:.1f} s; " if ctx.get("import_s") else "reused; ")
        + f"{ctx['flags']} flags, {ctx['suggestions']} suggested flags",
        f"- Load average (1 min) before / after the timed runs: {ctx['load'][0]:.1f} / {ctx['load'][1]:.1f} "
        "on 2 CPUs (other processes on the machine add noise)",
        f"- Each query: one warm-up call (\"first\"), then {ctx['repeat']} timed calls of its core function "
        "(pandas included)",
        f"- Command: `{ctx['command']}`",
        "",
        f"| query | median | min–max | first | rows | ≤ {TARGET_MS:.0f} ms |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in results:
        ok = "yes" if r["median"] * 1000 <= TARGET_MS else "**no**"
        lines.append(f"| {label} | {ms(r['median'])} | {ms(r['min'])}–{ms(r['max'])} | {ms(r['first'])} "
                     f"| {r['rows']} | {ok} |")
    lines += ["", f"Target (each median ≤ {TARGET_MS:.0f} ms): "
              + ("**met** by every query." if not over else f"**NOT met** by: {'; '.join(over)}."), ""]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def _interrupt(signum, frame):  # SIGTERM (and SIGINT in the background): clean up first
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mast_arguments(p, repeat=5)
    args = p.parse_args(argv)
    command = "python benchmarks/health.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    n_readings = bench.n_rows(args.years) * args.channels
    return run_in_home(args, "sm-bench-health-", lambda home: _run(args, command, n_readings, home))


def _run(args, command: str, n_readings: int, home: Path) -> int:
    server = bench.Server(args.database_url, home)
    log(f"server: PostgreSQL {server.caps['postgresql']}, storage level {server.level}"
        + (f" (embedded, home {home})" if server.embedded else f" at {db.redact(server.admin_url)}"))
    template = name = None
    import_s = None
    try:
        template, name, url, import_s = open_mast(args, server, n_readings, "health")
        with db.connect(url, autocommit=True) as conn:
            st = flags.station_row(conn, bench.STATION)
            first, last = stations.time_range(conn, st["id"])
            end = last.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + DAY
            if not args.reuse_db:
                t0 = time.perf_counter()
                added = add_flags(conn, st["id"], first, end)
                conn.execute("ANALYZE")
                log(f"added {added['flags']} flags and {added['suggestions']} suggestions, analyzed, "
                    f"in {time.perf_counter() - t0:.1f} s")
            n_flags = conn.execute("SELECT count(*) FROM flag WHERE deleted_at IS NULL").fetchone()["count"]
            n_sugg = conn.execute("SELECT count(*) FROM suggested_flag").fetchone()["count"]
            tsdb = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            load0 = os.getloadavg()[0]
            results = []
            for label, call in cases(conn, st["id"], first, end):
                r = time_case(call, args.repeat)
                results.append((label, r))
                log(f"{label}: median {ms(r['median'])} ({ms(r['min'])}–{ms(r['max'])}), first {ms(r['first'])}, "
                    f"{r['rows']} rows")
            load1 = os.getloadavg()[0]
    finally:
        close_mast(args, server, template, name)

    kind = "embedded PostgreSQL" if server.embedded else "external server"
    level_name = {0: "PostgreSQL", 1: "TimescaleDB Apache", 2: "TimescaleDB community"}[server.level]
    ctx = {
        "title": f"{level_name} (level {server.level}, {kind}) — {args.years:g} y × {args.channels} channels",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench.machine(), "server": server, "timescaledb": tsdb["extversion"] if tsdb else None,
        "years": args.years, "channels": args.channels, "n_readings": n_readings, "first": first, "end": end,
        "import_s": import_s, "flags": n_flags, "suggestions": n_sugg, "load": (load0, load1),
        "repeat": args.repeat, "command": command,
    }
    bench.publish(f"health-{server.tag}", render(ctx, results), not args.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
