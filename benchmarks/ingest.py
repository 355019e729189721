"""Ingest benchmark: one mast's worth of 10-minute data, as one Campbell TOA5 file.

Reference size: 80 channels x 6 years of 10-minute rows = 315,360 rows = 25.2 M readings.

What it measures, each ``--repeat`` times on a fresh database:

1. **ceiling** – the fastest bare binary COPY of the same readings, pre-encoded in memory,
   into an empty table identical to ``reading`` (a hypertable of 30-day chunks at storage
   level >= 1): ordered by channel then time, and ordered by time;
2. **worker** – the real path: ``core.ingest.receive`` + ``core.jobs.queue_imports`` and a
   real ``python -m ingest_worker`` subprocess, timed from queueing until the file is
   ``imported``, with the worker's peak RSS (psutil, every 0.1 s, children included).

Then, ``--phase-repeat`` times, ``core.ingest.import_file`` runs in this process with its
steps wrapped by timers (no change to core): CSV reading, string->float, timestamps,
melt, encoding, overlap checks, COPY, rollup refresh (per statement) and commit.

Results are printed as Markdown and written to a section of ``docs/benchmarks.md``
(replaced on the next run against the same kind of server and size).

    .venv/bin/python benchmarks/ingest.py                     # embedded PostgreSQL
    .venv/bin/python benchmarks/ingest.py --database-url postgresql://postgres@127.0.0.1:5433/postgres
    .venv/bin/python benchmarks/ingest.py --years 1 --repeat 1   # quick check
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import core.settings  # noqa: E402
from core import db, ingest, jobs, rollups, schema  # noqa: E402
from core.formats import BATCH_ROWS, open_reader, toa5  # noqa: E402
from core.settings import Settings  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
DOC = ROOT / "docs" / "benchmarks.md"
GENERATOR_VERSION = 1
SEED = 20190101
ROWS_PER_YEAR = 365 * 144  # 10-minute rows in a 365-day year
START_END_STAMP = np.datetime64("2019-01-01T00:10:00", "s")  # first row; stamps mark period end
STEP = np.timedelta64(600, "s")
STATION = "Bench Mast"
COPY_BLOCK = 8 << 20  # bytes per copy.write() in the ceiling (psycopg splits to 128 KiB)
TARGET_RATIO = 0.6
TARGET_RSS_MB = 500


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


# --- the file --------------------------------------------------------------------------

# (name pattern, unit, processing, base, diurnal amplitude, noise sd, lower bound, wrap)
_KINDS = [
    ("WS_{h}m_Avg", "m/s", "Avg", 8.0, 1.5, 2.5, 0.0, None),
    ("WS_{h}m_Std", "m/s", "Std", 0.9, 0.2, 0.3, 0.0, None),
    ("WS_{h}m_Max", "m/s", "Max", 12.0, 2.0, 3.5, 0.0, None),
    ("WS_{h}m_Min", "m/s", "Min", 4.5, 1.0, 1.8, 0.0, None),
    ("WD_{h}m_Avg", "Deg", "WVc", 225.0, 20.0, 60.0, None, 360.0),
    ("WD_{h}m_Std", "Deg", "WVc", 12.0, 3.0, 4.0, 0.0, None),
    ("T_{h}m_Avg", "Deg C", "Avg", 9.0, 4.0, 3.0, None, None),
    ("RH_{h}m_Avg", "%", "Avg", 78.0, 12.0, 8.0, 0.0, None),
]
_HEIGHTS = [120, 110, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10]


def channel_specs(n: int) -> list[tuple]:
    """``n`` realistic channel definitions (wind speed/direction, temperature, humidity, …)."""
    specs, i = [], 0
    extra = [("P_Avg", "hPa", "Avg", 1005.0, 1.0, 6.0, None, None), ("BattV_Min", "Volts", "Min", 12.9, 0.3, 0.1, None, None)]
    for name, *rest in extra[: min(2, n)]:
        specs.append((name, *rest))
    while len(specs) < n:
        h = _HEIGHTS[(i // len(_KINDS)) % len(_HEIGHTS)]
        pattern, *rest = _KINDS[i % len(_KINDS)]
        name = pattern.format(h=h)
        if i >= len(_KINDS) * len(_HEIGHTS):
            name += f"_{i // (len(_KINDS) * len(_HEIGHTS)) + 1}"
        specs.append((name, *rest))
        i += 1
    return specs


def n_rows(years: float) -> int:
    return int(round(years * ROWS_PER_YEAR))


def logged_times(rows: int) -> np.ndarray:
    """Timestamps as the logger writes them (period end), datetime64[s]."""
    return START_END_STAMP + STEP * np.arange(rows, dtype=np.int64)


def values_matrix(rows: int, specs: list[tuple]) -> np.ndarray:
    """(rows, channels) float64 with 3 decimals, deterministic (seeded)."""
    rng = np.random.default_rng(SEED)
    day = 2 * np.pi * (np.arange(rows) % 144) / 144.0
    year = 2 * np.pi * (np.arange(rows) % ROWS_PER_YEAR) / ROWS_PER_YEAR
    out = np.empty((rows, len(specs)), dtype=np.float64)
    for j, (_, _, _, base, amp, sd, lo, wrap) in enumerate(specs):
        col = base + amp * np.sin(day - 1.2 + 0.05 * j) + 0.5 * amp * np.cos(year)
        col += sd * rng.standard_normal(rows)
        if lo is not None:
            np.maximum(col, lo, out=col)
        if wrap is not None:
            np.mod(col, wrap, out=col)
        out[:, j] = np.round(col, 3)
    return out


def file_path(years: float, channels: int) -> Path:
    return OUT / f"bench_mast_{years:g}y_{channels}ch_v{GENERATOR_VERSION}.dat"


def generate_file(years: float, channels: int) -> tuple[Path, float, bool]:
    """The benchmark TOA5 file (cached in benchmarks/out). Returns (path, seconds, cached)."""
    path = file_path(years, channels)
    meta = path.with_suffix(".json")
    rows = n_rows(years)
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("size") == path.stat().st_size and info.get("rows") == rows:
            return path, info["seconds"], True
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    specs = channel_specs(channels)
    values = values_matrix(rows, specs)
    stamps = pc.strftime(pa.array(logged_times(rows)), format="%Y-%m-%d %H:%M:%S")
    names = [s[0] for s in specs]

    def q(fields):
        return ",".join(f'"{f}"' for f in fields) + "\n"

    header = (
        q(["TOA5", STATION, "CR1000X", "1", "CR1000X.Std.07.02", "CPU:bench.CR1X", "12345", "Met10min"])
        + q(["TIMESTAMP", "RECORD", *names])
        + q(["TS", "RN", *[s[1] for s in specs]])
        + q(["", "", *[s[2] for s in specs]])
    )
    tmp = path.with_suffix(".tmp")
    chunk = 50_000
    with tmp.open("wb") as fh:
        fh.write(header.encode())
        with pacsv.CSVWriter(
            fh,
            pa.schema([("TIMESTAMP", pa.string()), ("RECORD", pa.int64())] + [(n, pa.float64()) for n in names]),
            write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"),
        ) as writer:
            for i in range(0, rows, chunk):
                j = min(rows, i + chunk)
                cols = [stamps[i:j], pa.array(np.arange(i, j, dtype=np.int64))]
                cols += [pa.array(values[i:j, k]) for k in range(channels)]
                writer.write_table(pa.Table.from_arrays(cols, names=["TIMESTAMP", "RECORD", *names]))
    tmp.replace(path)
    seconds = time.perf_counter() - t0
    meta.write_text(json.dumps({"rows": rows, "channels": channels, "size": path.stat().st_size, "seconds": seconds}))
    return path, seconds, False


# --- servers and scratch databases -----------------------------------------------------


class Server:
    """The server under test: ``--database-url`` or an embedded one in a temp home."""

    def __init__(self, url: str | None, home: Path) -> None:
        self.home = home
        self.embedded = url is None
        if url is None:
            from core import embedded

            url = embedded.ensure_server(Settings(home=home))
        self.admin_url = url
        self.created: list[str] = []
        with psycopg.connect(url, row_factory=dict_row) as conn:
            self.caps = schema.capabilities(conn)
            self.config = {
                k: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(k))).fetchone()[k]
                for k in ("shared_buffers", "max_wal_size", "synchronous_commit", "fsync", "wal_level", "work_mem")
            }
        self.level = min(self.caps["offered_level"], Settings().storage_level_max)

    @property
    def tag(self) -> str:
        """This server in the keys of docs/benchmarks.md's sections: ``level1-server``, ``level0-embedded``."""
        return f"level{self.level}-{'embedded' if self.embedded else 'server'}"

    def create(self, kind: str, template: str | None = None) -> tuple[str, str]:
        name = f"smbench_{kind}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(stmt)
        self.created.append(name)
        return name, db.with_dbname(self.admin_url, name)

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def checkpoint(self) -> None:
        """Start each timed step with no dirty buffers left over by the previous one."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")


def reading_size(conn: psycopg.Connection, level: int) -> dict[str, int]:
    if level >= 1:
        r = conn.execute("SELECT table_bytes, index_bytes FROM hypertable_detailed_size('reading')").fetchone()
        return {"table": int(r[0] or 0), "index": int(r[1] or 0)}
    r = conn.execute("SELECT pg_relation_size('reading'), pg_indexes_size('reading')").fetchone()
    return {"table": int(r[0]), "index": int(r[1])}


# --- 2. ceiling ------------------------------------------------------------------------

CEILING_DDL = """
CREATE TABLE reading (
    channel_id     integer NOT NULL,
    time           timestamptz NOT NULL,
    value          double precision NOT NULL,
    source_file_id integer NOT NULL,
    PRIMARY KEY (channel_id, time)
)"""


def ceiling_payloads(years: float, channels: int) -> dict[str, bytes]:
    """The file's readings as binary COPY rows, ordered by channel/time and by time/channel."""
    rows = n_rows(years)
    values = values_matrix(rows, channel_specs(channels))
    clock = ingest.LoggerClock(utc_offset_minutes=0, timestamp_is_end=True, interval_s=600)
    t = clock.to_utc_start_us(logged_times(rows).astype("datetime64[us]"))
    ids = np.arange(1, channels + 1, dtype=np.int32)
    by_channel = ingest.encode_copy(np.repeat(ids, rows), np.tile(t, channels), values.T.ravel(), 1)
    by_time = ingest.encode_copy(np.tile(ids, rows), np.repeat(t, channels), values.ravel(), 1)
    return {"channel": by_channel, "time": by_time}


