"""Sync benchmark: a source on a real SFTP server on 127.0.0.1 (asyncssh, the tests' server).

Two measurements, each ``--repeat`` times, results as Markdown in ``docs/benchmarks.md``:

1. **listing** – a source of ``--files`` (10,000) small hourly TOA5 files of which
   ``--new`` (10) are new. A first run (``core.sources.sync`` in this process) records the
   others; then, per repeat, the previous repeat's new files are deleted at the source and
   ``--new`` other ones appear, and a real ``python -m ingest_worker`` runs the source
   (``core.jobs.defer_sync``, as the schedule or ``stationmanager source sync`` do). Timed
   from queueing the run until it is recorded finished, then until its files are imported;
   the worker's peak memory is its ``VmHWM`` (and the process tree's RSS sampled every
   0.1 s). Then the same with ``stationmanager source sync`` and no worker running (the
   command fetches itself): wall time and its peak RSS (``wait4``'s ``ru_maxrss``).
2. **first sync** – ``--days`` (2,000) day files of one mast (``--channels`` channels of
   10-minute data, the generator of ``benchmarks/ingest.py``, one file split at midnight)
   fetched and imported by a real worker on a fresh database, timed from queueing the run
   until every file is ``imported``; against the same rows as ONE file imported by a real
   worker (``benchmarks/ingest.py``'s worker measurement) on a fresh database.

The old files of (1) are recorded by a real first run, which receives them; their imports
are not part of the measurement, so the script then marks them ``imported`` (otherwise
every later run would queue their imports again, as it should for files nobody imports).

    .venv/bin/python benchmarks/sync.py                      # embedded PostgreSQL, 3 repeats
    .venv/bin/python benchmarks/sync.py --steps listing --files 2000 --repeat 1 --no-doc   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.ingest import (  # noqa: E402
    STATION, Server, _interrupt, environment_lines, generate_file, log, machine, mb, migrated_template, n_rows,
    publish, remove_home, run_worker, tree_rss, worker_env,
)
from core import db, jobs, sources  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.integration.servers import PASSWORD, USER, sftp_server  # noqa: E402

TARGET_SYNC_S = 10.0
TARGET_RSS_MB = 200
TARGET_RATIO = 0.5
SOURCE = "bench-sftp"
CREDENTIALS = "bench"
HOUR = 3600


# --- files at the source ------------------------------------------------------------------


def hourly_file(i: int) -> tuple[str, bytes, float]:
    """The ``i``-th small hourly file: (relative path, content, modification time)."""
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=i)
    names = ["WS_80m_Avg", "WS_80m_Std", "WD_78m_Avg", "T_2m_Avg", "RH_2m_Avg", "P_Avg", "BattV_Min", "WS_60m_Avg"]
    lines = [
        '"TOA5","Bench Mast","CR1000X","12345","CR1000X.Std.07.02","CPU:bench.CR1X","12345","Met10min"',
        '"TIMESTAMP","RECORD",' + ",".join(f'"{n}"' for n in names),
        '"TS","RN","m/s","m/s","Deg","Deg C","%","hPa","Volts","m/s"',
        '"","","Avg","Std","WVc","Avg","Avg","Avg","Min","Avg"',
    ]
    for k in range(6):
        t = start + timedelta(minutes=10 * (k + 1))
        r = i * 6 + k
        lines.append(f'"{t:%Y-%m-%d %H:%M:%S}",{r},{7 + r % 5 * 0.31:.2f},0.9,{r * 7 % 360},9.1,78,1005.2,12.9,'
                     f'{6 + r % 3 * 0.2:.2f}')
    rel = f"{start:%Y/%m}/bench_Met10min_{start:%Y%m%d_%H%M}.dat"
    return rel, ("\r\n".join(lines) + "\r\n").encode(), (start + timedelta(hours=1)).timestamp()


def put(root: Path, rel: str, data: bytes, mtime: float) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))


def day_files(big: Path, days: int, whole: bool = True):
    """``big`` (a TOA5 file of whole days from 2019-01-01) cut at midnight: yields
    (day, header, rows) for each of its first ``days`` days, reading one day at a time;
    ``whole``: check that it holds no more."""
    day0 = datetime(2019, 1, 1, tzinfo=UTC)
    with big.open("rb") as fh:
        header = b"".join(fh.readline() for _ in range(4))
        for d in range(days):
            yield day0 + timedelta(days=d), header, b"".join(fh.readline() for _ in range(144))
        assert not whole or fh.readline() == b"", "the big file holds more than the days asked for"


def split_days(big: Path, root: Path, days: int) -> int:
    """Write ``big`` (a TOA5 file of whole days from 2019-01-01) as one file per day; returns bytes."""
    total = 0
    for day, header, rows in day_files(big, days):
        put(root, f"{day:%Y}/bench_mast_Met10min_{day:%Y%m%d}.dat", header + rows,
            (day + timedelta(days=1, minutes=5)).timestamp())
        total += len(header) + len(rows)
    return total


# --- the source and the worker ------------------------------------------------------------


def write_secrets(home: Path) -> None:
    path = Settings(home=home).secrets_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[{CREDENTIALS}]\nusername = "{USER}"\npassword = "{PASSWORD}"\n', encoding="utf-8")
    path.chmod(0o600)


def define_source(url: str, sftp, max_files: int) -> int:
    with db.connect(url) as conn, conn.transaction():
        sources.add_source(conn, "bench", name=SOURCE, kind="sftp", url=sftp.url, credentials=CREDENTIALS,
                           station=STATION, include=["*.dat"], max_files=max_files)
        sources.trust_host_key(conn, SOURCE, "bench", sftp.host_key)
        # as if the schedule had just run it: the worker's schedule leaves it alone for an hour
        conn.execute("UPDATE source SET queued_at = now() WHERE name = %s", (SOURCE,))
        return sources.get_source(conn, SOURCE)["id"]


def vm_hwm(pid: int) -> int:
    """The process's peak resident memory so far (bytes), from /proc."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Worker:
    """A real ``python -m ingest_worker`` on ``url``, started and stopped with ``with``."""

    def __init__(self, url: str, home: Path, name: str) -> None:
        self.url, self.home = url, home
        self.log_path = home / f"worker-{name}.log"

    def __enter__(self) -> Worker:
        with self.log_path.open("w") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "ingest_worker"], env=worker_env(self.url, self.home),
                                         stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 60
        while "Starting worker" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(1.0)  # let it settle (signal handlers, LISTEN)
        self.idle_rss = tree_rss(self.ps)
        self.peak = self.idle_rss
        return self

    def sample(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.proc.returncode}):\n{self.log_path.read_text()[-3000:]}")
        self.peak = max(self.peak, tree_rss(self.ps))

    def hwm(self) -> int:
        return vm_hwm(self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if exc[0] is None and not os.environ.get("SM_BENCH_KEEP_LOGS"):
            self.log_path.unlink(missing_ok=True)


def run_by_worker(w: Worker, conn: psycopg.Connection, source_id: int, timeout: float) -> tuple[dict, float]:
    """Queue a run of the source for the worker; returns (its row, seconds until it finished)."""
    since = sources.last_run_id(conn, source_id)
    app = jobs.make_app(w.url)
    t0 = time.perf_counter()
    with app.open():
        assert jobs.defer_sync(app, source_id, trigger="cli")
    while (row := sources.finished_run_after(conn, source_id, since)) is None:
        w.sample()
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"the run did not finish in {timeout:.0f} s:\n{w.log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    return row, time.perf_counter() - t0


def wait_imported(w: Worker, conn: psycopg.Connection, ids: list[int], t0: float, timeout: float,
                  poll_s: float = 0.1) -> float:
    """Seconds from ``t0`` until none of ``ids`` is queued or importing (all must be imported)."""
    while True:
        counts = {r["status"]: r["n"] for r in conn.execute(
            "SELECT status, count(*) AS n FROM source_file WHERE id = ANY(%s) GROUP BY 1", (ids,))}
        if not counts.get("queued") and not counts.get("importing"):
            break
        w.sample()
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"imports not done after {timeout:.0f} s: {counts}")
        time.sleep(poll_s)
    seconds = time.perf_counter() - t0
    if counts != {"imported": len(ids)}:
        raise RuntimeError(f"files ended as {counts}:\n{w.log_path.read_text()[-3000:]}")
    return seconds


