"""Sources: where the files of one or more stations wait, fetched by the worker on schedule.

A source is a folder, an SFTP, FTP/FTPS or HTTP(S) server (a directory listing) or an S3
bucket (:mod:`core.remote`), with include/exclude patterns, an optional station (else its
files are routed like the inbox's: first sub-folder = station, else the logger serial or
station name in the file's header), a schedule, an oldest modification time to consider,
what to do with a fetched file there (keep, move, delete) and limits per run.

A run (:func:`sync`) lists the source, and fetches each new or changed file (by path, size
and modification time) once it has settled: older than ``STATIONMANAGER_SOURCE_SETTLE_S``
and the same size as in the previous listing. It downloads to ``HOME/tmp/<process>/source-<id>``
(never ``/tmp``), moves each whole download to ``HOME/fetched/source-<id>``, then, in ONE
transaction, receives the file (``core.ingest.receive``) and records it as fetched, and deletes
the download. The next files are downloaded (in a thread) while one is received. A run killed
mid-download leaves nothing behind but partial temporary files, which the next worker start
deletes; the next run receives the whole downloads it finds and fetches the rest: no file
twice. Content
already received (same sha256) is not received again. Every run is recorded with its
counts and, when it failed, its error class in plain words. One source runs once at a time
(an advisory lock, and procrastinate's job lock for scheduled runs).

Credentials are never stored: a source names them (:mod:`core.secrets`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import logging
import posixpath
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.types.json import Jsonb

from core import credentials, db, home, inbox, ingest, remote
from core.errors import ConfigError, NotFound, ParseError
from core.remote import RemoteError, RemoteFile
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

_sql = db.SqlFile("sources.sql")
_SOURCE_LOCK = 0x534F5243  # advisory lock key (with the source id): one run of a source at a time
KINDS = tuple(remote.KINDS)
OPTIONS = {"endpoint_url": ("s3",), "region": ("s3",), "ca_file": ("ftps", "https", "s3"), "passive": ("ftp", "ftps")}
EDITABLE = ("name", "kind", "url", "credentials", "station", "include", "exclude", "every_minutes", "since",
            "after_fetch", "move_to", "max_files", "max_bytes", "timeout_s", "connections", "options", "enabled")


# --- definitions ----------------------------------------------------------------------------


def clean_url(kind: str, url: str) -> str:
    """The URL as stored: checked for its kind, never with a password.

    >>> clean_url("sftp", "sftp://met@logger.example:2222/data")
    'sftp://met@logger.example:2222/data'
    >>> clean_url("folder", "~/loggers")
    '~/loggers'
    >>> clean_url("ftp", "ftp://u:secret@h/x")
    Traceback (most recent call last):
    core.errors.ConfigError: the URL holds a password: remove it and put it in the source's credentials (secrets.toml)
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "folder":
        if "://" in url and not url.startswith("file://"):
            raise ConfigError(f"a folder source needs a path, not {url!r}")
        return url
    u = urlsplit(url)
    if u.password is not None:
        raise ConfigError("the URL holds a password: remove it and put it in the source's credentials (secrets.toml)")
    if u.scheme != kind:
        raise ConfigError(f"a {kind} source needs a {kind}:// URL, not {url!r}")
    if not u.hostname:
        raise ConfigError(f"{url!r} names no host" + (" (s3://BUCKET/prefix)" if kind == "s3" else ""))
    return urlunsplit(u)


def _validate(fields: dict[str, Any]) -> dict[str, Any]:
    f = dict(fields)
    f["url"] = clean_url(f["kind"], f["url"])
    f["include"] = list(f.get("include") or ["*"])
    f["exclude"] = list(f.get("exclude") or [])
    f["options"] = dict(f.get("options") or {})
    for key in f["options"]:
        if key not in OPTIONS:
            raise ConfigError(f"unknown option {key!r}: use {', '.join(OPTIONS)}")
        if f["kind"] not in OPTIONS[key]:
            raise ConfigError(f"option {key!r} is for {', '.join(OPTIONS[key])} sources, not {f['kind']}")
    f["after_fetch"] = f.get("after_fetch") or "keep"
    if f["after_fetch"] not in ("keep", "move", "delete"):
        raise ConfigError("after fetch: keep, move or delete")
    if f["after_fetch"] == "move" and not f.get("move_to"):
        raise ConfigError("'move' needs the folder to move fetched files to (--move-to)")
    if f["after_fetch"] != "move":
        f["move_to"] = None
    if f["after_fetch"] != "keep" and not remote.KINDS[f["kind"]].can_move:
        raise ConfigError(f"a {f['kind']} source can only keep its files (the server is read-only)")
    for key in ("every_minutes", "max_files", "max_bytes", "connections", "timeout_s"):
        if f.get(key) is not None and f[key] <= 0:
            raise ConfigError(f"{key.replace('_', ' ')} must be positive")
    f["every_minutes"] = f.get("every_minutes") or 60
    f["enabled"] = True if f.get("enabled") is None else bool(f["enabled"])
    return f


