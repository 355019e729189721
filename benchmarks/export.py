"""Export benchmark: the Windographer export of the reference mast, against a naive pandas path.

Reference size: 80 channels x 6 years of 10-minute rows = 315,360 rows = 25.2 M readings, the
mast of ``benchmarks/ingest.py`` (same generated TOA5 file), imported once with
``core.ingest.import_file`` into a fresh database on the server under test.

Then, ``--repeat`` times each, side by side in the same run:

1. **worker** – the real path: ``core.exports.request_export`` (all 80 channels, Windographer,
   calibrated, flags excluded) and a real ``python -m ingest_worker`` subprocess, timed from the
   request until the export row is ``done``, with the worker's peak RSS (psutil, every 0.1 s,
   children included);
2. **naive** – what one would write with pandas: every reading fetched with psycopg
   ``fetchall`` into a DataFrame, ``pivot`` to wide, reindexed to every 10-minute step and
   ``to_csv`` with tabs, run in a subprocess so its peak RSS is measured the same way.

Targets: the worker is >= 5x faster than the naive path and its peak RSS <= 300 MB. Results are
printed as Markdown and written to the export section of ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/export.py                      # embedded PostgreSQL
    .venv/bin/python benchmarks/export.py --database-url postgresql://postgres@127.0.0.1:5433/postgres
    .venv/bin/python benchmarks/export.py --years 1 --repeat 1   # quick check
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import core.settings  # noqa: E402
from benchmarks.ingest import (  # noqa: E402
    STATION, Server, fmt_s, generate_file, log, machine, mb, migrated_template, n_rows, receive_file,
    publish, summary, tree_rss, worker_env,
)
from core import db, exports, ingest  # noqa: E402
from core.settings import Settings  # noqa: E402

TARGET_SPEEDUP = 5.0
TARGET_RSS_MB = 300

#: The naive path, run as ``python -c`` in a subprocess: URL, output path on argv.
NAIVE = r"""
import sys, pandas as pd, psycopg
url, out = sys.argv[1], sys.argv[2]
with psycopg.connect(url) as conn:
    rows = conn.execute(
        "SELECT c.column_name, r.time, r.value FROM reading r JOIN channel c ON c.id = r.channel_id").fetchall()