def reading_indexes(conn: psycopg.Connection) -> list[str]:
    """The index definitions of ``reading`` (the ceiling's table must have the same)."""
    return sorted(r[0] for r in conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'reading'"))


def run_ceiling(server: Server, payload: bytes, n_readings: int, keep: bool, indexes: list[str]) -> dict[str, Any]:
    name, url = server.create("ceiling")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET client_min_messages = warning")
            if server.level >= 1:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute(CEILING_DDL)
            if server.level >= 1:  # no index but the key, as migrations 0002 and 0020 leave `reading`
                conn.execute("SELECT create_hypertable('reading', by_range('time', INTERVAL '30 days'), "
                             "create_default_indexes => false)")
            if reading_indexes(conn) != indexes:
                raise RuntimeError(f"the ceiling's table has indexes {reading_indexes(conn)}, `reading` has {indexes}")
        server.checkpoint()
        mv = memoryview(payload)
        with psycopg.connect(url) as conn:
            t0 = time.perf_counter()
            with conn.cursor() as cur, cur.copy(sql.SQL(ingest.COPY_SQL).format(sql.Identifier("reading"))) as copy:
                copy.write(ingest.COPY_HEADER)
                for i in range(0, len(mv), COPY_BLOCK):
                    copy.write(mv[i : i + COPY_BLOCK])
                copy.write(ingest.COPY_TRAILER)
            conn.commit()
            seconds = time.perf_counter() - t0
            n = conn.execute("SELECT count(*) FROM reading").fetchone()[0]
            assert n == n_readings, (n, n_readings)
            size = reading_size(conn, server.level)
        return {"seconds": seconds, "rate": n_readings / seconds, "size": size, "load": os.getloadavg()[0]}
    finally:
        if not keep:
            server.drop(name)


# --- 3. through the worker -------------------------------------------------------------


def migrated_template(server: Server) -> str:
    name, url = server.create("template")
    schema.upgrade(url, Settings(database_url=url, home=server.home))
    db.close_pools()
    return name


def receive_file(url: str, path: Path, home: Path) -> int:
    settings = Settings(database_url=url, home=home)
    with db.connect(url) as conn:
        rec = ingest.receive(conn, path, station=STATION, origin="cli", actor="bench", settings=settings)
        conn.commit()
    assert rec.status == "queued", rec
    return rec.id


def worker_env(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env["STATIONMANAGER_DATABASE_URL"] = url
    env["STATIONMANAGER_HOME"] = str(home)
    return env


def tree_rss(proc: psutil.Process) -> int:
    try:
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total
    except psutil.Error:
        return 0


def run_worker(server: Server, template: str, path: Path, n_readings: int, keep: bool, timeout: float) -> dict[str, Any]:
    name, url = server.create("worker", template=template)
    log_path = server.home / f"worker-{name}.log"
    worker = None
    try:
        file_id = receive_file(url, path, server.home)
        with log_path.open("w") as log_fh:
            worker = subprocess.Popen(
                [sys.executable, "-m", "ingest_worker"], env=worker_env(url, server.home),
                stdout=log_fh, stderr=subprocess.STDOUT, cwd=ROOT,
            )
        proc = psutil.Process(worker.pid)
        deadline = time.monotonic() + 60
        while "Starting worker" not in log_path.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log_path}:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(1.0)  # let it settle (signal handlers, LISTEN)
        idle_rss = tree_rss(proc)
        server.checkpoint()
        peak = idle_rss
        status = job_status = None
        with psycopg.connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            jobs.queue_imports(url, [file_id])
            while True:
                peak = max(peak, tree_rss(proc))
                status = conn.execute("SELECT status FROM source_file WHERE id = %s", (file_id,)).fetchone()[0]
                if status in ("imported", "failed"):
                    break
                job = conn.execute(
                    "SELECT status FROM procrastinate_jobs WHERE task_name = 'sm:import_file' ORDER BY id DESC LIMIT 1"
                ).fetchone()
                job_status = job[0] if job else None
                if job_status in ("failed", "cancelled", "aborted"):
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited ({worker.returncode}); see {log_path}")
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"no result after {timeout:.0f} s; see {log_path}")
                time.sleep(0.1)
            seconds = time.perf_counter() - t0
            if status != "imported":
                tail = log_path.read_text()[-3000:]
                raise RuntimeError(f"import ended as file {status!r}, job {job_status!r}:\n{tail}")
            n = conn.execute("SELECT n_readings FROM source_file WHERE id = %s", (file_id,)).fetchone()[0]
            assert n == n_readings, (n, n_readings)
            size = reading_size(conn, server.level)
        return {
            "seconds": seconds, "rate": n_readings / seconds, "peak_rss": peak, "idle_rss": idle_rss, "size": size,
            "load": os.getloadavg()[0],
        }
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if not keep:
            server.drop(name)
            log_path.unlink(missing_ok=True)