def _params(conn: psycopg.Connection, f: dict[str, Any], actor: str) -> dict[str, Any]:
    station_id = ingest.ensure_station(conn, f["station"], actor)["id"] if f.get("station") else None
    p = {k: f.get(k) for k in EDITABLE if k != "station"}
    p.update(station_id=station_id, options=Jsonb(f["options"]))
    return p


def _public(f: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a definition (no secrets are in it anyway)."""
    return {k: f.get(k) for k in EDITABLE}


def add_source(conn: psycopg.Connection, actor: str, **fields: Any) -> dict:
    """Define a source (audited). ``fields``: see :data:`EDITABLE`."""
    f = _validate(fields)
    if get_source(conn, f["name"], missing_ok=True):
        raise ConfigError(f"a source called {f['name']!r} exists already (stationmanager source edit)")
    row = _sql.fetch_one(conn, "insert_source", **_params(conn, f, actor))
    assert row is not None
    db.audit(conn, actor, "create", "source", row["id"], **_public(f))
    return get_source(conn, f["name"])


def edit_source(conn: psycopg.Connection, name: str, actor: str, /, **changes: Any) -> dict:
    """Change some fields of a source (audited); a new URL must have its host key trusted again."""
    old = get_source(conn, name)
    f = {k: old.get(k) for k in EDITABLE}
    f.update({k: v for k, v in changes.items() if v is not None or k in ("station", "since", "move_to")})
    f = _validate(f)
    conn.execute(_sql.q("update_source"), {"id": old["id"], **_params(conn, f, actor)})
    db.audit(conn, actor, "edit", "source", old["id"], **{k: f[k] for k in changes if k in f})
    return get_source(conn, f["name"])


def remove_source(conn: psycopg.Connection, name: str, actor: str) -> None:
    """Forget a source and its runs (the files it brought stay)."""
    row = _sql.fetch_one(conn, "delete_source", name=name)
    if row is None:
        raise NotFound(f"no source called {name!r}")
    db.audit(conn, actor, "delete", "source", row["id"], name=name)


def get_source(conn: psycopg.Connection, name: str, *, missing_ok: bool = False) -> dict:
    row = _sql.fetch_one(conn, "source_by_name", name=name)
    if row is None and not missing_ok:
        raise NotFound(f"no source called {name!r} (stationmanager source list)")
    return row  # type: ignore[return-value]


def list_sources(conn: psycopg.Connection) -> list[dict]:
    return _sql.fetch_all(conn, "list_sources")


def runs(conn: psycopg.Connection, name: str, limit: int = 20) -> list[dict]:
    """The last ``limit`` runs of a source, newest first, with their duration."""
    return _sql.fetch_all(conn, "runs", source_id=get_source(conn, name)["id"], limit=limit)


def get_run(conn: psycopg.Connection, run_id: int) -> dict | None:
    return _sql.fetch_one(conn, "run_by_id", id=run_id)


def last_run_id(conn: psycopg.Connection, source_id: int) -> int:
    """The id of the source's latest run (0 before its first)."""
    return _sql.fetch_one(conn, "last_run_id", source_id=source_id)["id"]


def finished_run_after(conn: psycopg.Connection, source_id: int, after: int) -> dict | None:
    """The source's first finished run with an id above ``after``, if any."""
    return _sql.fetch_one(conn, "finished_run_after", source_id=source_id, after=after)


def note_offered_key(conn: psycopg.Connection, src: dict, key: str) -> None:
    """Record the host key an SFTP server offered, for an admin to accept (or not)."""
    conn.execute(_sql.q("set_pending_host_key"), {"id": src["id"], "key": key})


def trust_host_key(conn: psycopg.Connection, name: str, actor: str, key: str) -> None:
    """Accept ``key`` as the source's SFTP host key (audited); a stopped source runs again."""
    src = get_source(conn, name)
    conn.execute(_sql.q("trust_host_key"), {"id": src["id"], "key": key})
    db.audit(conn, actor, "trust host key", "source", src["id"], fingerprint=remote.fingerprint(key),
             previous=remote.fingerprint(src["host_key"]) if src["host_key"] else None)


def offered_host_key(src: dict, settings: Settings | None = None) -> str:
    """The host key the source's SFTP server offers now (connects, never logs in)."""
    if src["kind"] != "sftp":
        raise ConfigError(f"{src['name']} is a {src['kind']} source: only SFTP servers have host keys")
    try:
        remote.connect("sftp", src["url"], credentials=None, timeout=_limits(src, settings or get_settings())[2],
                       host_key=None).close()
    except RemoteError as exc:
        if exc.offered_key:
            return exc.offered_key
        raise
    raise RemoteError(remote.OTHER, "the server did not show its host key")  # pragma: no cover


def credentials_of(src: dict, settings: Settings) -> credentials.Credentials | None:
    return credentials.lookup(src["credentials"], settings.secrets_file) if src["credentials"] else None


# --- which files to fetch ------------------------------------------------------------------


def wanted(path: str, include: list[str], exclude: list[str]) -> bool:
    """Is a remote file worth looking at? A pattern with ``/`` matches the whole relative
    path, else the file name; hidden and temporary files never are.

    >>> wanted("Mast A/2025/d.dat", ["*.dat"], []), wanted("a/d.dat", ["*"], ["a/*"]), wanted(".x.dat", ["*"], [])
    (True, False, False)
    >>> wanted("up.dat.part", ["*"], [])
    False
    """
    name = posixpath.basename(path)
    if any(p.startswith(".") for p in path.split("/")) or name.lower().endswith(inbox._TEMP_SUFFIXES):
        return False

    def hit(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in patterns)

    return hit(include) and not hit(exclude)


def settled(f: RemoteFile, previous: dict | None, now: datetime, settle_s: float) -> bool:
    """Has a listed file stopped changing? Old enough, and the same size and time as in the
    previous listing (a file seen for the first time needs only to be old enough; one
    without a modification time needs two listings of the same size).

    >>> t = datetime(2025, 1, 1, tzinfo=UTC)
    >>> settled(RemoteFile("a", 5, t), None, t + timedelta(minutes=5), 60)
    True
    >>> settled(RemoteFile("a", 9, t), {"listed_size": 5, "listed_mtime": t}, t + timedelta(hours=1), 60)
    False
    >>> settled(RemoteFile("a", 5, t), None, t + timedelta(seconds=5), 60)
    False
    """
    if f.mtime is None:
        return previous is not None and previous["listed_size"] == f.size
    if (now - f.mtime).total_seconds() < settle_s:
        return False
    return previous is None or previous["listed_size"] is None or (
        previous["listed_size"] == f.size and previous["listed_mtime"] == f.mtime)


def check_archive(path: Path) -> None:
    """Raise ``bad archive`` when a fetched archive cannot be read to its end (it may
    still be uploading at the source, or be damaged there)."""
    from core import archives

    if not archives.is_archive(path):
        return
    try:
        archives.check_whole(path)
    except ParseError as exc:
        raise RemoteError(remote.BAD_ARCHIVE, f"{remote.BAD_ARCHIVE}: {path.name} cannot be read to its end "
                          f"({exc.reason}); it is fetched again next run") from exc


def archive_passwords(conn: psycopg.Connection, source_file_id: int, settings: Settings) -> list[str]:
    """The ``archive_password`` of the credentials of the sources a received file came from."""
    found = []
    for row in _sql.fetch_all(conn, "archive_credentials", source_file_id=source_file_id):
        try:
            password = credentials.lookup(row["credentials"], settings.secrets_file).archive_password
        except ConfigError as exc:
            raise ParseError(f"the archive is encrypted and the credentials of source {row['source']} "
                             f"cannot be read: {exc}") from exc
        if password and password not in found:
            found.append(password)
    return found


# --- a run ---------------------------------------------------------------------------------


#: How many files a run downloads ahead of the one it receives (:class:`_Ahead`).
AHEAD_FILES = 4
#: The failures of one file that do not stop a run (the next file is fetched).
_FILE_FAILURES = (remote.NOT_FOUND, remote.PERMISSION, remote.BAD_ARCHIVE, remote.OTHER)

#: A run hands the files it received over for import (the worker queues their import jobs) at
#: least this often (seconds), or whenever STATIONMANAGER_IMPORT_BATCH_FILES are waiting.
HAND_OVER_S = 1.0


@dataclass
class _Run:
    n_listed: int = 0
    n_new: int = 0
    n_waiting: int = 0
    n_fetched: int = 0
    n_failed: int = 0
    bytes: int = 0
    error_class: str | None = None
    error: str | None = None
    file_ids: list[int] = field(default_factory=list)
    n_queued: int = 0  # of file_ids, handed to ``on_received`` already
    queued_at: float = field(default_factory=time.monotonic)

    def hand_over(self, on_received: Callable[[list[int]], None] | None, batch: int) -> None:
        """Hand the files received since the last call to ``on_received`` (which queues their
        import) once there are ``batch`` of them or :data:`HAND_OVER_S` seconds have passed:
        imports start while the run goes on."""
        todo = self.file_ids[self.n_queued:]
        if on_received is None or not todo or (len(todo) < batch and time.monotonic() - self.queued_at < HAND_OVER_S):
            return
        try:
            on_received(todo)
        except Exception as exc:  # they are queued with the rest when the run ends
            log.warning("could not queue the import of %s file(s) yet: %s", len(todo), exc)
            return
        self.n_queued += len(todo)
        self.queued_at = time.monotonic()

    def fail(self, exc: BaseException, secret_values: list[str], source: str) -> None:
        if self.error_class is None:
            self.error_class = remote.classify(exc)
            self.error = credentials.redact(remote.describe(exc, source), secret_values)


def _limits(src: dict, settings: Settings) -> tuple[int, int, float, int]:
    return (src["max_files"] or settings.source_max_files, src["max_bytes"] or settings.source_max_mb << 20,
            src["timeout_s"] or settings.source_timeout_s, src["connections"] or settings.source_connections)


class _Session:
    """A connection to the source, reopened (after a pause that doubles) when a step fails
    for a transient reason; at most ``source_retries`` attempts per step."""

    def __init__(self, opener: Callable[[], remote.Remote], settings: Settings) -> None:
        self.opener = opener
        self.settings = settings
        self.remote: remote.Remote | None = None

    def call(self, step: Callable[[remote.Remote], Any]) -> Any:
        attempts = max(1, self.settings.source_retries)
        for attempt in range(1, attempts + 1):
            try:
                if self.remote is None:
                    self.remote = self.opener()
                return step(self.remote)
            except Exception as exc:
                if remote.classify(exc) not in remote.TRANSIENT or attempt == attempts:
                    raise
                log.info("source step failed (%s), attempt %s of %s", remote.classify(exc), attempt, attempts)
                self.close()
                time.sleep(self.settings.source_retry_wait_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self.remote is not None:
            try:
                self.remote.close()
            except Exception as exc:  # the connection is gone anyway
                log.debug("closing a source connection: %s", exc)
            self.remote = None


def kept_dir(src: dict, settings: Settings) -> Path:
    """Where a source's whole downloads wait until they are received: outside the process's
    temporary folder, so that a run killed after a download ended leaves it for the next."""
    return settings.home.resolve() / "fetched" / f"source-{src['id']}"


def _kept(folder: Path, f: RemoteFile) -> Path:
    """The name of ``f``'s whole download in ``folder`` (by path, size and modification time)."""
    key = hashlib.sha256(f"{f.path}\0{f.size}\0{f.mtime.isoformat() if f.mtime else ''}".encode()).hexdigest()
    return folder / f"{key[:32]}-{posixpath.basename(f.path)}"


def _download(session: _Session, f: RemoteFile, partial: Path, kept: Path) -> Path:
    """``f`` downloaded whole to ``kept`` (through ``partial``, in the process's temporary
    folder), unless a run before downloaded it whole already."""
    if not kept.exists():
        session.call(lambda r: r.download(f.path, partial, f.size))
        os.replace(partial, kept)
    return kept


def _forget_other_downloads(folder: Path, todo: list[RemoteFile]) -> None:
    """Delete the whole downloads left by earlier runs that this run will not use (the file
    changed at the source since, or is gone)."""
    if not folder.is_dir():
        return
    wanted = {_kept(folder, f).name for f in todo}
    for p in folder.iterdir():
        if p.name not in wanted:
            p.unlink(missing_ok=True)


class _Ahead:
    """Downloads a run's next files in a thread, in order, up to :data:`AHEAD_FILES` ahead of the
    one being received: the network works while the database does. Only for files the run
    fetches whatever happens (:func:`_certain`) of a source that keeps its files (a move or a
    delete uses the connection between two downloads). A file is received only once it is
    whole, and a whole download waits in :func:`kept_dir` until it is: a run killed while it
    downloads leaves nothing half-received, and the next fetches no file twice."""

    def __init__(self, session: _Session, files: list[RemoteFile], tmp: Path, kept: Path) -> None:
        self.session, self.files, self.tmp, self.kept = session, files, tmp, kept
        self.ready: queue.Queue = queue.Queue(maxsize=AHEAD_FILES)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._download, name="sm-source-fetch", daemon=True)
        self.thread.start()

    def target(self, k: int) -> Path:
        return _kept(self.kept, self.files[k])

    def _download(self) -> None:
        for k, f in enumerate(self.files):
            if self.stopped.is_set():
                return
            try:
                _download(self.session, f, self.tmp / f"{k}-{posixpath.basename(f.path)}", self.target(k))
                item: tuple[int, BaseException | None] = (k, None)
            except Exception as exc:  # raised where the file is taken
                item = (k, exc)
            while not self.stopped.is_set():
                try:
                    self.ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[1] is not None and remote.classify(item[1]) not in _FILE_FAILURES:
                return  # the connection, the disk or the login failed: the run stops there

    def take(self, k: int) -> Path:
        """File ``k``, downloaded (or its download's error raised)."""
        while True:
            try:
                got, exc = self.ready.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.ready.empty():
                    raise RemoteError(remote.OTHER, "the download thread stopped") from None
        assert got == k, (got, k)
        if exc is not None:
            raise exc
        return self.target(k)

    def stop(self) -> None:
        """Stop downloading (a download under way is cut by closing the connection)."""
        self.stopped.set()
        if self.thread.is_alive():
            self.session.close()
        self.thread.join()


def _certain(todo: list[RemoteFile], max_files: int, max_bytes: int) -> int:
    """How many of the first files of ``todo`` a run fetches whatever happens: within the
    run's limits even if each is as large as listed and none fails (a failed file leaves room
    for more, which the run then fetches one at a time).

    >>> t = datetime(2025, 1, 1, tzinfo=UTC)
    >>> _certain([RemoteFile("a", 5, t), RemoteFile("b", 5, t), RemoteFile("c", 5, t)], 9, 10)
    2
    >>> _certain([RemoteFile("a", 5, t), RemoteFile("b", None, t), RemoteFile("c", 5, t)], 9, 99)
    1
    """
    size = 0
    for k, f in enumerate(todo):
        if k >= max_files or size >= max_bytes or f.size is None:
            return k
        size += f.size
    return len(todo)


def _host_slot(conn: psycopg.Connection, src: dict, limit: int, timeout: float) -> int | None:
    """Take one of the ``limit`` connection slots of the source's host (advisory locks shared
    by every process); waits up to ``timeout`` seconds. None for a folder."""
    host = urlsplit(src["url"]).hostname if src["kind"] != "folder" else None
    if not host:
        return None
    deadline = time.monotonic() + timeout
    while True:
        for slot in range(limit):
            if conn.execute("SELECT pg_try_advisory_lock(hashtext(%s), %s) AS ok",
                            (f"sm-source-host:{host}", slot)).fetchone()["ok"]:
                return slot
        if time.monotonic() > deadline:
            raise RemoteError(remote.TIMEOUT, f"{remote.TIMEOUT}: all {limit} connections to {host} stayed busy "
                              f"for {timeout:g} s")
        time.sleep(0.5)


def sync(source: int | str, *, trigger: str = "schedule", settings: Settings | None = None,
         now: datetime | None = None, url: str | None = None,
         on_received: Callable[[list[int]], None] | None = None) -> dict:
    """Run a source once: fetch its new, settled files and receive them. Returns the run's
    row with ``queue``: the ids of the files to import (also files an earlier run received
    but could not queue). ``{"status": "busy"}`` when the source is running already.

    With ``on_received`` (the worker's sync job), the files received are handed to it during
    the run, a batch at a time (``STATIONMANAGER_IMPORT_BATCH_FILES``, or what came in a
    second), so that their imports start while the run goes on; ``queue`` then holds the
    rest."""
    settings = settings or get_settings()
    with db.connection(url) as conn:
        conn.autocommit = True
        try:
            return _sync_locked(conn, source, trigger, settings, now, on_received)
        finally:
            conn.autocommit = False


def _sync_locked(conn: psycopg.Connection, source: int | str, trigger: str, settings: Settings,
                 now: datetime | None, on_received: Callable[[list[int]], None] | None = None) -> dict:
    src = (_sql.fetch_one(conn, "source_by_id", id=source) if isinstance(source, int)
           else get_source(conn, source))
    if src is None:  # removed since its run was queued
        log.info("source %s no longer exists; nothing to run", source)
        return {"status": "gone", "queue": []}
    if not conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS ok", (_SOURCE_LOCK, src["id"])).fetchone()["ok"]:
        log.info("source %s is running already", src["name"])
        return {"status": "busy", "queue": []}
    try:
        orphans = [r["id"] for r in _sql.fetch_all(conn, "files_without_import_job", source_id=src["id"])]
        run_id = _sql.fetch_one(conn, "start_run", source_id=src["id"], trigger=trigger)["id"]
        run = _Run()
        # this process's own folder under HOME/tmp: what a killed run left half-downloaded
        # lies in that run's folder, which the next worker start sweeps (core.home)
        tmp = home.process_tmp(settings) / f"source-{src['id']}"
        shutil.rmtree(tmp, ignore_errors=True)
        secret_values: list[str] = []
        try:
            creds = credentials_of(src, settings)
            secret_values = creds.secrets() if creds else []
            if src["blocked"]:
                cls = remote.HOST_KEY_CHANGED if remote.HOST_KEY_CHANGED in src["blocked"] else remote.CONFIG
                raise RemoteError(cls, f"{src['blocked']}; the source is stopped until an admin acts")
            tmp.mkdir(parents=True, exist_ok=True)
            _fetch_all(conn, src, creds, run, tmp, settings, now or datetime.now(UTC), secret_values, on_received)
        except Exception as exc:
            run.fail(exc, secret_values, src["name"])
            if isinstance(exc, RemoteError) and exc.offered_key:
                _record_host_key(conn, src, exc)
            log.warning("source %s: %s", src["name"], run.error, extra={"source": src["name"]})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        status = "failed" if run.error_class and run.n_fetched == 0 and run.n_failed == 0 else (
            "partial" if run.error_class or run.n_failed else "ok")
        row = _sql.fetch_one(conn, "finish_run", id=run_id, status=status, **{
            k: getattr(run, k) for k in ("n_listed", "n_new", "n_waiting", "n_fetched", "n_failed", "bytes",
                                         "error_class", "error", "file_ids")})
        log.info("source %s: %s, %s listed, %s fetched, %s waiting, %s failed", src["name"], status,
                 run.n_listed, run.n_fetched, run.n_waiting, run.n_failed)
        return {**row, "source": src["name"], "queue": orphans + run.file_ids[run.n_queued:]}
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_SOURCE_LOCK, src["id"]))