df = pd.DataFrame(rows, columns=["column_name", "time", "value"])
del rows
wide = df.pivot(index="time", columns="column_name", values="value").sort_index()
del df
wide = wide.reindex(pd.date_range(wide.index[0], wide.index[-1], freq="10min"))
wide.index = wide.index.strftime("%Y-%m-%d %H:%M")
wide.index.name = "Date/Time"
wide.to_csv(out, sep="\t")
print(len(wide))
"""


def sample(proc: subprocess.Popen, peak: int, seconds: float = 0.1) -> int:
    with contextlib.suppress(psutil.Error):
        peak = max(peak, tree_rss(psutil.Process(proc.pid)))
    time.sleep(seconds)
    return peak


def start_worker(url: str, home: Path) -> tuple[subprocess.Popen, Path]:
    log_path = home / f"worker-{os.getpid()}-{time.time_ns()}.log"
    with log_path.open("w") as fh:
        worker = subprocess.Popen([sys.executable, "-m", "ingest_worker"], env=worker_env(url, home),
                                  stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while "Starting worker" not in log_path.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    time.sleep(1.0)
    return worker, log_path


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_worker_export(url: str, home: Path, timeout: float) -> dict[str, Any]:
    worker, log_path = start_worker(url, home)
    try:
        idle = tree_rss(psutil.Process(worker.pid))
        peak = idle
        with db.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM export")  # no reuse: build it each time
            ids = tuple(r["id"] for r in conn.execute("SELECT id FROM channel ORDER BY id").fetchall())
            t0 = time.perf_counter()
            row = exports.request_export(conn, exports.ExportRequest(STATION, "windographer", channel_ids=ids),
                                         "bench")
            while row["status"] in ("queued", "running"):
                peak = sample(worker, peak)
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited:\n{log_path.read_text()[-3000:]}")
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"no export after {timeout:.0f} s")
                row = exports.get_export(conn, row["id"])
            seconds = time.perf_counter() - t0
        if row["status"] != "done":
            raise RuntimeError(f"export {row['status']}: {row['error']}\n{log_path.read_text()[-3000:]}")
        return {"seconds": seconds, "peak_rss": peak, "idle_rss": idle, "rows": row["n_rows"],
                "values": row["n_values"], "size": row["size_bytes"], "load": os.getloadavg()[0]}
    finally:
        stop(worker)
        log_path.unlink(missing_ok=True)


def run_naive(url: str, home: Path, timeout: float) -> dict[str, Any]:
    out = home / "naive.txt"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", NAIVE, url, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak = 0
    try:
        while proc.poll() is None:
            peak = sample(proc, peak)
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"the naive path took more than {timeout:.0f} s")
        seconds = time.perf_counter() - t0
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the naive path failed:\n{stderr[-3000:]}")
        return {"seconds": seconds, "peak_rss": peak, "rows": int(stdout.split()[-1]), "size": out.stat().st_size,
                "load": os.getloadavg()[0]}
    finally:
        stop(proc)
        out.unlink(missing_ok=True)


def render(ctx: dict[str, Any], res: dict[str, list[dict[str, Any]]]) -> str:
    w, n = res["worker"], res["naive"]
    ws, ns = [r["seconds"] for r in w], [r["seconds"] for r in n]
    speedup = summary(ns)[0] / summary(ws)[0]
    rss = [r["peak_rss"] for r in w]
    m = ctx["machine"]
    loads = [r["load"] for r in w + n]
    lines = [
        f"## Export ({ctx['server']}) — {ctx['years']:g} y × {ctx['channels']} channels", "",
        f"- Date: {ctx['date']}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM; Python {m['python']}",
        f"- Server: PostgreSQL {ctx['pg']}; storage level {ctx['level']}",
        f"- Data: {ctx['rows']:,} rows × {ctx['channels']} channels = {ctx['readings'] / 1e6:.1f} M readings "
        f"(imported in {ctx['import_s']:.0f} s)",
        f"- Repeats: {len(w)} worker, {len(n)} naive; figures are median (min–max)",
        f"- Command: `{ctx['command']}`", "",
        "| path | time | peak RSS | output |",
        "|---|---|---|---|",
        f"| worker: `request_export` → `done` (Windographer, calibrated, flags excluded, binary COPY in "
        f"time batches) | {fmt_s(ws)} | {mb(summary(rss)[0])} ({mb(min(rss))}–{mb(max(rss))}) | "
        f"{w[0]['rows']:,} rows, {w[0]['size'] / 2**20:,.0f} MiB |",
        f"| naive: psycopg `fetchall` → DataFrame → `pivot` → `to_csv` | {fmt_s(ns)} | "
        f"{mb(summary([r['peak_rss'] for r in n])[0])} | {n[0]['rows']:,} rows, {n[0]['size'] / 2**20:,.0f} MiB |",
        "",
        f"- Speed-up (median naive / median worker): **{speedup:.1f}×**; target ≥ {TARGET_SPEEDUP:g}× — "
        f"**{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}**",
        f"- Worker peak RSS (process tree, sampled every 0.1 s; idle before the job "
        f"{mb(summary([r['idle_rss'] for r in w])[0])}): **{mb(max(rss))}** at most; target ≤ {TARGET_RSS_MB} MB — "
        f"**{'met' if max(rss) <= TARGET_RSS_MB * 2**20 else 'NOT met'}**",
        f"- Load average (1 min) at the end of the runs: {min(loads):.1f}–{max(loads):.1f} on {m['nproc']} CPUs "
        "(other processes on the machine add noise above ~1)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--years", type=float, default=6)
    p.add_argument("--channels", type=int, default=80)
    p.add_argument("--database-url", help="server to use (a scratch database is created and dropped on it); "
                   "default: an embedded PostgreSQL in a temporary STATIONMANAGER_HOME")
    p.add_argument("--repeat", type=int, default=3, help="runs of the worker export (default 3)")
    p.add_argument("--naive-repeat", type=int, default=None, help="runs of the naive path (default: --repeat)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args(argv)
    command = "python benchmarks/export.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    rows = n_rows(args.years)
    path, _, _ = generate_file(args.years, args.channels)
    home = Path(tempfile.mkdtemp(prefix="smbench-export-"))
    try:
        return _run(args, command, rows, path, home)
    finally:
        from core import embedded

        srv = embedded._servers.pop(home.resolve() / "pgdata", None)
        if srv is not None:
            with contextlib.suppress(Exception):
                srv.cleanup()
        shutil.rmtree(home, ignore_errors=True)


def _run(args, command: str, rows: int, path: Path, home: Path) -> int:
    server = Server(args.database_url, home)
    template = migrated_template(server)
    name, url = server.create("export", template=template)
    os.environ["STATIONMANAGER_DATABASE_URL"] = url
    os.environ["STATIONMANAGER_HOME"] = str(home)
    core.settings._current = None
    try:
        log(f"importing {path.name} ({rows:,} rows x {args.channels} channels)")
        t0 = time.perf_counter()
        file_id = receive_file(url, path, home)
        row = ingest.import_file(file_id, url=url, settings=Settings(database_url=url, home=home))
        import_s = time.perf_counter() - t0
        assert row["status"] == "imported", row
        log(f"imported {row['n_readings']:,} readings in {import_s:.0f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE reading")
        res: dict[str, list] = {"worker": [], "naive": []}
        for i in range(args.repeat):
            r = run_worker_export(url, home, args.timeout)
            log(f"worker {i + 1}: {r['seconds']:.1f} s, peak RSS {mb(r['peak_rss'])}, {r['rows']:,} rows")
            res["worker"].append(r)
        for i in range(args.repeat if args.naive_repeat is None else args.naive_repeat):
            r = run_naive(url, home, args.timeout)
            log(f"naive {i + 1}: {r['seconds']:.1f} s, peak RSS {mb(r['peak_rss'])}, {r['rows']:,} rows")
            res["naive"].append(r)
        ctx = {
            "server": "embedded PostgreSQL" if server.embedded else "TimescaleDB" if server.level else "PostgreSQL",
            "years": args.years, "channels": args.channels, "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": machine(), "pg": server.caps["postgresql"], "level": server.level, "rows": rows,
            "readings": rows * args.channels, "import_s": import_s, "command": command.strip(),
        }
        publish(f"export-{server.tag}-{args.years:g}y", render(ctx, res), not args.no_doc)
        return 0
    finally:
        db.close_pools()
        server.drop(name)
        server.drop(template)


if __name__ == "__main__":
    raise SystemExit(main())