# --- 3b. phases, in this process --------------------------------------------------------


class Phases:
    """Accumulated seconds per step, via wrappers patched over core's module attributes."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)
        self.marks: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        self.t[key] += seconds
        self.n[key] += 1

    def timed(self, key: str, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.add(key, time.perf_counter() - t0)

        return wrapper

    def timed_gen(self, key: str, genfn):
        @functools.wraps(genfn)
        def wrapper(*a, **kw):
            it = genfn(*a, **kw)
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    self.add(key, time.perf_counter() - t0)
                    return
                self.add(key, time.perf_counter() - t0)
                yield item

        return wrapper


class _TimedConn:
    """Proxy of a connection that times each named rollup statement."""

    def __init__(self, conn, phases: Phases) -> None:
        self._conn, self._phases = conn, phases
        self._names = {id(db.q(n)): n for n in ("clear_1h", "refresh_1h", "clear_1d", "refresh_1d")}

    def execute(self, query, *a, **kw):
        key = "rollup " + self._names.get(id(query), "other")
        t0 = time.perf_counter()
        try:
            return self._conn.execute(query, *a, **kw)
        finally:
            self._phases.add(key, time.perf_counter() - t0)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@contextlib.contextmanager
def instrumented(ph: Phases):
    patches: list[tuple[Any, str, Any]] = []

    def patch(obj, attr, new):
        patches.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, new)

    orig_fetch_one = db.fetch_one

    def fetch_one(conn, query, /, **params):
        if query == "source_file" and "commit_end" not in ph.marks and "rollup_end" in ph.marks:
            ph.marks["commit_end"] = time.perf_counter()
        t0 = time.perf_counter()
        try:
            return orig_fetch_one(conn, query, **params)
        finally:
            key = {"overlap_exists": "overlap check", "upsert_channel": "setup (channels, logger)",
                   "logger_in_force": "setup (channels, logger)", "insert_logger": "setup (channels, logger)",
                   "claim_source_file": "claim"}.get(query)
            if key:
                ph.add(key, time.perf_counter() - t0)

    orig_refresh = rollups.refresh_rollups

    def refresh(conn, *a, **kw):
        try:
            return orig_refresh(_TimedConn(conn, ph), *a, **kw)
        finally:
            ph.marks["rollup_end"] = time.perf_counter()

    patch(db, "fetch_one", fetch_one)
    patch(rollups, "refresh_rollups", refresh)
    # the parser: core.formats.delimited (shared table reader) or, before it, toa5 itself
    fmt = _parser_module()
    reader_cls = getattr(fmt, "TableReader", None) or toa5.Toa5Reader
    patch(reader_cls, "batches", ph.timed_gen("_batches", reader_cls.batches))
    patch(reader_cls, "_arrow_batches", ph.timed_gen(P_CSV, reader_cls._arrow_batches))
    for attr, key in (("floats", P_FLOAT), ("to_float", P_FLOAT), ("_to_float", P_FLOAT), ("parse_times", P_TIMES),
                      ("_parse_times", P_TIMES), ("guess_time_format", P_TIMES), ("text_columns", P_TEXT),
                      ("_text_columns", P_TEXT)):
        if hasattr(fmt, attr):
            patch(fmt, attr, ph.timed(key, getattr(fmt, attr)))
    if hasattr(reader_cls, "_time_strings"):
        patch(reader_cls, "_time_strings", ph.timed(P_TIMES, reader_cls._time_strings))
    for attr, key in (("_utc_rows", "clock conversion (_utc_rows)"), ("_melt", "melt (_melt)"),
                      ("encode_copy", "encode (encode_copy)"), ("_copy", "COPY (readings and built rollups)")):
        patch(ingest, attr, ph.timed(key, getattr(ingest, attr)))
    patch(rollups.RollupBuilder, "add", ph.timed("rollups built from batches (numpy)", rollups.RollupBuilder.add))
    try:
        yield
    finally:
        for obj, attr, old in reversed(patches):
            setattr(obj, attr, old)


P_CSV = "parse: CSV read (pyarrow, as strings)"
P_FLOAT = "parse: string -> float (trim + cast)"
P_TIMES = "parse: timestamps (pandas)"
P_TEXT = "parse: text-column check"
P_OTHER = "parse: other"


def _parser_module():
    try:
        from core.formats import delimited

        return delimited
    except ImportError:
        return toa5


PHASE_ORDER = [
    "claim",
    "setup (channels, logger)",
    P_CSV,
    P_FLOAT,
    P_TIMES,
    P_TEXT,
    P_OTHER,
    "melt (_long_rows)",
    "encode (encode_copy)",
    "overlap check",
    "COPY into reading",
    "rollup clear_1h",
    "rollup refresh_1h",
    "rollup clear_1d",
    "rollup refresh_1d",
    "rollup other",
    "commit",
    "other",
]


@contextlib.contextmanager
def worker_settings(url: str, home: Path):
    """For an import run in this process: the process-wide settings a worker on ``url`` would
    read (yielded); the environment and the pools are restored afterwards."""
    keys = ("STATIONMANAGER_DATABASE_URL", "STATIONMANAGER_HOME")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict(zip(keys, (url, str(home)))))
    core.settings._current = None
    try:
        yield core.settings.get_settings()
    finally:
        db.close_pools()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        core.settings._current = None


def run_phases(server: Server, template: str, path: Path, n_readings: int, keep: bool, profile: bool) -> dict[str, Any]:
    name, url = server.create("phases", template=template)
    try:
        with worker_settings(url, server.home) as settings:
            return _timed_phases(server, url, path, n_readings, settings, profile)
    finally:
        if not keep:
            server.drop(name)


def _timed_phases(server: Server, url: str, path: Path, n_readings: int, settings, profile: bool) -> dict[str, Any]:
    file_id = receive_file(url, path, server.home)
    server.checkpoint()
    ph = Phases()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    with instrumented(ph):
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        row = ingest.import_file(file_id, url, settings)
        if prof:
            prof.disable()
        total = time.perf_counter() - t0
    assert row["status"] == "imported" and row["n_readings"] == n_readings, row
    t = dict(ph.t)
    t[P_OTHER] = t.pop("_batches", 0.0) - sum(t.get(k, 0.0) for k in (P_CSV, P_FLOAT, P_TIMES, P_TEXT))
    if "rollup_end" in ph.marks and "commit_end" in ph.marks:
        t["commit"] = ph.marks["commit_end"] - ph.marks["rollup_end"]
    t["other"] = total - sum(t.values())
    out = {"total": total, "phases": t, "batches": ph.n.get("COPY into reading", 0), "load": os.getloadavg()[0]}
    if prof:
        import io
        import pstats

        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
        out["profile"] = s.getvalue()
    return out


def parse_alternatives(path: Path) -> dict[str, float]:
    """Parse-only what-ifs on the same file (no database): today's reader (every field read
    as a string, then trimmed and cast column by column; timestamps through pandas) vs
    pyarrow's CSV reader converting while it parses (timestamp and float64 column types)."""
    out = {}
    reader = open_reader(path)
    t0 = time.perf_counter()
    n = sum(b.values.size for b in reader.batches())
    out["current reader (strings, then trim + cast; pandas timestamps)"] = time.perf_counter() - t0
    layout = getattr(reader, "layout", None)
    fields = layout.fields if layout else reader._fields
    wanted = [c.name for c in reader.header.columns]
    missing = getattr(_parser_module(), "MISSING", ["NAN"])
    t0 = time.perf_counter()
    stream = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(skip_rows=4, column_names=fields, block_size=1 << 22),
        convert_options=pacsv.ConvertOptions(
            column_types={fields[0]: pa.timestamp("s"), **{c: pa.float64() for c in wanted}},
            include_columns=[fields[0], *wanted],
            null_values=missing,
        ),
    )
    m = 0
    for batch in stream:
        times = batch.column(0).to_numpy().astype("datetime64[us]")
        values = np.empty((batch.num_rows, len(wanted)))
        for j in range(len(wanted)):
            values[:, j] = batch.column(j + 1).to_numpy(zero_copy_only=False)
        assert len(times) == batch.num_rows
        m += values.size
    out["pyarrow typed columns (timestamp[s], float64) while parsing"] = time.perf_counter() - t0
    assert m == n, (m, n)
    return out