# --- 1. ten new files among ten thousand -----------------------------------------------------


def bench_listing(server: Server, template: str, home: Path, args) -> dict[str, Any]:
    name, url = server.create("listing", template=template)
    settings = Settings(database_url=url, home=home)
    out: dict[str, Any] = {"worker": [], "cli": []}
    root = home / "sftp-listing"
    n_old = args.files - args.new
    t0 = time.perf_counter()
    for i in range(n_old):
        put(root, *hourly_file(i))
    log(f"listing: {n_old:,} files written in {time.perf_counter() - t0:.1f} s")
    try:
        with sftp_server(root) as sftp:
            source_id = define_source(url, sftp, max_files=args.files)
            t0 = time.perf_counter()
            first = sources.sync(source_id, trigger="cli", settings=settings, url=url)
            out["first"] = {"seconds": time.perf_counter() - t0, "row": first}
            assert first["n_fetched"] == n_old, first
            log(f"listing: first run recorded {first['n_fetched']:,} files in {out['first']['seconds']:.1f} s")
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                conn.execute("UPDATE source_file SET status = 'imported' WHERE id = ANY(%s)", (first["queue"],))
                server.checkpoint()
                extra = n_old
                previous: list[str] = []
                for variant in ("worker", "cli"):
                    for i in range(args.repeat):
                        for rel in previous:
                            (root / rel).unlink()
                        previous = []
                        for _ in range(args.new):
                            rel, data, mtime = hourly_file(extra)
                            put(root, rel, data, mtime)
                            previous.append(rel)
                            extra += 1
                        r = (_listing_worker if variant == "worker" else _listing_cli)(url, home, conn, source_id,
                                                                                        args)
                        row = r["row"]
                        assert (row["status"], row["n_listed"], row["n_fetched"]) == ("ok", args.files, args.new), row
                        r["load"] = os.getloadavg()[0]
                        out[variant].append(r)
                        log(f"[{i + 1}/{args.repeat}] listing by {variant}: run {r['seconds']:.2f} s "
                            f"(recorded {float(row['duration_s']):.2f} s), peak {mb(r['peak'])}"
                            + (f", imported after {r['imported_s']:.2f} s" if "imported_s" in r else ""))
    finally:
        db.close_pools()
        if not args.keep:
            server.drop(name)
            shutil.rmtree(root, ignore_errors=True)
    return out


