"""Fleet benchmark: many masts' daily files through two workers, and the pages' queries.

Default scale (issue 13): 20 masts × 730 days × 40 channels of 10-minute data = 84.1 M
readings, as 14,600 daily TOA5 files. The files are the generator of ``benchmarks/ingest.py``
(one file cut at midnight, as ``benchmarks/sync.py`` does), each mast's copy with its own
logger name in the header (so no file is a duplicate of another); they are written one day
at a time to a scratch folder, received (``core.ingest.receive``: file store + a
``source_file`` row), and each mast's files queued together with ``core.jobs.queue_imports``
as a sync or the inbox delivers them (consecutive files of a station grouped into batch
jobs). ``--workers`` real ``python -m ingest_worker`` processes run meanwhile.

Measured, results as Markdown in a section of ``docs/benchmarks.md``:

1. **import** – from the first file received to every file imported (readings/s, files/s),
   then to every job done (quality checks included); the workers' peak RSS;
2. **size** – growth of ``pg_database_size`` (after a CHECKPOINT) per million readings,
   ``reading`` with its key, and the file store;
3. **queries idle** – what the Overview page and the Station page wait for, through the
   same core functions the pages call (``--repeat`` runs after a warm-up; median and p95):
   the Overview (``stations.overview`` + ``sync_health.stations`` + ``stations.queue_progress``)
   and the Station page's default view (station, channels, time range, sync health, the
   availability heatmap of the default dates, ``series.series`` of the default channels,
   ``flag_bands``), plus a chart of 4 channels over the whole range and the heatmap of 400
   days (the page's widest). The station cycles over the masts;
4. **queries while importing** – ``--load-days`` further day(s) for every mast received and
   queued at once; the same queries loop until the workers have imported them (only runs
   that ended before the last file was imported count);
5. **rollup catch-up** – ``core.rollups.refresh_rollups`` of the newest day for each mast's
   channels (what a worker runs after importing a day file; committed), median and p95 per
   station-day, and the same for all masts in one set-based call.

Targets: each page median ≤ 300 ms; rollup catch-up ≤ 100 ms per station-day.

    .venv/bin/python benchmarks/fleet.py --masts 4 --days 90 --no-doc      # a quick check
    .venv/bin/python benchmarks/fleet.py                                   # full scale, embedded
    .venv/bin/python benchmarks/fleet.py --database-url postgresql://postgres@127.0.0.1:5433/postgres

With ``--keep`` (and ``--home PATH`` for where the home goes), the database, the home and a
record of the run (``fleet-run.json`` in the home: the database's name, the commit, the import
and size figures) are kept, and the command to measure the queries again is printed:
``--reuse HOME`` skips generating and importing, brings the kept database's schema up to date
as ``stationmanager db upgrade`` does (so a new migration's backfill runs on every reading;
timed), then runs steps 3–5, the further days being the ones after the last imported. Its
section of the document keeps the import and size figures of the kept run and names the commit
of each.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.ingest import (  # noqa: E402
    STATION, Server, _interrupt, environment_lines, generate_file, log, machine, mb, migrated_template, reading_size,
    publish, remove_home,
)
from benchmarks.size import database_bytes  # noqa: E402
from benchmarks.sync import Worker, day_files  # noqa: E402
from core import db, health, ingest, jobs, rollups, schema, series, stations, sync_health, webdata  # noqa: E402
from core.settings import Settings  # noqa: E402

TARGET_MS = 300.0
TARGET_ROLLUP_MS = 100.0
DAY = timedelta(days=1)


def mast_name(m: int) -> str:
    return f"Fleet Mast {m + 1:02d}"


# --- delivering the files -----------------------------------------------------------------


class Delivery:
    """Day files of every mast, received into ``url`` and queued per mast."""

    def __init__(self, url: str, home: Path, big: Path, total_days: int) -> None:
        self.url, self.home, self.big, self.total_days = url, home, big, total_days
        self.settings = Settings(database_url=url, home=home)
        self.scratch = home / "incoming"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.bytes = 0

    def deliver(self, masts: int, first_day: int, n_days: int, queue: bool = True) -> list[int]:
        """Receive days ``first_day .. first_day + n_days`` of each mast; queue them (per mast)."""
        ids: list[int] = []
        for m in range(masts):
            name = mast_name(m)
            mine: list[int] = []
            with db.connect(self.url) as conn:
                for d, (day, header, rows) in enumerate(day_files(self.big, first_day + n_days, whole=False)):
                    if d < first_day:
                        continue
                    data = header.replace(f'"{STATION}"'.encode(), f'"{name}"'.encode(), 1) + rows
                    path = self.scratch / f"{name.replace(' ', '_')}_Met10min_{day:%Y%m%d}.dat"
                    path.write_bytes(data)
                    rec = ingest.receive(conn, path, station=name, origin="sync", actor="bench",
                                         settings=self.settings)
                    assert rec.status == "queued", rec
                    mine.append(rec.id)
                    self.bytes += len(data)
                    path.unlink()
                conn.commit()
            if queue:
                jobs.queue_imports(self.url, mine)
            ids += mine
        return ids


def busy(conn: psycopg.Connection, ids: list[int]) -> dict[str, int]:
    return {r["status"]: r["n"] for r in conn.execute(
        "SELECT status, count(*) AS n FROM source_file WHERE id = ANY(%s) GROUP BY 1", (ids,))}


def jobs_waiting(conn: psycopg.Connection) -> int:
    """Jobs queued for now or running (periodic ones scheduled for later do not count)."""
    return conn.execute("SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'doing' OR "
                        "(status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now()))").fetchone()["n"]


def wait_files(conn, ids: list[int], workers: list[Worker], timeout: float, while_waiting: Callable[[], None]
               ) -> float:
    """Seconds until none of ``ids`` is queued or importing, calling ``while_waiting`` meanwhile."""
    t0 = time.perf_counter()
    while True:
        counts = busy(conn, ids)
        if not counts.get("queued") and not counts.get("importing"):
            break
        for w in workers:
            w.sample()
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"imports not done after {timeout:.0f} s: {counts}")
        if conn.execute("SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'sm:import_file' "
                        "AND status = 'failed'").fetchone()["n"]:
            raise RuntimeError(f"an import job failed:\n{workers[0].log_path.read_text()[-3000:]}")
        while_waiting()
    if counts != {"imported": len(ids)}:
        raise RuntimeError(f"files ended as {counts}:\n{workers[0].log_path.read_text()[-3000:]}")
    return time.perf_counter() - t0


def wait_jobs(conn, workers: list[Worker], timeout: float) -> float:
    t0 = time.perf_counter()
    while jobs_waiting(conn):
        for w in workers:
            w.sample()
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"jobs still waiting after {timeout:.0f} s")
        time.sleep(0.2)
    return time.perf_counter() - t0


# --- the pages' queries -------------------------------------------------------------------


def overview_page(conn: psycopg.Connection, now: datetime) -> int:
    rows = stations.overview(conn, now=now)
    sync_health.stations(conn, now=now)
    stations.queue_progress(conn)
    return len(rows)


def station_page(conn: psycopg.Connection, name: str) -> int:
    """The Station page's default view: the page's own calls, in its order."""
    station = stations.station(conn, name)
    channels = stations.channels(conn, station["id"])
    first, last = stations.time_range(conn, station["id"])
    sync_health.station(conn, station["id"])
    start, end = webdata.dates_to_range(webdata.default_dates(first, last))
    health.heatmap(conn, station["id"], start, end)
    ids = [c["id"] for c in webdata.default_channels(channels)]
    data = series.series(conn, ids, start, end)
    health.flag_bands(conn, station["id"], ids, start, end)
    return len(data.frame) if hasattr(data, "frame") else len(data)


def cases(conn: psycopg.Connection, masts: int, first: datetime, end: datetime
          ) -> list[tuple[str, Callable[[int], Any]]]:
    """(label, call(i)) of every query timed; the i-th call looks at mast ``i % masts``."""
    info = {}
    for m in range(masts):
        st = stations.station(conn, mast_name(m))
        chans = {c["column_name"]: c["id"] for c in stations.channels(conn, st["id"])}
        info[m] = (st["id"], [chans[c] for c in ("WS_120m_Avg", "WS_110m_Avg", "WD_120m_Avg", "T_120m_Avg")])
    days = (end - first).days
    heat_start = max(first, end - 400 * DAY)
    return [
        ("Overview page (overview + sync health + queue)", lambda i: overview_page(conn, end)),
        ("… of which stations.overview", lambda i: stations.overview(conn, now=end)),
        ("… of which sync_health.stations", lambda i: sync_health.stations(conn, now=end)),
        ("Station page, default view (last 30 days)", lambda i: station_page(conn, mast_name(i % masts))),
        (f"series.series, 4 channels, whole range ({days} days)",
         lambda i: series.series(conn, info[i % masts][1], first, end)),
        (f"health.heatmap, {(end - heat_start).days} days (the page's widest)",
         lambda i: health.heatmap(conn, info[i % masts][0], heat_start, end)),
    ]


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def stats(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "median": statistics.median(xs), "p95": p95(xs), "max": max(xs)} if xs else {"n": 0}


def time_idle(the_cases, repeat: int) -> dict[str, dict]:
    out = {}
    for label, call in the_cases:
        call(0)  # warm-up
        runs = []
        for i in range(repeat):
            t0 = time.perf_counter()
            call(i)
            runs.append(time.perf_counter() - t0)
        out[label] = stats(runs)
    return out


# --- rollups ------------------------------------------------------------------------------


def rollup_catch_up(url: str, masts: int, day: datetime) -> dict[str, Any]:
    per_station = []
    with db.connect(url) as conn:
        ids = {m: [c["id"] for c in stations.channels(conn, stations.station(conn, mast_name(m))["id"])]
               for m in range(masts)}
        conn.commit()
        for m in range(masts):
            t0 = time.perf_counter()
            rollups.refresh_rollups(conn, day, day + DAY - timedelta(microseconds=1), ids[m])
            conn.commit()
            per_station.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rollups.refresh_rollups(conn, day, day + DAY - timedelta(microseconds=1), [i for v in ids.values() for i in v])
        conn.commit()
        together = time.perf_counter() - t0
    return {"per_station": stats(per_station), "together": together, "together_per": together / masts}


# --- the run --------------------------------------------------------------------------------


def run(server: Server, template: str | None, home: Path, args, kept: dict[str, Any] | None = None
        ) -> dict[str, Any]:
    """The import (unless ``kept``: a kept run's record, whose database is used as it is
    after ``db upgrade``), then the query phases."""
    first = datetime(2019, 1, 1, tzinfo=UTC)
    if kept is None:
        imported_days = args.days
        total_days = args.days + args.load_days
        name, url = create_from(server, template)
        res: dict[str, Any] = {"db": name}
    else:
        name = kept["db"]
        url = db.with_dbname(server.admin_url, name)
        res = {"db": name}
        t0 = time.perf_counter()
        applied = schema.upgrade(url, Settings(database_url=url, home=home))["applied"]
        res["upgrade"] = {"seconds": time.perf_counter() - t0, "applied": applied, "load": os.getloadavg()[0]}
        log(f"db upgrade: {', '.join(applied) or 'nothing to apply'} in {res['upgrade']['seconds']:.1f} s")
        db.close_pools()
        imported_days = imported_days_of(url, args.masts)
        total_days = imported_days + args.load_days
        log(f"kept database {name}: {imported_days} days of {args.masts} masts imported")
    big, _, _ = generate_file(total_days / 365, args.channels)
    try:
        delivery = Delivery(url, home, big, total_days)
        workers = [Worker(url, home, f"fleet{i}") for i in range(args.workers)]
        for w in workers:
            w.__enter__()
        try:
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                if kept is None:
                    import_phase(server, url, home, args, delivery, workers, conn, res)
                    conn.execute("ANALYZE")  # as autovacuum would have done by now
                    res["size"] = size_of(server, url, home, res["import"]["readings"], res.pop("empty"))
                    log(f"size: database grew {mb(res['size']['db'])} "
                        f"({mb(res['size']['db'] * 1e6 / res['size']['readings'])} per M readings)")
                else:
                    conn.execute("ANALYZE")  # the new tables of a migration may have no statistics yet
                end = first + imported_days * DAY
                query_phases(url, args, delivery, workers, conn, first, end, imported_days, res)
            res["peak"] = [max(w.peak, w.hwm()) for w in workers]
        finally:
            for w in workers:
                w.__exit__(None, None, None)
    finally:
        db.close_pools()
        if not args.keep and kept is None:
            server.drop(name)
    return res


def create_from(server: Server, template: str, wait: float = 60.0) -> tuple[str, str]:
    """The scratch database, a copy of ``template``; waits while another session is still on the
    template (TimescaleDB's background workers visit a new database for a moment)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return server.create("fleet", template=template)
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def imported_days_of(url: str, masts: int) -> int:
    """Days of every mast in a kept database (one file a day and mast, all imported)."""
    with psycopg.connect(url) as conn:
        counts = dict(conn.execute("SELECT status, count(*) FROM source_file GROUP BY 1").fetchall())
    if set(counts) != {"imported"} or counts["imported"] % masts:
        raise SystemExit(f"the kept database does not hold whole imported days of {masts} masts: {counts}")
    return counts["imported"] // masts


def import_phase(server: Server, url: str, home: Path, args, delivery: Delivery, workers: list[Worker],
                 conn: psycopg.Connection, res: dict[str, Any]) -> None:
    res["empty"] = database_bytes(url)
    server.checkpoint()
    log(f"import: {args.masts} masts × {args.days} days × {args.channels} channels, "
        f"{args.workers} workers")
    t0 = time.perf_counter()
    ids = delivery.deliver(args.masts, 0, args.days)
    received = time.perf_counter() - t0
    log(f"import: {len(ids):,} files ({mb(delivery.bytes)}) received and queued in {received:.1f} s")
    wait_files(conn, ids, workers, args.timeout, lambda: time.sleep(0.5))
    imported = time.perf_counter() - t0
    n = int(conn.execute("SELECT sum(n_readings) AS n FROM source_file WHERE id = ANY(%s)",
                         (ids,)).fetchone()["n"])
    expected = args.masts * args.days * 144 * args.channels
    assert n == expected, (n, expected)
    log(f"import: all imported after {imported:.1f} s: {n / imported / 1e6:.3f} M readings/s, "
        f"{len(ids) / imported:.1f} files/s")
    wait_jobs(conn, workers, args.timeout)
    all_done = time.perf_counter() - t0
    log(f"import: every job (quality checks included) done after {all_done:.1f} s")
    res["import"] = {"files": len(ids), "bytes": delivery.bytes, "readings": n, "received_s": received,
                     "imported_s": imported, "all_done_s": all_done, "load": os.getloadavg()[0],
                     "peak": [max(w.peak, w.hwm()) for w in workers]}


def size_of(server: Server, url: str, home: Path, n: int, empty: int) -> dict[str, int]:
    size = database_bytes(url) - empty
    store = sum(f.stat().st_size for f in (home / "files").rglob("*") if f.is_file())
    with psycopg.connect(url) as plain:
        reading = sum(reading_size(plain, server.level).values())
    return {"db": size, "reading": reading, "store": store, "readings": n}


def query_phases(url: str, args, delivery: Delivery, workers: list[Worker], conn: psycopg.Connection,
                 first: datetime, end: datetime, imported_days: int, res: dict[str, Any]) -> None:
    with db.connect(url, autocommit=True) as qconn:
        the_cases = cases(qconn, args.masts, first, end)
        load_before = os.getloadavg()[0]
        res["idle"] = time_idle(the_cases, args.repeat)
        res["idle_load"] = (load_before, os.getloadavg()[0])
        for label, r in res["idle"].items():
            log(f"idle: {label}: median {r['median'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms")

        # a further day (or more) for every mast, while the pages are used
        more = delivery.deliver(args.masts, imported_days, args.load_days, queue=False)
        loaded: dict[str, list[float]] = {label: [] for label, _ in the_cases}
        end2 = end + args.load_days * DAY
        cycle = [0]

        def query_round() -> None:
            for label, call in the_cases:
                t1 = time.perf_counter()
                call(cycle[0])
                loaded[label].append((t1, time.perf_counter()))
            cycle[0] += 1

        t1 = time.perf_counter()
        jobs.queue_imports(url, more)
        seconds = wait_files(conn, more, workers, args.timeout, query_round)
        t_end = t1 + seconds
        res["loaded"] = {label: stats([b - a for a, b in runs if b <= t_end])
                         for label, runs in loaded.items()}
        res["load_import"] = {"files": len(more), "seconds": seconds, "load": os.getloadavg()[0],
                              "readings": len(more) * 144 * args.channels}
        log(f"while importing {len(more)} files ({seconds:.1f} s): "
            + "; ".join(f"{label}: median {r['median'] * 1000:.0f} ms (n={r['n']})"
                        for label, r in res["loaded"].items() if r["n"]))
        wait_jobs(conn, workers, args.timeout)
        res["rollups"] = rollup_catch_up(url, args.masts, end2 - DAY)
        r = res["rollups"]
        log(f"rollups: per station-day median {r['per_station']['median'] * 1000:.0f} ms, "
            f"p95 {r['per_station']['p95'] * 1000:.0f} ms; all {args.masts} masts at once "
            f"{r['together'] * 1000:.0f} ms")


# --- report ---------------------------------------------------------------------------------


def ms(s: float) -> str:
    return f"{s * 1000:,.0f}"


def render(ctx: dict[str, Any], res: dict[str, Any]) -> str:
    imp, size, args = res["import"], res["size"], ctx["args"]
    kept = ctx.get("kept")
    n = imp["readings"]
    lines = [
        f"## Fleet: {ctx['title']}", "", *environment_lines(ctx),
        f"- Fleet: {args.masts} masts × {args.days} days × {args.channels} channels of 10-minute data = "
        f"{n / 1e6:.1f} M readings in {imp['files']:,} daily TOA5 files ({mb(imp['bytes'])}); "
        f"{args.workers} workers (`python -m ingest_worker`, concurrency {ctx['concurrency']}), import batches "
        f"of up to {ctx['batch_files']} files",
        f"- The machine has {ctx['machine']['nproc']} cores shared with other work running at the same time "
        f"(load average {imp['load']:.1f} at the end of the import, {res['idle_load'][0]:.1f}–"
        f"{res['idle_load'][1]:.1f} around the idle queries, {res['load_import']['load']:.1f} after the "
        "loaded ones): every figure is slowed by it",
    ]
    if kept:
        up = res["upgrade"]
        lines += [
            f"- Import and size measured on {kept['date']} at commit {kept['commit']}: "
            f"`{kept['command']}`",
            f"- Page queries and rollups measured on {ctx['date']} at commit {ctx['commit']} on that run's kept "
            f"database ({ctx['days_before']} days of every mast by then): `{ctx['command']}`; "
            f"`db upgrade` first applied {', '.join(f'`{a}`' for a in up['applied']) or 'nothing'} "
            f"in **{up['seconds']:.1f} s** (load average {up['load']:.1f})",
        ]
    else:
        lines.append(f"- Command: `{ctx['command']}` (commit {ctx['commit']})")
    peak = kept["peak"] if kept else res["peak"]
    lines += [
        "",
        "### Import" + (f" (commit {kept['commit']})" if kept else ""),
        "",
        "| measure | value |",
        "|---|---|",
        f"| files received and queued (this process, meanwhile the workers import) | {imp['received_s']:.0f} s |",
        f"| first file received → every file imported | {imp['imported_s']:.0f} s |",
        f"| throughput | **{n / imp['imported_s'] / 1e6:.3f} M readings/s**, {imp['files'] / imp['imported_s']:.1f} "
        "files/s |",
        f"| → every job done (quality checks included) | {imp['all_done_s']:.0f} s |",
        f"| workers' peak RSS | {', '.join(mb(p) for p in peak)} |",
        f"| database growth | {mb(size['db'])}: **{mb(size['db'] * 1e6 / n)} per M readings** |",
        f"| of which `reading` with its key | {mb(size['reading'])} ({mb(size['reading'] * 1e6 / n)} per M) |",
        f"| file store (originals, compressed) | {mb(size['store'])} ({mb(size['store'] * 1e6 / n)} per M) |",
        "",
        "### Page queries" + (f" (commit {ctx['commit']})" if kept else ""),
        "",
        f"Through the core functions the pages call; idle: a warm-up then {args.repeat} runs; while importing: "
        f"{res['load_import']['files']} files ({args.load_days} more day(s) of every mast) queued at once, "
        f"imported by the workers in {res['load_import']['seconds']:.1f} s, the queries looping meanwhile. "
        "Times in ms; the station cycles over the masts."
        + (f" The last column: the idle median measured right after the import (commit {kept['commit']})."
           if kept else ""),
        "",
        f"| query | idle median | idle p95 | importing median | importing p95 (runs) | median ≤ {TARGET_MS:.0f} ms |"
        + (" idle median after the import |" if kept else ""),
        "|---|---|---|---|---|---|" + ("---|" if kept else ""),
    ]
    before = list(kept["idle"].values()) if kept else []
    over = []
    for k, (label, r) in enumerate(res["idle"].items()):
        lo = res["loaded"][label]
        worst = max(r["median"], lo["median"] if lo["n"] else 0)
        ok = worst * 1000 <= TARGET_MS
        if not ok:
            over.append(label)
        lines.append(f"| {label} | {ms(r['median'])} | {ms(r['p95'])} | "
                     + (f"{ms(lo['median'])} | {ms(lo['p95'])} ({lo['n']}) |" if lo["n"] else "– | – (0) |")
                     + (" yes |" if ok else " **no** |")
                     + ((f" {ms(before[k]['median'])} |" if k < len(before) else " – |") if kept else ""))
    ro = res["rollups"]
    ok_r = ro["per_station"]["median"] * 1000 <= TARGET_ROLLUP_MS
    lines += [
        "",
        "### Rollup catch-up",
        "",
        f"`core.rollups.refresh_rollups` of the newest day for one mast's {args.channels} channels (what a "
        "worker runs after importing that day's file), committed, each mast in turn: median "
        f"**{ms(ro['per_station']['median'])} ms**, p95 {ms(ro['per_station']['p95'])} ms per station-day "
        f"(target ≤ {TARGET_ROLLUP_MS:.0f} ms) {'**met**' if ok_r else '**NOT met**'}; all {args.masts} masts "
        f"in one set-based call: {ms(ro['together'])} ms ({ms(ro['together_per'])} ms per station-day)."
        + (f" Right after the import: median {ms(kept['rollups']['per_station']['median'])} ms." if kept else ""),
        "",
        f"Page targets (each median ≤ {TARGET_MS:.0f} ms, idle and while importing): "
        + ("**met** by every query." if not over else f"**NOT met** by: {'; '.join(over)}."),
        "",
    ]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


RECORD = "fleet-run.json"  # in a kept home: what the import run measured, and where its database is


def commit() -> str:
    """The checked-out commit (``-dirty`` if tracked files are changed)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return (git("rev-parse", "--short", "HEAD") or "?") + ("-dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--masts", type=int, default=20, help="masts (default 20)")
    p.add_argument("--days", type=int, default=730, help="days of data per mast (default 730)")
    p.add_argument("--years", type=float, help="years of data per mast (instead of --days)")
    p.add_argument("--channels", type=int, default=40, help="channels per mast (default 40)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--load-days", type=int, default=3,
                   help="further days of every mast imported while the queries run (default 3)")
    p.add_argument("--repeat", type=int, default=20, help="idle runs of each query (default 20)")
    p.add_argument("--database-url", help="server to use (scratch databases are created and dropped on it); "
                   "default: an embedded PostgreSQL in a temporary STATIONMANAGER_HOME")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="give up on one wait after this (s)")
    p.add_argument("--keep", action="store_true", help="keep the scratch databases and the temporary home "
                   "(with a record of the import for --reuse)")
    p.add_argument("--home", type=Path, help="STATIONMANAGER_HOME to create (file store, worker logs, the "
                   "embedded server's data); default: a new temporary folder")
    p.add_argument("--reuse", type=Path, metavar="HOME",
                   help=f"the home of a run made with --keep (holding its {RECORD}): no import; `db upgrade` "
                   "its database (timed), then the query phases, importing --load-days days after its last; "
                   "masts, days and channels are the kept run's")
    args = p.parse_args(argv)
    if args.years is not None:
        args.days = round(args.years * 365)
    command = "python benchmarks/fleet.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    kept = None
    if args.reuse is not None:
        if args.home is not None:
            p.error("--reuse HOME is the home: give no --home")
        record = args.reuse / RECORD
        if not record.is_file():
            p.error(f"{record} not found: --reuse takes the home of a run made with --keep")
        kept = json.loads(record.read_text())
        if kept["embedded"] != (args.database_url is None):
            p.error("the kept run used " + ("the embedded server: give no --database-url" if kept["embedded"]
                                            else f"a server: give --database-url {kept['url']}"))
        for k in ("masts", "days", "channels"):
            setattr(args, k, kept["args"][k])
        home = args.reuse.resolve()
    elif args.home is not None:
        home = args.home.resolve()
        if home.exists() and any(home.iterdir()):
            p.error(f"--home {home} is not empty")
        home.mkdir(parents=True, exist_ok=True)
    else:
        home = Path(tempfile.mkdtemp(prefix="smbench-fleet-"))
    try:
        return _run(args, command, home, kept)
    finally:
        if not args.keep and kept is None:
            remove_home(home)


def _run(args, command: str, home: Path, kept: dict[str, Any] | None) -> int:
    server = Server(args.database_url, home)
    log(f"server: PostgreSQL {server.caps['postgresql']}, storage level {server.level}"
        + (f" (embedded, home {home})" if server.embedded else f" at {db.redact(server.admin_url)}"))
    log(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start")
    at = commit()
    days_before = None
    try:
        if kept is None:
            template = migrated_template(server)
            dbname = template
        else:
            template, dbname = None, kept["db"]
        with psycopg.connect(db.with_dbname(server.admin_url, dbname)) as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            tsdb = row[0] if row else None
        if kept is not None:
            days_before = imported_days_of(db.with_dbname(server.admin_url, dbname), args.masts)
        res = run(server, template, home, args, kept)
    finally:
        db.close_pools()
        if kept is not None:
            log(f"kept database {kept['db']} and home {home} left as they are (with {args.load_days} more days)")
        elif args.keep:
            log(f"kept databases: {', '.join(server.created)}; home {home}")
        else:
            for name in list(server.created):
                server.drop(name)
    log(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    kind = "embedded PostgreSQL" if server.embedded else "external server"
    settings = Settings()
    ctx = {"title": f"level {server.level}, {kind}", "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": machine(), "server": server, "timescaledb": tsdb, "command": command, "args": args,
           "concurrency": settings.worker_concurrency, "batch_files": settings.import_batch_files,
           "commit": at, "kept": kept, "days_before": days_before}
    if kept is None and args.keep:
        record = {"db": res["db"], "embedded": server.embedded, "url": db.redact(server.admin_url),
                  "level": server.level, "commit": at, "date": ctx["date"], "command": command,
                  "args": {k: getattr(args, k) for k in ("masts", "days", "channels", "workers", "load_days")},
                  **{k: res[k] for k in ("import", "size", "peak", "idle", "idle_load", "loaded", "load_import",
                                         "rollups")}}
        (home / RECORD).write_text(json.dumps(record, indent=1) + "\n")
        again = "python benchmarks/fleet.py --reuse " + shlex.quote(str(home)) + (
            "" if server.embedded else " --database-url " + shlex.quote(db.redact(server.admin_url)))
        log(f"kept for reuse (database {res['db']}, record {home / RECORD}); to re-measure the queries: {again}")
    elif kept is not None:
        res = {**res, "import": kept["import"], "size": kept["size"]}
    publish(f"fleet-{server.tag}", render(ctx, res), not args.no_doc)
    return 0


if __name__ == "__main__":
    os.environ.pop("STATIONMANAGER_DATABASE_URL", None)
    raise SystemExit(main())