# --- reporting ---------------------------------------------------------------------------


def summary(xs: list[float]) -> tuple[float, float, float]:
    return statistics.median(xs), min(xs), max(xs)


def fmt_rate(xs: list[float]) -> str:
    med, lo, hi = summary(xs)
    if len(xs) == 1:
        return f"{med / 1e6:.2f} M/s"
    return f"{med / 1e6:.2f} M/s ({lo / 1e6:.2f}–{hi / 1e6:.2f})"


def fmt_s(xs: list[float]) -> str:
    med, lo, hi = summary(xs)
    return f"{med:.1f} s" if len(xs) == 1 else f"{med:.1f} s ({lo:.1f}–{hi:.1f})"


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def machine() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "cpu": model,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def environment_lines(ctx: dict[str, Any]) -> list[str]:
    """The date, machine and server lines of a report (shared by the benchmarks)."""
    server, m = ctx["server"], ctx["machine"]
    return [
        f"- Date: {ctx['date']}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM; Python {m['python']}",
        f"- Server: PostgreSQL {server.caps['postgresql']}"
        + (f", TimescaleDB {ctx['timescaledb']}" if ctx.get("timescaledb") else "")
        + f"; storage level {server.level}; "
        + ", ".join(f"{k} = {v}" for k, v in server.config.items()),
    ]


