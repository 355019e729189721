"""The sandbox process: runs one user query with DuckDB over the snapshot files, then exits.

Started by :func:`core.explore.sandbox.run_query` as ``python -m core.explore.runner`` with
the request as JSON on stdin (``sql``, ``views``: view name -> Parquet files, ``memory_mb``,
``timeout_s``, ``max_rows``, ``max_bytes``, ``address_space_mb``, ``cpu_s``, ``nice``). It
writes one answer to stdout: a line of JSON (``ok``, ``error``, ``kind``, ``rows``,
``truncated``, ``elapsed_s``) and, when ``ok``, the result as an Arrow IPC stream.

Its protection, in the order it is put in place (see docs/security.md, "Explore sandbox"):

1. **operating-system limits**, set before DuckDB is imported: address space
   (``RLIMIT_AS``), CPU seconds (``RLIMIT_CPU``: SIGXCPU, then SIGKILL), no file may be
   written (``RLIMIT_FSIZE`` 0), few open files, no core dump, a lower priority (``nice``);
2. the snapshot's Parquet files are opened as **Arrow datasets** and registered as views,
   so DuckDB itself is allowed no path at all;
3. DuckDB's settings: one thread, a memory limit, no temporary directory, extensions
   neither installed nor loaded automatically, no Python replacement scans, **external
   access disabled** (no file or URL read or written, no ``ATTACH`` of a file, no
   ``COPY … TO``, no ``INSTALL``/``LOAD``), then the configuration **locked** so the query
   cannot change any of it back;
4. a timer interrupts the query after ``timeout_s`` (the parent kills the process if it
   does not stop), and the result is cut at ``max_rows`` rows or ``max_bytes`` bytes.

This module imports nothing from the rest of StationManager: the process holds no
database URL, no secret and no connection.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from typing import Any, BinaryIO

#: Kinds of failure the parent turns into messages (core.explore.sandbox.MESSAGES).
KINDS = ("timeout", "memory", "refused", "locked", "error")


def limit_process(req: dict[str, Any]) -> None:
    """The operating-system limits of this process (before any query runs)."""
    mib = 1024 * 1024
    address = int(req["address_space_mb"]) * mib
    cpu = int(req["cpu_s"])
    for what, soft, hard in (
        (resource.RLIMIT_AS, address, address),
        (resource.RLIMIT_CPU, cpu, cpu + 5),
        (resource.RLIMIT_FSIZE, 0, 0),  # no file is written: results go through the stdout pipe
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NOFILE, 64 + len(_files(req)), 64 + len(_files(req))),
    ):
        _, allowed = resource.getrlimit(what)  # never above a limit the process already has
        if allowed != resource.RLIM_INFINITY:
            soft, hard = min(soft, allowed), min(hard, allowed)
        resource.setrlimit(what, (soft, hard))
    os.nice(int(req.get("nice", 10)))


def _files(req: dict[str, Any]) -> list[str]:
    return [f for paths in req.get("views", {}).values() for f in paths]


def connect(req: dict[str, Any]):  # -> duckdb.DuckDBPyConnection
    """A DuckDB connection with the snapshot's views and every sandbox setting, locked."""
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    conn = duckdb.connect(":memory:", config={
        "threads": 1,
        "memory_limit": f"{int(req['memory_mb'])}MB",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })
    for name, paths in req.get("views", {}).items():
        schemas = [pq.read_schema(p) for p in paths]
        dataset = ds.dataset(paths, format="parquet",
                             schema=pa.unify_schemas(schemas, promote_options="permissive"))
        conn.register(f"_{name}_files", dataset)
        conn.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_{name}_files"')
    for view, sql in req.get("derived", {}).items():
        conn.execute(f'CREATE VIEW "{view}" AS {sql}')
    for statement in (
        "SET python_enable_replacements = false",
        "SET TimeZone = 'UTC'",  # date_trunc, months and days of the UTC times
        "SET temp_directory = ''",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ):
        conn.execute(statement)
    return conn


def kind_of(exc: BaseException) -> str:
    """What kind of failure a DuckDB exception is (one of :data:`KINDS`)."""
    import duckdb

    text = str(exc)
    if isinstance(exc, duckdb.InterruptException):
        return "timeout"
    if isinstance(exc, (duckdb.OutOfMemoryException, MemoryError)):
        return "memory"
    if isinstance(exc, duckdb.PermissionException):
        return "refused"
    if "configuration has been locked" in text:
        return "locked"
    return "error"


def run(req: dict[str, Any], out: BinaryIO) -> None:
    """Run the query and write the answer (see the module docstring)."""
    started = time.monotonic()
    conn = connect(req)
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        conn.interrupt()

    timer = threading.Timer(float(req["timeout_s"]), stop)
    timer.daemon = True
    timer.start()
    batches, rows, size, truncated = [], 0, 0, False
    schema = None
    try:
        relation = conn.sql(req["sql"])
        if relation is not None:
            reader_of = getattr(relation, "to_arrow_reader", None) or relation.fetch_record_batch
            reader = reader_of(2048)
            schema = reader.schema
            for batch in reader:
                if timed_out.is_set():
                    raise TimeoutError
                keep = min(batch.num_rows, int(req["max_rows"]) - rows)
                if keep < batch.num_rows:
                    batch, truncated = batch.slice(0, keep), True
                if size + batch.nbytes > int(req["max_bytes"]):
                    truncated = True
                    break
                batches.append(batch)
                rows += batch.num_rows
                size += batch.nbytes
                if truncated:
                    break
            reader.close()
    except TimeoutError:
        _answer(out, ok=False, kind="timeout", error="interrupted", elapsed_s=time.monotonic() - started)
        return
    except Exception as exc:  # noqa: BLE001 - every failure of the user's query is answered
        kind = "timeout" if timed_out.is_set() else kind_of(exc)
        _answer(out, ok=False, kind=kind, error=str(exc), elapsed_s=time.monotonic() - started)
        return
    finally:
        timer.cancel()
    import pyarrow as pa

    _answer(out, ok=True, rows=rows, truncated=truncated, elapsed_s=time.monotonic() - started,
            statement=schema is None)
    if schema is not None:
        with pa.ipc.new_stream(out, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)


def _answer(out: BinaryIO, **fields: Any) -> None:
    out.write(json.dumps(fields).encode() + b"\n")
    out.flush()


class _NoPandas:
    """Refuses to import pandas: pyarrow imports it when present, though the sandbox needs
    none, and that was half of the sandbox's start-up."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not used in the Explore sandbox", name=name)


def main() -> None:
    sys.meta_path.insert(0, _NoPandas)
    req = json.loads(sys.stdin.buffer.read())
    limit_process(req)
    try:
        run(req, sys.stdout.buffer)
    except MemoryError as exc:  # beyond the address space: reached outside DuckDB's own limit
        _answer(sys.stdout.buffer, ok=False, kind="memory", error=f"MemoryError {exc}", elapsed_s=0.0)


if __name__ == "__main__":
    main()
