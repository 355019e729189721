"""Backup, restore and copy of a StationManager installation, at any storage level.

A backup is a folder (readable by its owner only)::

    manifest.json             format, schema version, storage level, each part's rows and sha256,
                              the original files
    data/NNN_<table>.tsv.gz   a table's rows in PostgreSQL's text COPY format, gzip-compressed
    files/<aa>/<sha256>       the original files the database refers to
    users.yaml                user names, roles, e-mail addresses and bcrypt hashes (no cookie key)
    settings.env              the STATIONMANAGER_* settings that differ from their defaults
                              (never the database URL, never a secret)

Why not ``pg_dump``: a dump of a TimescaleDB database restores only onto the same
TimescaleDB version (with ``timescaledb_pre_restore()``), and a dump of a plain database
onto TimescaleDB would stay at level 0. Here the data is level-independent: a restore
runs the project's own migrations on the target, up to the backup's schema version, so the
target gets the best storage level its server offers (a hypertable on TimescaleDB, a table
on PostgreSQL), COPYs the rows in, applies the newer migrations, and rebuilds the channels'
extents and the rollups (derived data, never copied). ``db copy`` does the same table to table, without a file.

Consistency: every table is read in one ``REPEATABLE READ`` snapshot. The job queue, the
rollups, sign-in sessions and lock-outs are not kept; an import caught half-way is queued
again on restore. Secrets never enter a backup: ``HOME/secrets.toml`` is not copied, nor the
user file's cookie-signing key (a restore makes a new one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from core import auth, db, home, ingest, schema
from core.errors import BackupError, DatabaseError
from core.settings import PREFIX, Settings, get_settings

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
#: Tables never copied: the schema's own records, derived rollups and channel extents, the job
#: queue (prefix ``procrastinate_``) and sign-in state (everyone signs in again after a restore).
NOT_COPIED = frozenset({"storage_info", "schema_migration", "reading_1h", "reading_1d", "rollup_pending",
                        "channel_extent", "sign_in_session", "sign_in_failure", "sign_in_client",
                        "sign_in_check"})
#: Settings left out of settings.env: where this installation is, and the test server.
LOCAL_SETTINGS = frozenset({"home", "database_url", "test_database_url", "demo"})
CHUNK = 1 << 20
REPORT_EVERY_S = 2.0

_SQL = db.SqlFile("backup.sql")
Progress = Callable[[str], None]


def _quiet(_line: str) -> None:
    pass


# --- reading a database ----------------------------------------------------------------


@dataclasses.dataclass
class Table:
    name: str
    columns: list[str]
    key: list[str]
    rows: int

    def copy_out(self) -> sql.Composed:
        """``COPY (SELECT … ORDER BY key) TO STDOUT``: a hypertable's rows live in its chunks,
        which ``COPY table TO`` would not read; key order makes the load write indexes in order."""
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        order = sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, self.key))) if self.key \
            else sql.SQL("")
        return sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT").format(cols, sql.Identifier(self.name), order)

    def copy_in(self) -> sql.Composed:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        return sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(self.name), cols)


def copied(name: str) -> bool:
    """Whether a table's rows belong in a backup.

    >>> copied("reading"), copied("reading_1h"), copied("channel_extent"), copied("procrastinate_jobs")
    (True, False, False, False)
    """
    return name not in NOT_COPIED and not name.startswith("procrastinate_")


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [r["name"] for r in _SQL.fetch_all(conn, "columns", table=table)]


@contextlib.contextmanager
def snapshot(url: str) -> Iterator[tuple[psycopg.Connection, dict[str, Any], list[Table]]]:
    """A read-only REPEATABLE READ transaction on ``url`` with the schema's version, level and
    tables (rows counted in that snapshot)."""
    with db.connect(url) as conn, db.translate():
        conn.execute("SET statement_timeout = 0")
        conn.commit()
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        level = schema.stored_level(conn)
        if level is None:
            raise DatabaseError(f"{db.redact(url)} holds no StationManager database (nothing to back up or copy)")
        info = {"storage_level": level, **_SQL.fetch_one(conn, "schema_version")}
        _check_known(info["versions"], "the database")
        tables = []
        for r in _SQL.fetch_all(conn, "tables"):
            if copied(r["name"]):
                n = conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(r["name"])))
                tables.append(Table(r["name"], _columns(conn, r["name"]),
                                    [k["name"] for k in _SQL.fetch_all(conn, "key_columns", table=r["name"])],
                                    n.fetchone()["n"]))
        yield conn, info, tables
        conn.rollback()


def _check_known(versions: list[int], what: str) -> None:
    known = {m.version for m in schema.migrations()} | {0}
    unknown = sorted(set(versions) - known)
    if unknown:
        raise BackupError(f"{what} has migration(s) {', '.join(f'{v:04d}' for v in unknown)}, which this "
                          f"StationManager does not know: use the version that made it, or a newer one")


def _stream(conn: psycopg.Connection, table: Table) -> Iterator[bytes]:
    """A table's rows as text COPY data, in chunks of about ``CHUNK`` bytes."""
    buf = bytearray()
    with conn.cursor().copy(table.copy_out()) as copy:
        for row in copy:
            buf += row
            if len(buf) >= CHUNK:
                yield bytes(buf)
                buf.clear()
    if buf:
        yield bytes(buf)