def render(ctx: dict[str, Any], res: dict[str, Any]) -> str:
    ch, tm, wk = res["ceiling_channel"], res["ceiling_time"], res["worker"]
    n = ctx["n_readings"]
    lines = [
        f"## {ctx['title']}",
        "",
        *environment_lines(ctx),
        f"- File: {ctx['years']:g} years × {ctx['channels']} channels = {ctx['rows']:,} rows = "
        f"{n / 1e6:.1f} M readings, one TOA5 file of {mb(ctx['file_size'])} "
        f"(generated in {ctx['gen_seconds']:.1f} s{', cached' if ctx['cached'] else ''})",
        f"- Repeats: {ctx['repeat']} (fresh database each); figures are median (min–max)",
        f"- Command: `{ctx['command']}`",
        "",
        "| measurement | time | readings/s | notes |",
        "|---|---|---|---|",
    ]
    if ch:
        lines.append(
            f"| ceiling: bare binary COPY, by channel then time | {fmt_s([r['seconds'] for r in ch])} | "
            f"{fmt_rate([r['rate'] for r in ch])} | reading {mb(ch[0]['size']['table'])} + "
            f"index {mb(ch[0]['size']['index'])} |"
        )
    if tm:
        lines.append(
            f"| ceiling: bare binary COPY, by time | {fmt_s([r['seconds'] for r in tm])} | "
            f"{fmt_rate([r['rate'] for r in tm])} | index {mb(tm[0]['size']['index'])} |"
        )
    if wk:
        wk_rates = [r["rate"] for r in wk]
        lines.append(
            f"| worker: queued → imported | {fmt_s([r['seconds'] for r in wk])} | {fmt_rate(wk_rates)} | "
            f"index {mb(wk[0]['size']['index'])} |"
        )
        lines.append("")
        if ch:
            ceil_med = summary([r["rate"] for r in ch])[0]
            ratio = summary(wk_rates)[0] / ceil_med
            ratios = [r / ceil_med for r in wk_rates]
            lines.append(
                f"- Worker / channel-ordered ceiling: **{ratio:.2f}** ({min(ratios):.2f}–{max(ratios):.2f}); "
                f"target ≥ {TARGET_RATIO} — **{'met' if ratio >= TARGET_RATIO else 'NOT met'}**"
            )
        peak = max(r["peak_rss"] for r in wk)
        lines.append(
            f"- Worker peak RSS (process tree, sampled every 0.1 s): **{mb(peak)}** "
            f"(idle before the job {mb(summary([r['idle_rss'] for r in wk])[0])}; per run "
            + ", ".join(mb(r["peak_rss"]) for r in wk)
            + f"); target ≤ {TARGET_RSS_MB} MB — **{'met' if peak <= TARGET_RSS_MB * 2**20 else 'NOT met'}**"
        )
    loads = [r["load"] for k in ("ceiling_channel", "ceiling_time", "worker", "phases") for r in res.get(k) or []]
    if loads:
        lines.append(
            f"- Load average (1 min) at the end of each timed run: {min(loads):.1f}–{max(loads):.1f} on "
            f"{ctx['machine']['nproc']} CPUs (other processes on the machine add noise when it exceeds ~1)"
        )
    ph = res.get("phases") or []
    if ph:
        keys = [k for k in PHASE_ORDER if any(k in p["phases"] for p in ph)]
        keys += sorted({k for p in ph for k in p["phases"]} - set(keys))
        totals = [p["total"] for p in ph]
        lines += [
            "",
            f"Phases of `core.ingest.import_file` run in-process ({len(ph)} run(s), "
            f"{ph[0]['batches']} batches of {BATCH_ROWS:,} rows; total {fmt_s(totals)}, "
            f"{fmt_rate([n / t for t in totals])}):",
            "",
            "| phase | seconds | share |",
            "|---|---|---|",
        ]
        med_total = summary(totals)[0]
        for k in keys:
            xs = [p["phases"].get(k, 0.0) for p in ph]
            lines.append(f"| {k} | {fmt_s(xs)} | {100 * summary(xs)[0] / med_total:.0f} % |")
        groups = {
            "parse": [k for k in keys if k.startswith("parse")],
            "melt + encode": ["melt (_long_rows)", "encode (encode_copy)"],
            "COPY (+ overlap checks)": ["COPY into reading", "overlap check"],
            "rollups": [k for k in keys if k.startswith("rollup")],
            "commit": ["commit"],
        }
        parts = []
        for g, ks in groups.items():
            s = statistics.median([sum(p["phases"].get(k, 0.0) for k in ks) for p in ph])
            parts.append(f"{g} {s:.1f} s ({100 * s / med_total:.0f} %)")
        lines += ["", "Grouped: " + "; ".join(parts) + "."]
    alt = res.get("parse_alternatives")
    if alt:
        lines += ["", "Parse only, no database (same file):", ""]
        for k, v in alt.items():
            lines.append(f"- {k}: {v:.1f} s ({n / v / 1e6:.2f} M readings/s)")
    return "\n".join(lines) + "\n"


