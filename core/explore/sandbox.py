"""Run a user's SQL over snapshot files in a sandbox process, never in the caller's.

:func:`run_query` waits for one of ``STATIONMANAGER_EXPLORE_MAX_RUNNING`` slots (a lock
file each under ``HOME/explore``, so the limit holds across every web-app process),
starts ``python -m core.explore.runner`` (see :mod:`core.explore.runner` for its limits)
in an empty folder with a bare environment — no database URL, no secret — sends it the
request, and reads its answer: a :class:`QueryResult`, or an :class:`ExploreError` whose
message says what happened and which setting decides it. A process that does not end
within the time limit plus :data:`GRACE_S` is killed with its process group.

The caller only waits on a pipe: the query's CPU and memory are the sandbox process's,
capped and at a lower priority, so a hostile query slows nobody else down.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from core import home
from core.errors import StationManagerError
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: Seconds the parent waits past the time limit before it kills the sandbox process.
GRACE_S = 10.0
#: Address space of the sandbox beyond DuckDB's memory limit: Python, pyarrow and DuckDB
#: themselves (about 500 MiB of mappings before the first query).
ADDRESS_HEADROOM_MB = 1024
#: The sandbox's scheduling priority (added niceness).
NICE = 10
#: Longest SQL text accepted (characters).
MAX_SQL_CHARS = 100_000
#: Seconds between two looks for a free slot.
SLOT_POLL_S = 0.2
#: Variables passed to the sandbox: one thread for every numeric library, the system
#: allocator (no large reservations counted against its address space).
SANDBOX_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1", "LC_ALL": "C.UTF-8",
}


class ExploreError(StationManagerError):
    """The query could not be run."""


class QueryRefused(ExploreError):
    """The query asked for something the Explore sandbox does not allow."""


class QueryStopped(ExploreError):
    """The query was stopped at a limit (time or memory)."""


class ExploreBusy(ExploreError):
    """Every Explore slot stayed busy: try again in a moment."""


@dataclass
class QueryResult:
    """What a query returned: its rows (at most the row cap), whether they were cut, and how
    long it took. ``statement``: the SQL was a statement without a result (``CREATE``…)."""

    table: pa.Table
    truncated: bool
    elapsed_s: float
    statement: bool = False


def limits(settings: Settings | None = None) -> dict[str, str]:
    """The sandbox's limits in words, for the page and the docs.

    >>> limits(Settings(explore_memory_mb=256))["memory"]
    '256 MiB (STATIONMANAGER_EXPLORE_MEMORY_MB)'
    """
    s = settings or get_settings()
    return {
        "memory": f"{s.explore_memory_mb} MiB (STATIONMANAGER_EXPLORE_MEMORY_MB)",
        "time": f"{s.explore_timeout_s:g} s (STATIONMANAGER_EXPLORE_TIMEOUT_S)",
        "rows": f"{s.explore_max_rows:,} rows (STATIONMANAGER_EXPLORE_MAX_ROWS)",
        "threads": "1",
        "at once": f"{s.explore_max_running} queries (STATIONMANAGER_EXPLORE_MAX_RUNNING)",
    }


def _message(kind: str, error: str, s: Settings) -> ExploreError:
    if kind == "timeout":
        return QueryStopped(
            f"the query was stopped after {s.explore_timeout_s:g} s, the time limit of Explore "
            "(STATIONMANAGER_EXPLORE_TIMEOUT_S); aggregate or filter more (a shorter period, fewer "
            "stations), or avoid joins without a condition")
    if kind == "memory":
        return QueryStopped(
            f"the query needs more than {s.explore_memory_mb} MiB, the memory limit of Explore "
            "(STATIONMANAGER_EXPLORE_MEMORY_MB); aggregate before sorting or joining, or choose a shorter "
            f"period (DuckDB: {_first_line(error)})")
    if kind == "refused":
        return QueryRefused(
            "the query was refused: Explore reads only the snapshot's views (readings, channels); files, "
            "URLs, extensions (INSTALL, LOAD), ATTACH of a file and COPY … TO are not available "
            f"(DuckDB: {_first_line(error)})")
    if kind == "locked":
        return QueryRefused(
            "the query was refused: the settings of the Explore sandbox cannot be changed "
            f"(DuckDB: {_first_line(error)})")
    return ExploreError(f"DuckDB: {error.strip()}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def slots_dir(settings: Settings) -> Path:
    """Where the slots' lock files are: ``HOME/explore``, out of ``HOME/tmp``, which the
    workers sweep (a lock file removed there would free a taken slot)."""
    return settings.home.resolve() / "explore"


@contextlib.contextmanager
def slot(settings: Settings, on_wait: Callable[[int], None] | None = None) -> Iterator[int]:
    """Hold one of ``EXPLORE_MAX_RUNNING`` slots (an exclusive lock on a file each, released
    by the system if this process dies). Waits at most ``EXPLORE_WAIT_S`` for one, calling
    ``on_wait(number of slots)`` once when all are taken."""
    folder = slots_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    n = max(1, settings.explore_max_running)
    deadline = time.monotonic() + settings.explore_wait_s
    told = False
    while True:
        for k in range(n):
            fd = os.open(folder / f"slot-{k}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield k
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if time.monotonic() > deadline:
            raise ExploreBusy(
                f"{n} Explore queries are running, the most at once (STATIONMANAGER_EXPLORE_MAX_RUNNING), "
                f"and none ended within {settings.explore_wait_s:g} s (STATIONMANAGER_EXPLORE_WAIT_S); "
                "try again in a moment")
        if not told and on_wait is not None:
            on_wait(n)
            told = True
        time.sleep(SLOT_POLL_S)


def run_query(sql: str, views: Mapping[str, Sequence[Path]], settings: Settings | None = None, *,
              derived: Mapping[str, str] | None = None,
              on_wait: Callable[[int], None] | None = None) -> QueryResult:
    """Run ``sql`` in a sandbox process over ``views`` (view name -> Parquet files, all with
    one layout) and ``derived`` views (name -> SQL over them). Raises :class:`ExploreError`
    (:class:`QueryRefused`, :class:`QueryStopped`, :class:`ExploreBusy`) with a message to show."""
    s = settings or get_settings()
    if not sql.strip():
        raise ExploreError("write a query first, or choose an example")
    if len(sql) > MAX_SQL_CHARS:
        raise ExploreError(f"the query is {len(sql):,} characters long; at most {MAX_SQL_CHARS:,} are accepted")
    missing = [str(p) for paths in views.values() for p in paths if not Path(p).is_file()]
    if missing:
        raise ExploreError(f"the snapshot's file {missing[0]} is missing; build the snapshot again")
    request = {
        "sql": sql,
        "views": {name: [str(Path(p).resolve()) for p in paths] for name, paths in views.items() if paths},
        "derived": dict(derived or {}),
        "memory_mb": s.explore_memory_mb, "timeout_s": s.explore_timeout_s, "max_rows": s.explore_max_rows,
        "max_bytes": s.explore_max_result_mb * 1024 * 1024,
        "address_space_mb": s.explore_memory_mb + ADDRESS_HEADROOM_MB,
        "cpu_s": int(s.explore_timeout_s) + int(GRACE_S), "nice": NICE,
    }
    with slot(s, on_wait):
        out, err, code = _spawn(json.dumps(request).encode(), s)
    return _read_answer(out, err, code, s)


def _spawn(request: bytes, s: Settings) -> tuple[bytes, bytes, int]:
    """Run the sandbox process; its stdout, stderr and exit code (negative: killed by a signal)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SANDBOX_ENV}
    with tempfile.TemporaryDirectory(prefix="explore-", dir=home.process_tmp(s)) as cwd:
        env["HOME"] = cwd
        proc = subprocess.Popen(  # noqa: S603 - our own module, with the running interpreter
            [sys.executable, "-I", "-m", "core.explore.runner"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=cwd, env=env, process_group=0)
        try:
            out, err = proc.communicate(request, timeout=s.explore_timeout_s + GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            log.warning("an Explore query did not stop at its time limit; its process was killed")
            return b"", err, -signal.SIGKILL
        finally:
            if proc.poll() is None:  # the caller was interrupted: no orphan keeps running
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return out, err, proc.returncode


def _read_answer(out: bytes, err: bytes, code: int, s: Settings) -> QueryResult:
    head, _, body = out.partition(b"\n")
    if not head:
        if code in (-signal.SIGKILL, -signal.SIGXCPU):
            raise _message("timeout", "", s)
        text = err.decode(errors="replace").strip()
        if "MemoryError" in text or "bad_alloc" in text or "cannot allocate" in text:
            raise _message("memory", _first_line(text.splitlines()[-1]), s)
        log.warning("the Explore sandbox ended with code %s: %s", code, text[-2000:])
        raise ExploreError(f"the query's process ended without an answer (exit code {code}): "
                           f"{text.splitlines()[-1] if text else 'no message'}")
    answer = json.loads(head)
    if not answer["ok"]:
        raise _message(answer["kind"], answer["error"], s)
    table = pa.ipc.open_stream(body).read_all() if body else pa.table({})
    return QueryResult(table, bool(answer["truncated"]), float(answer["elapsed_s"]), bool(answer.get("statement")))