def _listing_worker(url: str, home: Path, conn, source_id: int, args) -> dict[str, Any]:
    with Worker(url, home, "listing") as w:
        t0 = time.perf_counter()
        row, seconds = run_by_worker(w, conn, source_id, args.timeout)
        imported = wait_imported(w, conn, list(row["file_ids"]), t0, args.timeout)
        w.sample()
        return {"row": row, "seconds": seconds, "imported_s": imported, "peak": max(w.peak, w.hwm()),
                "sampled": w.peak, "hwm": w.hwm(), "idle": w.idle_rss}


def _listing_cli(url: str, home: Path, conn, source_id: int, args) -> dict[str, Any]:
    cli = Path(sys.executable).with_name("stationmanager")
    since = sources.last_run_id(conn, source_id)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(cli), "source", "sync", SOURCE, "--json"], env=worker_env(url, home), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps, peak = psutil.Process(proc.pid), 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, tree_rss(ps))
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"stationmanager source sync ended with {proc.returncode}:\n{err[-3000:]}")
    row = conn.execute("SELECT *, extract(epoch FROM finished_at - started_at) AS duration_s FROM source_run "
                       "WHERE source_id = %s ORDER BY id DESC LIMIT 1", (source_id,)).fetchone()
    assert row["id"] > since and row["trigger"] == "cli", ("the command did not run the source itself", row, err)
    return {"row": row, "seconds": seconds, "peak": max(peak, usage.ru_maxrss * 1024), "sampled": peak,
            "hwm": usage.ru_maxrss * 1024}


# --- 2. a first sync of day files against one file -------------------------------------------