DOC_INTRO = """# Benchmarks

Produced by `benchmarks/ingest.py` (see `benchmarks/README.md`). Each section is replaced
when the script runs again against the same kind of server at the same size.

Reference size: one mast, 80 numeric channels × 6 years of 10-minute data = 315,360 rows
= 25.2 M readings, as one Campbell TOA5 file. Targets: the worker imports at ≥ 0.6 × the
rate of a bare binary COPY of the same readings (channel-ordered), with a peak RSS ≤ 500 MB.

- **ceiling**: an empty table identical to `reading` (hypertable of 30-day chunks at
  level ≥ 1) loaded by one binary COPY of the pre-encoded readings, committed;
- **worker**: `receive` + `queue_imports`, then a real `python -m ingest_worker`, timed
  from queueing until `source_file.status = 'imported'` (parse, COPY, rollups, commit);
- **phases**: `core.ingest.import_file` called in-process with its steps wrapped by timers.
"""


def write_doc(key: str, text: str) -> None:
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{begin}\n{text}{end}\n"
    doc = DOC.read_text() if DOC.exists() else DOC_INTRO
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: block, doc)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block
    DOC.write_text(doc)


def publish(key: str, text: str, write: bool = True) -> None:
    """Print a report and, with ``write``, put it in its section ``key`` of docs/benchmarks.md."""
    print()
    print(text)
    if write:
        write_doc(key, text)
        log(f"updated {DOC.relative_to(ROOT)} (section {key})")