class _Counter:
    """Counts rows in text COPY data (one line per row: newlines inside values are escaped)
    and reports progress at most every ``REPORT_EVERY_S`` seconds."""

    def __init__(self, table: Table, what: str, progress: Progress) -> None:
        self.table, self.what, self.progress = table, what, progress
        self.rows = 0
        self.last = time.monotonic()

    def add(self, chunk: bytes) -> bytes:
        self.rows += chunk.count(b"\n")
        if time.monotonic() - self.last >= REPORT_EVERY_S:
            self.report()
        return chunk

    def report(self) -> None:
        total = self.table.rows
        pct = f" ({100 * self.rows / total:.0f} %)" if total else ""
        self.progress(f"{self.what} {self.table.name}: {self.rows:,} of {total:,} rows{pct}")
        self.last = time.monotonic()

    def check(self) -> None:
        if self.rows:
            self.report()
        if self.rows != self.table.rows:
            raise BackupError(f"table {self.table.name}: {self.rows:,} rows where {self.table.rows:,} were expected")


# --- backup ------------------------------------------------------------------------------


class _HashingFile:
    """A binary file that hashes what is written to it."""

    def __init__(self, fh) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def backup(out: Path, url: str | None = None, settings: Settings | None = None, *, link: bool = False,
           progress: Progress = _quiet) -> dict[str, Any]:
    """Back the installation up into the new folder ``out``; returns the manifest.

    ``link`` hard-links the original files instead of copying them when ``out`` is on the
    same file system (they never change: the store is content-addressed and read-only).
    """
    settings = settings or get_settings()
    url = url or db.database_url(settings)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} exists and is not an empty folder: back up into a new folder")
    home.make_private_dir(out, 0o700)
    (out / "data").mkdir(mode=0o700, exist_ok=True)
    manifest: dict[str, Any] = {"format": FORMAT, "made_at": datetime.now(UTC).isoformat(),
                                "database": db.redact(url)}
    with snapshot(url) as (conn, info, tables):
        manifest.update(schema_version=info["version"], migrations=info["versions"],
                        storage_level=info["storage_level"], tables=[])
        for i, table in enumerate(tables, 1):
            part = f"data/{i:03d}_{table.name}.tsv.gz"
            counter = _Counter(table, "backup", progress)
            with open(out / part, "xb") as fh:
                hashed = _HashingFile(fh)
                with gzip.GzipFile(fileobj=hashed, mode="wb", compresslevel=1, mtime=0) as gz:  # type: ignore[arg-type]
                    for chunk in _stream(conn, table):
                        gz.write(counter.add(chunk))
            counter.check()
            manifest["tables"].append({"name": table.name, "columns": table.columns, "rows": table.rows,
                                       "file": part, "bytes": hashed.size, "sha256": hashed.sha.hexdigest()})
        originals = _SQL.fetch_all(conn, "originals")
    manifest["files"], manifest["missing_files"] = _save_originals(settings, originals, out, link, progress)
    manifest["users"] = _save_users(settings, out)
    manifest["settings"] = _save_settings(settings, out)
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.rename(out / MANIFEST)  # last: a folder without a manifest is no backup
    progress(f"backup complete in {out}: {sum(t['rows'] for t in manifest['tables']):,} rows in "
             f"{len(manifest['tables'])} tables, {len(manifest['files']):,} original files")
    return manifest