def bench_first_sync(server: Server, template: str, home: Path, args) -> dict[str, Any]:
    years = args.days / 365
    big, gen_s, cached = generate_file(years, args.channels)
    rows = n_rows(years)
    assert rows == args.days * 144, (rows, args.days)
    n_readings = rows * args.channels
    root = home / "sftp-days"
    t0 = time.perf_counter()
    size = split_days(big, root, args.days)
    log(f"first sync: {args.days:,} day files ({mb(size)}) split from {big.name} in {time.perf_counter() - t0:.1f} s")
    out: dict[str, Any] = {"one_file": [], "sync": [], "n_readings": n_readings, "rows": rows,
                           "size": size, "big_size": big.stat().st_size}
    try:
        with sftp_server(root) as sftp:
            for i in range(args.repeat):
                r = run_worker(server, template, big, n_readings, args.keep, args.timeout)
                out["one_file"].append(r)
                log(f"[{i + 1}/{args.repeat}] one file by the worker: {r['seconds']:.1f} s, "
                    f"{r['rate'] / 1e6:.3f} M readings/s, peak {mb(r['peak_rss'])}")
                r = _first_sync(server, template, home, sftp, n_readings, args)
                out["sync"].append(r)
                log(f"[{i + 1}/{args.repeat}] first sync by the worker: {r['seconds']:.1f} s "
                    f"(run {r['run_s']:.1f} s), {r['rate'] / 1e6:.3f} M readings/s, peak {mb(r['peak'])}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return out


def _first_sync(server: Server, template: str, home: Path, sftp, n_readings: int, args) -> dict[str, Any]:
    name, url = server.create("firstsync", template=template)
    try:
        source_id = define_source(url, sftp, max_files=args.days)
        server.checkpoint()
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn, Worker(url, home, "firstsync") as w:
            t0 = time.perf_counter()
            row, run_s = run_by_worker(w, conn, source_id, args.timeout)
            assert (row["status"], row["n_fetched"]) == ("ok", args.days), row
            seconds = wait_imported(w, conn, list(row["file_ids"]), t0, args.timeout, poll_s=0.2)
            n = conn.execute("SELECT sum(n_readings) AS n FROM source_file").fetchone()["n"]
            assert n == n_readings, (n, n_readings)
            return {"seconds": seconds, "run_s": run_s, "run_recorded_s": float(row["duration_s"]),
                    "rate": n_readings / seconds, "peak": max(w.peak, w.hwm()), "idle": w.idle_rss,
                    "load": os.getloadavg()[0]}
    finally:
        db.close_pools()
        if not args.keep:
            server.drop(name)


# --- reporting ---------------------------------------------------------------------------


def med(xs: list[float]) -> str:
    """``median (min–max)`` with 2 decimals."""
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})" if len(xs) > 1 else f"{xs[0]:.2f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def render(ctx: dict[str, Any], res: dict[str, Any]) -> str:
    lines = [f"## {ctx['title']}", "", *environment_lines(ctx),
             f"- Repeats: {ctx['repeat']}; figures are median (min–max) in seconds unless marked",
             f"- Command: `{ctx['command']}`", ""]
    loads: list[float] = []
    li = res.get("listing")
    if li:
        wk, cl = li["worker"], li["cli"]
        loads += [r["load"] for r in wk + cl]
        first = li["first"]
        lines += [
            f"### {ctx['files']:,} files at the source, {ctx['new']} new",
            "",
            f"Hourly TOA5 files of ~{ctx['hourly_size']:,} bytes in month folders. First run (in-process "
            f"`core.sources.sync`, recording {first['row']['n_fetched']:,} files): {first['seconds']:.1f} s.",
            "",
            "| who runs it | queued → run finished | run as recorded | → its files imported | peak RSS, MB |",
            "|---|---|---|---|---|",
        ]
        if wk:
            lines.append(
                f"| worker (`defer_sync`) | {med([r['seconds'] for r in wk])} | "
                f"{med([float(r['row']['duration_s']) for r in wk])} | {med([r['imported_s'] for r in wk])} | "
                f"{med([r['peak'] / 2**20 for r in wk])} (idle {statistics.median([r['idle'] for r in wk]) / 2**20:.0f}) |")
        if cl:
            lines.append(
                f"| `stationmanager source sync` (no worker) | {med([r['seconds'] for r in cl])} (whole command) | "
                f"{med([float(r['row']['duration_s']) for r in cl])} | – | {med([r['peak'] / 2**20 for r in cl])} |")
        lines.append("")
        if wk:
            s, p = statistics.median([r["seconds"] for r in wk]), max(r["peak"] for r in wk)
            lines.append(f"- Worker: run in {s:.2f} s (target ≤ {TARGET_SYNC_S:g} s) {verdict(s <= TARGET_SYNC_S)}; "
                         f"peak RSS (VmHWM, whole life of the process) {mb(p)} (target ≤ {TARGET_RSS_MB} MB) "
                         f"{verdict(p <= TARGET_RSS_MB * 2**20)}")
        if cl:
            s, p = statistics.median([r["seconds"] for r in cl]), max(r["peak"] for r in cl)
            lines.append(f"- CLI: {s:.2f} s for the whole command (start-up included) "
                         f"{verdict(s <= TARGET_SYNC_S)}; peak RSS {mb(p)} {verdict(p <= TARGET_RSS_MB * 2**20)}")
        lines.append("")
    fs = res.get("first_sync")
    if fs:
        one, sy = fs["one_file"], fs["sync"]
        loads += [r["load"] for r in one + sy]
        n = fs["n_readings"]
        lines += [
            f"### First sync of {ctx['days']:,} day files against one file",
            "",
            f"One mast, {ctx['channels']} channels, {fs['rows']:,} 10-minute rows = {n / 1e6:.2f} M readings: "
            f"{ctx['days']:,} day files ({fs['size'] / ctx['days'] / 1024:.0f} KiB each, {mb(fs['size'])} in all) in year folders, or one file "
            f"of {mb(fs['big_size'])}. Each on a fresh database, a real worker (concurrency "
            f"{ctx['concurrency']}).",
            "",
            "| path | seconds | readings/s (M) | peak RSS, MB |",
            "|---|---|---|---|",
        ]
        if one:
            lines.append(f"| one file: queued → imported | {med([r['seconds'] for r in one])} | "
                         f"{med([r['rate'] / 1e6 for r in one])} | {med([r['peak_rss'] / 2**20 for r in one])} |")
        if sy:
            lines.append(f"| day files: sync queued → all imported | {med([r['seconds'] for r in sy])} | "
                         f"{med([r['rate'] / 1e6 for r in sy])} | {med([r['peak'] / 2**20 for r in sy])} |")
            lines.append(f"| … of which the sync run (fetch + receive) | {med([r['run_s'] for r in sy])} | – | – |")
        if one and sy:
            ratios = [s["rate"] / o["rate"] for s, o in zip(sy, one, strict=False)]
            ratio = statistics.median([r["rate"] for r in sy]) / statistics.median([r["rate"] for r in one])
            lines += ["", f"- Day files / one file: **{ratio:.2f}** (per repeat {', '.join(f'{r:.2f}' for r in ratios)}); "
                      f"target ≥ {TARGET_RATIO} {verdict(ratio >= TARGET_RATIO)}"]
        lines.append("")
    if loads:
        lines.append(f"- Load average (1 min) at the end of each timed run: {min(loads):.1f}–{max(loads):.1f} on "
                     f"{ctx['machine']['nproc']} CPUs (other work on the machine; above ~{ctx['machine']['nproc']} "
                     "the figures are slowed by it)")
    return "\n".join(lines).rstrip("\n") + "\n"


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000, help="files at the source for the listing run (default 10000)")
    p.add_argument("--new", type=int, default=10, help="of which new in each timed run (default 10)")
    p.add_argument("--days", type=int, default=2000, help="day files of the first sync (default 2000)")
    p.add_argument("--channels", type=int, default=40, help="channels of the day files (default 40)")
    p.add_argument("--database-url", help="server to use (scratch databases are created and dropped on it); "
                   "default: an embedded PostgreSQL in a temporary STATIONMANAGER_HOME")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    p.add_argument("--steps", default="listing,first-sync", help="comma-separated subset of listing,first-sync")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--timeout", type=float, default=1800, help="give up on one timed step after this (s)")
    p.add_argument("--keep", action="store_true", help="keep the scratch databases and the temporary home")
    args = p.parse_args(argv)
    steps = {x.strip() for x in args.steps.split(",") if x.strip()}
    if not steps <= {"listing", "first-sync"}:
        p.error(f"unknown steps: {', '.join(sorted(steps - {'listing', 'first-sync'}))}")
    command = "python benchmarks/sync.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    home = Path(tempfile.mkdtemp(prefix="smbench-sync-"))
    try:
        return _run(args, steps, command, home)
    finally:
        if not args.keep:
            remove_home(home)