# --- main --------------------------------------------------------------------------------


def _interrupt(signum, frame):  # SIGTERM (and SIGINT in the background): clean up first
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--years", type=float, default=6, help="years of 10-minute rows (default 6)")
    p.add_argument("--channels", type=int, default=80, help="numeric channels (default 80)")
    p.add_argument("--database-url", help="server to use (scratch databases are created and dropped on it); "
                   "default: an embedded PostgreSQL in a temporary STATIONMANAGER_HOME")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    p.add_argument("--phase-repeat", type=int, default=1, help="in-process phase runs (default 1; 0 skips)")
    p.add_argument("--profile", action="store_true", help="also cProfile the in-process import (top 25 by own time)")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--timeout", type=float, default=1800, help="give up on one worker import after this (s)")
    p.add_argument("--keep", action="store_true", help="keep the scratch databases and the temporary home")
    p.add_argument("--steps", default="ceiling,worker,phases",
                   help="comma-separated subset of ceiling,worker,phases (default: all)")
    args = p.parse_args(argv)
    steps = {x.strip() for x in args.steps.split(",") if x.strip()}
    if not steps <= {"ceiling", "worker", "phases"}:
        p.error(f"unknown steps: {', '.join(sorted(steps - {'ceiling', 'worker', 'phases'}))}")
    if "phases" not in steps:
        args.phase_repeat = 0

    command = "python benchmarks/ingest.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    rows = n_rows(args.years)
    n_readings = rows * args.channels

    log(f"file: {args.years:g} years x {args.channels} channels = {rows:,} rows = {n_readings / 1e6:.1f} M readings")
    path, gen_s, cached = generate_file(args.years, args.channels)
    log(f"file {path.relative_to(ROOT)}: {mb(path.stat().st_size)}, generated in {gen_s:.1f} s"
        + (" (cached)" if cached else ""))

    home = Path(tempfile.mkdtemp(prefix="smbench-"))
    try:
        return _run(args, steps, command, path, gen_s, cached, rows, n_readings, home)
    finally:
        if not args.keep:
            remove_home(home)