def _record_host_key(conn: psycopg.Connection, src: dict, exc: RemoteError) -> None:
    if exc.error_class == remote.HOST_KEY_CHANGED:
        conn.execute(_sql.q("block_source"), {"id": src["id"], "key": exc.offered_key,
                                             "reason": f"{remote.HOST_KEY_CHANGED}: "
                                                       f"{remote.fingerprint(exc.offered_key or '')}"})
    else:
        note_offered_key(conn, src, exc.offered_key or "")


def _fetch_all(conn: psycopg.Connection, src: dict, creds: credentials.Credentials | None, run: _Run, tmp: Path,
               settings: Settings, now: datetime, secret_values: list[str],
               on_received: Callable[[list[int]], None] | None = None) -> None:
    started = time.monotonic()
    max_files, max_bytes, timeout, connections = _limits(src, settings)
    slot = _host_slot(conn, src, connections, timeout)
    session = _Session(lambda: remote.connect(src["kind"], src["url"], credentials=creds, timeout=timeout,
                                              options=src["options"], host_key=src["host_key"]), settings)
    try:
        listing = session.call(lambda r: r.list())
        run.n_listed = len(listing)
        todo = _choose(conn, src, listing, run, now, settings)
        station = src["station"]
        deadline = started + settings.source_run_timeout_s
        kept = home.make_private_dir(kept_dir(src, settings), 0o700)
        _forget_other_downloads(kept, todo)
        certain = _certain(todo, max_files, max_bytes) if src["after_fetch"] == "keep" else 0
        ahead: _Ahead | None = None
        try:
            for k, f in enumerate(todo):
                if time.monotonic() > deadline:  # stop cleanly: nothing is half-received
                    run.n_waiting += len(todo) - k
                    raise RemoteError(remote.TIMEOUT, f"{remote.TIMEOUT}: the run went on longer than "
                                      f"{settings.source_run_timeout_s:g} s (STATIONMANAGER_SOURCE_RUN_TIMEOUT_S); "
                                      f"{len(todo) - k} file(s) left for the next run")
                if run.n_fetched >= max_files or run.bytes >= max_bytes:
                    run.n_waiting += 1  # over this run's limits: next run
                    continue
                if ahead is None and k < certain:
                    ahead = _Ahead(session, todo[:certain], tmp, kept)
                try:
                    _fetch_one(conn, src, session, f, station, run, settings,
                               ahead.take(k) if ahead is not None and k < certain else
                               _download(session, f, tmp / f"{k}-{posixpath.basename(f.path)}", _kept(kept, f)))
                except Exception as exc:
                    if remote.classify(exc) not in _FILE_FAILURES:
                        raise  # the connection, the disk or the login failed: stop this run
                    run.n_failed += 1
                    run.fail(exc, secret_values, src["name"])
                    log.warning("source %s: %s: %s", src["name"], f.path, run.error)
                run.hand_over(on_received, settings.import_batch_files)
        finally:
            if ahead is not None:
                ahead.stop()
    finally:
        session.close()
        if slot is not None:
            host = urlsplit(src["url"]).hostname
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s), %s)", (f"sm-source-host:{host}", slot))