def _sha256(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


def _save_originals(settings: Settings, originals: list[dict], out: Path, link: bool,
                    progress: Progress) -> tuple[list[dict], list[str]]:
    saved, missing, last = [], [], time.monotonic()
    for i, row in enumerate(originals, 1):
        sha = row["sha256"]
        src = ingest.stored_path(settings, sha)
        if not src.exists():
            log.warning("original file %s is missing from the file store %s", sha, settings.files_dir)
            missing.append(sha)
            continue
        dst = out / "files" / sha[:2] / sha
        home.make_private_dir(dst.parent, 0o700)
        try:
            if not link:
                raise OSError("copy")
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
            dst.chmod(0o400)
        digest, size = _sha256(dst)
        if digest != sha:
            raise BackupError(f"the stored original {src} does not match its sha256: the file store is damaged")
        saved.append({"sha256": sha, "bytes": size})
        if time.monotonic() - last >= REPORT_EVERY_S or i == len(originals):
            progress(f"backup original files: {i:,} of {len(originals):,}")
            last = time.monotonic()
    if missing:
        progress(f"warning: {len(missing)} original file(s) are missing from {settings.files_dir} "
                 f"(listed in the manifest as missing_files)")
    return saved, missing


def _save_users(settings: Settings, out: Path) -> dict | None:
    """The user file without its cookie-signing key (a secret: whoever has it can forge a
    remember-me cookie); names, roles and bcrypt hashes are kept, so people sign in as before."""
    if not settings.users_file.exists():
        return None
    config = auth.load(settings.users_file)
    config.get("cookie", {}).pop("key", None)
    auth.save(out / "users.yaml", config)
    return _part(out, "users.yaml")


def settings_env(settings: Settings) -> str:
    """The settings that differ from their defaults, as an env file, without the local ones.

    >>> settings_env(Settings(pool_size=9, database_url="postgresql://u:pw@h/db"))
    'STATIONMANAGER_POOL_SIZE=9\\n'
    """
    lines = []
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if f.name not in LOCAL_SETTINGS and value != f.default:
            lines.append(f"{PREFIX}{f.name.upper()}={value}\n")
    return "".join(lines)


def _save_settings(settings: Settings, out: Path) -> dict:
    path = out / "settings.env"
    path.write_text("# StationManager settings of the backed-up installation (no database URL, no secret)\n"
                    + settings_env(settings), encoding="utf-8")
    path.chmod(0o600)
    return _part(out, "settings.env")


def _part(out: Path, name: str) -> dict:
    digest, size = _sha256(out / name)
    return {"file": name, "bytes": size, "sha256": digest}


# --- verifying --------------------------------------------------------------------------


def verify(folder: Path, progress: Progress = _quiet) -> dict[str, Any]:
    """The backup's manifest, once every part and original file matches it; else
    :class:`BackupError` saying what does not."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        _check_parts(folder, manifest, progress)
    except FileNotFoundError:
        raise BackupError(f"{folder} is not a backup (no {MANIFEST}; an interrupted backup has none)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"the backup's {MANIFEST} cannot be read: {exc!r}") from exc
    return manifest


def _check_parts(folder: Path, manifest: dict[str, Any], progress: Progress) -> None:
    if manifest.get("format") != FORMAT:
        raise BackupError(f"the backup in {folder} has format {manifest.get('format')!r}; this StationManager "
                          f"reads format {FORMAT}")
    _check_known(manifest["migrations"], "the backup")
    parts = [*manifest["tables"], *(p for p in (manifest.get("users"), manifest.get("settings")) if p)]
    originals = [{"file": f"files/{f['sha256'][:2]}/{f['sha256']}", **f} for f in manifest["files"]]
    last = time.monotonic()
    for i, part in enumerate([*parts, *originals], 1):
        path = folder / part["file"]
        if ".." in Path(part["file"]).parts or not path.is_file():
            raise BackupError(f"the backup in {folder} is incomplete: {part['file']} is missing")
        if _sha256(path) != (part["sha256"], part["bytes"]):
            raise BackupError(f"the backup in {folder} is damaged: {part['file']} does not match its sha256 "
                              f"in {MANIFEST}; nothing was restored")
        if time.monotonic() - last >= REPORT_EVERY_S:
            progress(f"verify: {i:,} of {len(parts) + len(originals):,} parts checked")
            last = time.monotonic()
    progress(f"verify: the backup's {len(parts) + len(originals):,} parts match its manifest")


# --- loading into an empty database -------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the database ``url`` names when its server has none by that name."""
    if db.probe(url) is None:
        return
    dbname = psycopg.conninfo.conninfo_to_dict(url).get("dbname")
    try:
        with psycopg.connect(db.with_dbname(url, "postgres"), autocommit=True) as conn:
            if dbname and not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                log.info("created database %s", dbname)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot reach or create the database {db.redact(url)}: {db.first_line(exc)}") from exc


def refuse_non_empty(conn: psycopg.Connection, url: str) -> None:
    names = [r["name"] for r in _SQL.fetch_all(conn, "relations")]
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise DatabaseError(
            f"the database {db.redact(url)} is not empty ({shown}): restore and copy only into an empty "
            f"database; create a new one (CREATE DATABASE …) or name another with --to")


def load(url: str, settings: Settings, version: int, tables: list[Table],
         rows_of: Callable[[Table], Iterable[bytes]], progress: Progress) -> int:
    """In one transaction on the empty database ``url``: migrate it up to ``version`` (at the
    best storage level its server offers), then COPY each table's rows in; returns its level.
    A failure leaves the database empty."""
    with db.connect(url, autocommit=True) as conn, db.translate(), conn.transaction():
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.LOCK_KEY,))
        refuse_non_empty(conn, url)
        level = schema.migrate(conn, settings, target=version)["level"]
        progress(f"schema created at migration {version:04d}, storage level {level}: {schema.LEVEL_NAMES[level]}")
        for table in tables:
            have = _columns(conn, table.name)
            if missing := [c for c in table.columns if c not in have]:
                raise BackupError(f"table {table.name} at migration {version:04d} has no column(s) "
                                  f"{', '.join(missing)}: the backup does not match its schema version")
        keys = _SQL.fetch_all(conn, "load_constraints", tables=[t.name for t in tables])
        for fk in keys:
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(fk["table_name"]), sql.Identifier(fk["name"])))
        for table in tables:
            counter = _Counter(table, "load", progress)
            with conn.cursor().copy(table.copy_in()) as copy:
                for chunk in rows_of(table):
                    copy.write(counter.add(chunk))
            counter.check()
        progress(f"checking {len(keys)} foreign keys and constraints")
        for fk in keys:
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(fk["table_name"]), sql.Identifier(fk["name"]), sql.SQL(fk["definition"])))
        for table in tables:
            for seq in _SQL.fetch_all(conn, "sequences", table=table.name):
                conn.execute(sql.SQL("SELECT setval({seq}, coalesce(max({col}), 0) + 1, false) FROM {t}").format(
                    seq=sql.Literal(seq["seq"]), col=sql.Identifier(seq["column_name"]),
                    t=sql.Identifier(table.name)))
    return level


