"""Typed settings, read from ``STATIONMANAGER_*`` environment variables.

Every setting has a default and a help text in one place; ``stationmanager settings``
lists them and a test checks that each one is documented in ``docs/settings.md``.

>>> s = Settings.from_env({"STATIONMANAGER_POOL_SIZE": "7"})
>>> s.pool_size
7
>>> Settings.from_env({}).database_url is None
True
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError

PREFIX = "STATIONMANAGER_"


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """All run-time settings of StationManager (see ``docs/settings.md``)."""

    home: Path = _setting(
        Path(".stationmanager"),
        "Folder for the embedded database, stored original files, exports and the user file "
        "(the demo's: .stationmanager-demo).",
    )
    database_url: str | None = _setting(
        None,
        "PostgreSQL/TimescaleDB connection URL. Unset: an embedded PostgreSQL under HOME/pgdata, "
        "started on demand and shared by every process.",
    )
    pool_size: int = _setting(
        4,
        "Maximum connections in the pool of each worker (the jobs' queries) and of a CLI command.",
    )
    web_pool_size: int = _setting(4, "Maximum connections in the web app's pool (all its sessions share it).")
    api_pool_size: int = _setting(8, "Maximum connections in the HTTP API's pool (all its requests share it).")
    pool_wait_s: float = _setting(
        30.0,
        "Longest a request waits for a free connection of its process's pool when all are busy "
        "(the connection budget is reached) before it fails with a message saying so (seconds).",
    )
    worker_concurrency: int = _setting(
        2, "Jobs one worker runs at once. Each running job holds one pooled connection."
    )
    workers: int = _setting(
        1,
        "Worker processes counted in the connection budget (`stationmanager up` starts one; count "
        "every worker you run against this database, on any machine).",
    )
    admin_connections: int = _setting(
        3,
        "Connections the connection budget keeps free for an administrator and CLI commands "
        "(psql, backups, `stationmanager db status`), on top of the server's superuser reserve.",
    )
    max_parallel_workers_per_gather: int = _setting(
        1,
        "Parallel worker processes one query of StationManager (and of a reader role) may use "
        "(PostgreSQL's max_parallel_workers_per_gather, set per session; 0: no parallel query).",
    )
    reader_connections: int = _setting(
        5, "Default connection limit of a reader role (`stationmanager db reader-role NAME`)."
    )
    reader_statement_timeout_s: float = _setting(
        60.0, "Default statement timeout of a reader role: longer queries are cancelled (seconds)."
    )
    reader_work_mem_mb: int = _setting(
        32, "Default work_mem of a reader role: memory per sort or hash step of its queries (MiB)."
    )
    reader_idle_in_transaction_s: float = _setting(
        300.0,
        "A reader role's session left idle inside a transaction this long is closed, so a forgotten "
        "notebook holds no snapshot or connection (seconds).",
    )
    reader_temp_file_mb: int = _setting(
        1024,
        "Most temporary-file space one query of a reader role may use (MiB; PostgreSQL's "
        "temp_file_limit, which the role cannot change; set only when a superuser creates the role).",
    )
    statement_timeout_s: float = _setting(
        120.0, "Longest a single SQL statement may run before it is cancelled (seconds)."
    )
    max_chart_points: int = _setting(
        5000, "Most points per trace sent to the browser; charts say when they were thinned."
    )
    raw_chart_days: float = _setting(
        7.0, "Charts show raw 10-minute readings when the range is at most this many days."
    )
    max_upload_mb: int = _setting(200, "Largest file accepted by the upload page and the API's POST /files (MiB).")
    max_metadata_bytes: int = _setting(
        10_485_760, "Largest Task 43 metadata document accepted (bytes), from the CLI or the Metadata page."
    )
    max_unpacked_mb: int | None = _setting(
        None,
        "Most MiB one received file may unpack to: every member of its archives, at every nesting "
        "level together, counted as they are written. Beyond it the file is refused and nothing of "
        "it is stored. Unset: 10 × MAX_UPLOAD_MB.",
    )
    max_archive_depth: int = _setting(
        3, "Deepest nesting of archives in a received file (a .zip holding .gz files is 2 levels)."
    )
    max_archive_members: int = _setting(
        20_000, "Most entries the archives of one received file may hold, at every nesting level together."
    )
    storage_level_max: int = _setting(
        2,
        "Highest storage level to use (0 plain PostgreSQL, 1 hypertables, 2 continuous "
        "aggregates and compression). Lower it to force a level for testing.",
    )
    compress_after_days: int = _setting(
        90, "At storage level 2, compress reading chunks older than this many days."
    )
    inbox: Path | None = _setting(
        None,
        "Folder the worker watches for logger files (INBOX/<station>/… routes to that station). "
        "Unset: HOME/inbox.",
    )
    inbox_settle_s: float = _setting(
        3.0, "A file in the inbox is read once it has not changed for this many seconds."
    )
    source_settle_s: float = _setting(
        60.0,
        "A file at a source is fetched once it is this old (remote modification time) and its size "
        "did not change since the previous listing.",
    )
    source_timeout_s: float = _setting(
        60.0, "Default for a source: longest wait for its server on any one step (connect, list, read)."
    )
    source_run_timeout_s: float = _setting(
        3600.0, "Longest a source's run goes on fetching (seconds): past it, the run starts no new file, "
                "stops cleanly and is recorded as a timeout; the files left are fetched by the next run."
    )
    source_max_files: int = _setting(1000, "Default for a source: most files fetched by one run.")
    source_max_mb: int = _setting(2048, "Default for a source: a run starts no new file once it has fetched this many MiB.")
    source_connections: int = _setting(
        2, "Default for a source: most connections to one host at once, over all sources on that host."
    )
    source_retries: int = _setting(
        3, "Attempts at a source's step that failed for a transient reason (timeout, host unreachable)."
    )
    source_retry_wait_s: float = _setting(
        2.0, "Pause before the second attempt at a source's step; doubled for each further attempt."
    )
    import_batch_files: int = _setting(
        50, "Most files one import job takes: consecutive files of a station are imported together "
            "(each in its own transaction), sharing one channel look-up, one rollup refresh and one "
            "quality-check request. 1 imports each file on its own."
    )
    import_batch_mb: int = _setting(
        16, "Most MiB of files one import job takes; a bigger file gets a job of its own."
    )
    job_retries: int = _setting(
        3, "Times a failed job is retried when the failure is transient (database errors)."
    )
    export_retention_days: float = _setting(
        30.0, "Export files older than this many days are deleted by the worker (the history is kept)."
    )
    export_max_rows: int = _setting(
        5_000_000, "Most rows (time steps) one export may have; a longer request is refused."
    )
    readings_batch: int = _setting(
        100_000,
        "Readings read per batch when a tidy readings table is streamed (the API's readings): a "
        "stream holds about two batches, some 100 bytes a reading each; larger batches are a "
        "little faster.",
    )
    explore_memory_mb: int = _setting(
        512, "Memory limit of one Explore query (MiB): DuckDB's memory limit in its sandbox process, "
        "whose address space is capped at this plus 1024 MiB.",
    )
    explore_timeout_s: float = _setting(
        30.0, "Longest one Explore query may run; it is then interrupted (and its process killed 10 s later)."
    )
    explore_max_rows: int = _setting(
        10_000, "Most rows of an Explore result shown, charted and downloaded; the page says when it was cut."
    )
    explore_max_result_mb: int = _setting(
        64, "Most MiB of an Explore result sent back to the web app; the result is cut there."
    )
    explore_max_running: int = _setting(
        2, "Most Explore queries running at once (each in its own sandbox process); others wait for a slot."
    )
    explore_wait_s: float = _setting(
        60.0, "Longest an Explore query waits for a free slot before it is refused (busy)."
    )
    session_idle_minutes: float = _setting(
        60.0,
        "A signed-in session unused (no click, no page opened) for this many minutes is signed "
        "out, its remember-me cookie included.",
    )
    sign_in_max_failures: int = _setting(
        5, "Failed sign-ins in a row after which a user name is locked (known or not)."
    )
    sign_in_lock_minutes: float = _setting(
        15.0,
        "How long a locked user name refuses every password, the right one included. Failed "
        "sign-ins older than this are forgotten.",
    )
    sign_in_delay_max_s: float = _setting(
        8.0,
        "Longest wait before each sign-in attempt from a client address with recent failures "
        "(0.25 s after the first, doubling with each failure).",
    )
    sign_in_wait_s: float = _setting(
        30.0,
        "Longest wait of a sign-in for its turn while other sign-ins of the same user name are "
        "checked (as many at once as failures are left before the lock); then it is refused "
        "with 'try again in a moment', nothing counted.",
    )
    alert_source_failures: int = _setting(
        3, "Failed runs in a row after which a source is alerted as failing (a source may have its own)."
    )
    alert_time_zone: str = _setting(
        "UTC", "Time zone of the times in alert messages and of each subscriber's digest hour."
    )
    alert_send_attempts: int = _setting(
        5, "Attempts at sending one alert message before it is recorded as failed."
    )
    alert_retry_wait_s: float = _setting(
        60.0, "Pause before the second attempt at sending an alert message; doubled for each further attempt."
    )
    alert_send_timeout_s: float = _setting(
        20.0, "Longest wait for a mail server or a webhook on any one step of sending an alert (seconds)."
    )
    api_port: int = _setting(
        8502, "Port of the HTTP API that `stationmanager up` starts (and `stationmanager api` without --port)."
    )
    api_public_url: str | None = _setting(
        None,
        "Where browsers reach the HTTP API (e.g. https://masts.example.com behind a reverse proxy); the "
        "pages' download links point there. Unset: http://127.0.0.1:API_PORT.",
    )
    api_link_minutes: float = _setting(
        5.0, "How long a download link made by the Exports or Files page works (minutes)."
    )
    api_rate_limit_per_minute: int = _setting(
        600,
        "Requests one API token may make per minute (bursts up to this many); beyond it the API answers "
        "429 with Retry-After. Counted by each API process.",
    )
    api_max_body_kb: int = _setting(
        1024, "Largest request body the API accepts (KiB), file uploads excepted (those: MAX_UPLOAD_MB)."
    )
    log_level: str = _setting("INFO", "Logging level of the worker and the CLI.")
    connect_timeout_s: float = _setting(
        5.0,
        "Longest the web app waits for a database connection before its pages say that the database "
        "is not answering (they retry by themselves); also the time limit of each new connection.",
    )
    demo: bool = _setting(
        False,
        "Set by `stationmanager up --demo` for its worker and web app: the demo logins are allowed. "
        "Without it, `up` and the web app refuse a user file that still has a demo login with its "
        "demo password.",
    )
    test_database_url: str | None = _setting(
        None,
        "Tests only: run the test suite against this server instead of an embedded PostgreSQL.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        return cls(**values)

    @property
    def pgdata(self) -> Path:
        return self.home.resolve() / "pgdata"

    @property
    def files_dir(self) -> Path:
        """Where original files are kept, content-addressed by sha256."""
        return self.home.resolve() / "files"

    @property
    def exports_dir(self) -> Path:
        """Where export files are built and kept (see ``export_retention_days``)."""
        return self.home.resolve() / "exports"

    @property
    def max_unpacked_bytes(self) -> int:
        """What one received file may unpack to, in bytes.

        >>> Settings(max_upload_mb=5).max_unpacked_bytes // 2**20, Settings(max_unpacked_mb=7).max_unpacked_bytes // 2**20
        (50, 7)
        """
        mib = self.max_unpacked_mb if self.max_unpacked_mb is not None else 10 * self.max_upload_mb
        return mib * 1024 * 1024

    @property
    def inbox_dir(self) -> Path:
        return (self.inbox or self.home / "inbox").resolve()

    @property
    def secrets_file(self) -> Path:
        """The credentials of sources (TOML, mode 0600; see ``core.credentials``)."""
        return self.home.resolve() / "secrets.toml"

    @property
    def users_file(self) -> Path:
        return self.home.resolve() / "users.yaml"


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _convert(name: str, type_: Any, raw: str) -> Any:
    kind = str(type_)
    if kind == "bool":
        if raw.lower() not in _BOOLS:
            raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} is not one of {', '.join(_BOOLS)}")
        return _BOOLS[raw.lower()]
    try:
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
        if "Path" in kind:
            return Path(raw).expanduser()
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw


def describe() -> list[dict[str, Any]]:
    """Each setting's environment variable, default and help, for docs and the CLI."""
    rows = []
    for f in dataclasses.fields(Settings):
        rows.append(
            {
                "env": PREFIX + f.name.upper(),
                "default": None if f.default is None else str(f.default),
                "help": f.metadata["help"],
            }
        )
    return rows


_current: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def reload() -> Settings:
    """Read the process's settings from the environment again (after a command set one for
    itself and the processes it starts, as ``up --demo`` does with the home)."""
    global _current
    _current = Settings.from_env()
    return _current