def _choose(conn: psycopg.Connection, src: dict, listing: list[RemoteFile], run: _Run, now: datetime,
            settings: Settings) -> list[RemoteFile]:
    """The listed files to fetch now, oldest first; the listing of the files the source
    considers (its patterns, its oldest time) is remembered for the next run."""
    previous = {r["path"]: r for r in _sql.fetch_all(conn, "remote_files", source_id=src["id"])}
    moved = (src["move_to"] or "").strip("/") + "/"
    todo, considered = [], []
    for f in listing:
        if not wanted(f.path, src["include"], src["exclude"]) or (src["move_to"] and f.path.startswith(moved)):
            continue
        if src["since"] and f.mtime and f.mtime < src["since"]:
            continue
        considered.append(f)
        p = previous.get(f.path)
        if p and p["fetched_size"] == f.size and p["fetched_mtime"] == f.mtime and p["fetched_at"]:
            continue  # fetched already, unchanged
        run.n_new += 1
        if settled(f, p, now, settings.source_settle_s):
            todo.append(f)
        else:
            run.n_waiting += 1
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_sql.q("mark_listed"), [
            {"source_id": src["id"], "path": f.path, "size": f.size, "mtime": f.mtime} for f in considered])
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(todo, key=lambda f: (f.mtime or epoch, f.path))


