"""Disk per mast-year: what one mast's year of 10-minute data adds to the database and to the
file store, for the sizing figures of docs/deploy.md.

It imports the generated mast of ``benchmarks/ingest.py`` (``--years`` × ``--channels``, one
TOA5 file) into a fresh migrated database through a real worker (``stationmanager worker
--once``: the import, its rollups and quality checks), then reports the database's growth
(``pg_database_size`` against the empty migrated database, so every table, index, rollup and
the job queue count), the ``reading`` table and its index, and the file store.

    .venv/bin/python benchmarks/size.py                   # embedded PostgreSQL, 1 year × 80 channels
    .venv/bin/python benchmarks/size.py --database-url postgresql://postgres@127.0.0.1:5433/postgres
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.ingest import (Server, generate_file, mb, migrated_template, n_rows, reading_size,  # noqa: E402
                               receive_file, remove_home, worker_env)
from core import db, jobs  # noqa: E402


def database_bytes(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--years", type=float, default=1, help="years of 10-minute rows (default 1)")
    p.add_argument("--channels", type=int, default=80, help="numeric channels (default 80)")
    p.add_argument("--database-url", help="server to use (a scratch database is created and dropped on it); "
                   "default: an embedded PostgreSQL in a temporary STATIONMANAGER_HOME")
    args = p.parse_args(argv)
    readings = n_rows(args.years) * args.channels
    path, _, _ = generate_file(args.years, args.channels)
    home = Path(tempfile.mkdtemp(prefix="smsize-"))
    server = Server(args.database_url, home)
    template = migrated_template(server)
    try:
        name, url = server.create("size", template=template)
        empty = database_bytes(url)
        file_id = receive_file(url, path, home)
        jobs.queue_imports(url, [file_id])
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "core.cli", "worker", "--once"], env=worker_env(url, home),
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        with psycopg.connect(url, autocommit=True) as conn:
            status, n = conn.execute("SELECT status, n_readings FROM source_file WHERE id = %s", (file_id,)).fetchone()
            assert (status, n) == ("imported", readings), (status, n)
            reading = reading_size(conn, server.level)
        grown = database_bytes(url) - empty
        store = sum(f.stat().st_size for f in (home / "files").rglob("*") if f.is_file())
        per_m = 1e6 / readings
        print(f"| server | {'embedded ' if server.embedded else ''}PostgreSQL {server.caps['postgresql']}, "
              f"storage level {server.level} |")
        print(f"| mast | {args.years:g} y × {args.channels} channels = {readings / 1e6:.2f} M readings, "
              f"TOA5 file {mb(path.stat().st_size)} |")
        print(f"| worker (import, rollups, quality checks) | {seconds:.1f} s |")
        print(f"| database growth | {mb(grown)} ({mb(grown * per_m)} per M readings) |")
        print(f"| of which `reading` + its index | {mb(reading['table'] + reading['index'])} "
              f"({mb((reading['table'] + reading['index']) * per_m)} per M readings) |")
        print(f"| file store (originals) | {mb(store)} ({mb(store * per_m)} per M readings) |")
        return 0
    finally:
        db.close_pools()
        for created in list(server.created):
            server.drop(created)
        remove_home(home)  # the embedded server (if any) and the file store


if __name__ == "__main__":
    os.environ.pop("STATIONMANAGER_DATABASE_URL", None)
    raise SystemExit(main())