def remove_home(home: Path) -> None:
    """Stop the embedded server of a temporary home (if any) now, then remove its files."""
    import shutil

    from core import embedded

    srv = embedded._servers.pop(home.resolve() / "pgdata", None)
    if srv is not None:
        with contextlib.suppress(Exception):
            srv.cleanup()
    shutil.rmtree(home, ignore_errors=True)


def _run(args, steps, command, path, gen_s, cached, rows, n_readings, home) -> int:
    server = Server(args.database_url, home)
    log(f"server: PostgreSQL {server.caps['postgresql']}, storage level {server.level}"
        + (" (embedded, home " + str(home) + ")" if server.embedded else f" at {db.redact(server.admin_url)}"))
    res: dict[str, list] = {"ceiling_channel": [], "ceiling_time": [], "worker": [], "phases": []}
    template = None
    try:
        template = migrated_template(server)
        with psycopg.connect(db.with_dbname(server.admin_url, template)) as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            tsdb = row[0] if row else None
            indexes = reading_indexes(conn)
        payloads = {}
        if "ceiling" in steps:
            t0 = time.perf_counter()
            payloads = ceiling_payloads(args.years, args.channels)
            log(f"ceiling payloads encoded in {time.perf_counter() - t0:.1f} s ({mb(len(payloads['channel']))} each)")
        for i in range(args.repeat):
            for order in payloads:
                r = run_ceiling(server, payloads[order], n_readings, args.keep, indexes)
                res[f"ceiling_{order}"].append(r)
                log(f"[{i + 1}/{args.repeat}] ceiling by {order}: {r['seconds']:.1f} s, {r['rate'] / 1e6:.2f} M readings/s")
            if "worker" not in steps:
                continue
            r = run_worker(server, template, path, n_readings, args.keep, args.timeout)
            res["worker"].append(r)
            log(f"[{i + 1}/{args.repeat}] worker: {r['seconds']:.1f} s, {r['rate'] / 1e6:.2f} M readings/s, "
                f"peak RSS {mb(r['peak_rss'])}")
        del payloads
        for i in range(args.phase_repeat):
            r = run_phases(server, template, path, n_readings, args.keep, args.profile)
            res["phases"].append(r)
            log(f"[{i + 1}/{args.phase_repeat}] in-process import: {r['total']:.1f} s; "
                + ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items() if v >= 0.05))
            if r.get("profile"):
                print(r["profile"])
        if args.phase_repeat:
            res["parse_alternatives"] = parse_alternatives(path)
    finally:
        db.close_pools()
        if template and not args.keep:
            server.drop(template)
        if args.keep:
            log(f"kept databases: {', '.join(server.created)}; home {home}")
        else:
            for name in list(server.created):
                server.drop(name)

    kind = "embedded PostgreSQL" if server.embedded else "external server"
    level_name = {0: "PostgreSQL", 1: "TimescaleDB Apache", 2: "TimescaleDB community"}[server.level]
    ctx = {
        "title": f"{level_name} (level {server.level}, {kind}) — {args.years:g} y × {args.channels} channels",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "server": server,
        "timescaledb": tsdb,
        "years": args.years,
        "channels": args.channels,
        "rows": rows,
        "n_readings": n_readings,
        "file_size": path.stat().st_size,
        "gen_seconds": gen_s,
        "cached": cached,
        "repeat": args.repeat,
        "command": command,
    }
    publish(f"{server.tag}-{args.years:g}y-{args.channels}ch", render(ctx, res), not args.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