def _fetch_one(conn: psycopg.Connection, src: dict, session: _Session, f: RemoteFile, station: str | None,
               run: _Run, settings: Settings, target: Path) -> None:
    """Receive ``f``, downloaded whole to ``target`` (deleted once received)."""
    size = target.stat().st_size
    if f.size is not None and size != f.size:
        run.n_waiting += 1  # it changed while it was being fetched: next run
        target.unlink()
        return
    try:
        check_archive(target)
    except RemoteError:
        target.unlink()  # fetched again next run
        raise
    digest = ingest.sha256_of(target)
    with conn.transaction():
        if src["after_fetch"] == "keep":
            # visible at once, on disk within moments (the run's end, or the import jobs queued
            # for it, wait for it); a file moved or deleted at the source waits for the disk
            conn.execute("SET LOCAL synchronous_commit = off")
        live = db.fetch_one(conn, "live_file_by_sha", sha256=digest)
        if live:
            file_id = live["id"]  # same content as a file received before: not again
        else:
            rec = ingest.receive(
                conn, target, station=station or inbox.station_for(PurePosixPath("/"), PurePosixPath("/", f.path)),
                origin="source", actor=f"source {src['name']}", original_name=f.path, settings=settings)
            file_id = rec.id
            run.file_ids.append(rec.id)
        conn.execute(_sql.q("mark_fetched"), {"source_id": src["id"], "path": f.path, "size": f.size,
                                               "mtime": f.mtime, "sha256": digest, "source_file_id": file_id})
    target.unlink()
    run.n_fetched += 1
    run.bytes += size
    log.info("source %s: fetched %s (%s bytes)", src["name"], f.path, size, extra={"file": f.path, "file_id": file_id})
    try:
        if src["after_fetch"] == "move":
            session.call(lambda r: r.move(f.path, src["move_to"].strip("/")))
        elif src["after_fetch"] == "delete":
            session.call(lambda r: r.delete(f.path))
    except Exception as exc:  # fetched and received all the same: the run says what failed
        run.fail(exc, [], src["name"])
        log.warning("source %s: %s stays at the source: %s", src["name"], f.path, run.error)