def _run(args, steps: set[str], command: str, home: Path) -> int:
    server = Server(args.database_url, home)
    log(f"server: PostgreSQL {server.caps['postgresql']}, storage level {server.level}"
        + (f" (embedded, home {home})" if server.embedded else f" at {db.redact(server.admin_url)}"))
    write_secrets(home)
    res: dict[str, Any] = {}
    template = None
    try:
        template = migrated_template(server)
        with psycopg.connect(db.with_dbname(server.admin_url, template)) as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            tsdb = row[0] if row else None
        if "listing" in steps:
            res["listing"] = bench_listing(server, template, home, args)
        if "first-sync" in steps:
            res["first_sync"] = bench_first_sync(server, template, home, args)
    finally:
        db.close_pools()
        if args.keep:
            log(f"kept databases: {', '.join(server.created)}; home {home}")
        else:
            for name in list(server.created):
                server.drop(name)
    kind = "embedded PostgreSQL" if server.embedded else "external server"
    ctx = {
        "title": f"Sync: SFTP on 127.0.0.1, level {server.level}, {kind}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "server": server,
        "timescaledb": tsdb, "repeat": args.repeat, "command": command, "files": args.files, "new": args.new,
        "days": args.days, "channels": args.channels, "hourly_size": len(hourly_file(0)[1]),
        "concurrency": Settings().worker_concurrency,
    }
    for step, part in (("listing", "listing"), ("first-sync", "first_sync")):
        if part not in res:
            continue
        publish(f"sync-{step}-{server.tag}", render({**ctx, "title": f"{ctx['title']} — {step}"}, {part: res[part]}),
                not args.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