def finish(url: str, settings: Settings, progress: Progress) -> dict[str, Any]:
    """After a load: the newer migrations, the channels' extents and the rollups rebuilt, and
    work in flight when the data was read queued again."""
    result = schema.upgrade(url, settings)
    if result["applied"]:
        progress(f"migrations applied: {', '.join(result['applied'])}")
    from core import extents, jobs, rollups

    with db.connect(url, autocommit=True) as conn, db.translate():
        conn.execute("SET statement_timeout = 0")
        extents.recompute(conn)  # derived: rebuilt, never copied
        span = _SQL.fetch_one(conn, "reading_span")
        if span["first"] is not None:  # rollups are derived: rebuilt, never copied
            progress(f"rebuilding the hourly and daily rollups ({span['first']:%Y-%m-%d} .. {span['last']:%Y-%m-%d})")
            rollups.refresh_rollups(conn, span["first"], span["last"])
        with conn.transaction():
            for fix in ("requeue_importing", "expire_exports", "interrupt_source_runs"):
                conn.execute(_SQL.q(fix))
            queued = [r["id"] for r in _SQL.fetch_all(conn, "queued_files")]
    jobs.queue_imports(url, queued)
    if queued:
        progress(f"{len(queued)} file(s) waiting for import were queued again (a worker imports them)")
    return result