def claim_due(conn: psycopg.Connection, now: datetime | None = None) -> list[dict]:
    """The enabled sources whose interval has passed, marked queued (the caller commits and
    queues one sync job per source)."""
    return _sql.fetch_all(conn, "claim_due_sources", now=now or datetime.now(UTC))


def check_source(src: dict, settings: Settings | None = None) -> dict:
    """Connect and list, nothing else: ``{"ok", "files", "error_class", "error"}``."""
    settings = settings or get_settings()
    creds = None
    try:
        creds = credentials_of(src, settings)
        with remote.connect(src["kind"], src["url"], credentials=creds, timeout=_limits(src, settings)[2],
                            options=src["options"], host_key=src["host_key"]) as r:
            listing = r.list()
    except Exception as exc:
        return {"ok": False, "files": None, "error_class": remote.classify(exc),
                "error": credentials.redact(remote.describe(exc, src["name"]), creds.secrets() if creds else []),
                "offered_key": getattr(exc, "offered_key", None)}
    n = sum(1 for f in listing if wanted(f.path, src["include"], src["exclude"]))
    return {"ok": True, "files": n, "listed": len(listing), "error_class": None, "error": None}


def keep_offered_key(conn: psycopg.Connection, src: dict, result: dict) -> dict:
    """Keep the SFTP host key a :func:`check_source` was offered for an admin to accept;
    returns ``result`` without it."""
    key = result.pop("offered_key", None)
    if key and result["error_class"] in (remote.HOST_KEY_UNKNOWN, remote.HOST_KEY_CHANGED):
        with conn.transaction():
            note_offered_key(conn, src, key)
    return result


def check_for(source_id: int, actor: str, job_id: int, settings: Settings | None = None) -> dict:
    """The worker's test of a source (:func:`check_source`; no database connection is held
    meanwhile), its result recorded in the audit log (action ``test``, with ``job_id``),
    where the Sources page reads it."""
    with db.connection() as conn:
        src = _sql.fetch_one(conn, "source_by_id", id=source_id)
    if src is None:
        result = {"ok": False, "files": None, "error_class": remote.CONFIG,
                  "error": "the source was removed before its test ran"}
    else:
        result = check_source(src, settings)
    with db.connection() as conn:
        if src is not None:
            keep_offered_key(conn, src, result)
        with conn.transaction():
            db.audit(conn, actor, "test", "source", source_id, job_id=job_id, **result)
    return result


def check_result(conn: psycopg.Connection, source_id: int, job_id: int) -> dict | None:
    """What :func:`check_for` recorded for job ``job_id``; None while the job waits or runs.
    A job that ended without a result (its worker was stopped, it was cancelled) is a failed
    test that says so."""
    row = _sql.fetch_one(conn, "test_result", source_id=source_id, job_id=job_id)
    if row["result"] is not None:
        return row["result"]
    if row["job_status"] in ("todo", "doing"):
        return None
    return {"ok": False, "files": None, "error_class": "interrupted",
            "error": f"the test's job {job_id} ended ({row['job_status'] or 'gone'}) without a result; test again"}


def public_row(row: dict) -> dict:
    """A source as shown by the CLI (and later the app): no secrets exist in it to hide."""
    out = {k: row.get(k) for k in ("id", "name", "kind", "url", "credentials", "station", "include", "exclude",
                                   "every_minutes", "since", "after_fetch", "move_to", "max_files", "max_bytes",
                                   "timeout_s", "connections", "options", "enabled", "blocked")}
    out["host_key"] = remote.fingerprint(row["host_key"]) if row.get("host_key") else None
    out["pending_host_key"] = remote.fingerprint(row["pending_host_key"]) if row.get("pending_host_key") else None
    for k in ("last_status", "last_run_at", "last_error_class", "last_error"):
        if k in row:
            out[k] = row[k]
    return json.loads(json.dumps(out, default=str))