# --- restore and copy ----------------------------------------------------------------------


def _read_part(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def restore(folder: Path, url: str | None = None, settings: Settings | None = None, *,
            progress: Progress = _quiet) -> dict[str, Any]:
    """Restore the backup in ``folder`` into the EMPTY database ``url`` (created when
    missing; default: the configured one) and its original files into this home's file
    store. The backup is verified first: a damaged one changes nothing."""
    settings = settings or get_settings()
    folder = Path(folder)
    manifest = verify(folder, progress)
    url = url or db.database_url(settings)
    ensure_database(url)
    with db.connect(url) as conn, db.translate():
        refuse_non_empty(conn, url)
    for i, f in enumerate(manifest["files"], 1):  # first: the database never names a missing original
        ingest.store_original(settings, folder / "files" / f["sha256"][:2] / f["sha256"], f["sha256"])
    progress(f"{len(manifest['files']):,} original files in {settings.files_dir}")
    tables = [Table(t["name"], t["columns"], [], t["rows"]) for t in manifest["tables"]]
    load(url, settings, manifest["schema_version"], tables, lambda t: _read_part(folder / _file_of(manifest, t)),
         progress)
    result = finish(url, settings, progress)
    users = _restore_users(folder, manifest, settings, progress)
    progress(f"restored into {db.redact(url)} at storage level {result['level']}; the backed-up settings are in "
             f"{folder / 'settings.env'}")
    return {"level": result["level"], "tables": {t.name: t.rows for t in tables},
            "files": len(manifest["files"]), "missing_files": manifest.get("missing_files", []), "users": users}


def _file_of(manifest: dict, table: Table) -> str:
    return next(t["file"] for t in manifest["tables"] if t["name"] == table.name)


def _restore_users(folder: Path, manifest: dict, settings: Settings, progress: Progress) -> str:
    if not manifest.get("users"):
        return "none in the backup"
    if settings.users_file.exists():
        progress(f"kept the existing user file {settings.users_file} (the backup's is {folder / 'users.yaml'})")
        return "kept the existing user file"
    config = yaml.safe_load((folder / "users.yaml").read_text(encoding="utf-8"))
    fresh = auth.load(settings.users_file)  # a new file with a new cookie key
    config["cookie"] = {**config.get("cookie", {}), "key": fresh["cookie"]["key"]}
    auth.save(settings.users_file, config)
    return "restored"


def copy_database(to: str, url: str | None = None, settings: Settings | None = None, *,
                  progress: Progress = _quiet) -> dict[str, Any]:
    """Copy this installation's database into the EMPTY database ``to`` (created when
    missing), at the best storage level that server offers. The original files stay where
    they are (in this home)."""
    settings = settings or get_settings()
    url = url or db.database_url(settings)
    ensure_database(to)
    with db.connect(to) as conn, db.translate():
        refuse_non_empty(conn, to)
    with snapshot(url) as (src, info, tables):
        level = load(to, settings, info["version"], tables, lambda t: _stream(src, t), progress)
    result = finish(to, settings, progress)
    progress(f"copied into {db.redact(to)} at storage level {result['level']}: to use it, set "
             f"STATIONMANAGER_DATABASE_URL to that URL")
    return {"level": result["level"], "from_level": info["storage_level"], "loaded_at_level": level,
            "tables": {t.name: t.rows for t in tables}}
