"""Job definitions, on a PostgreSQL-backed queue (procrastinate).

procrastinate was chosen over a home-made queue: it is well kept, uses psycopg 3, claims
jobs with ``FOR UPDATE SKIP LOCKED``, retries, locks and shuts workers down cleanly on
SIGTERM/SIGINT, and keeps the queue in the same database (one thing to run and back up).

The tasks are thin: each calls one function of ``core`` that can be tested directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import procrastinate
import psycopg

from core import db, inbox, ingest, qc_runner, rollups
from core.errors import DatabaseUnavailable, StationManagerError
from core.settings import get_settings

log = logging.getLogger(__name__)

_INBOX_LOCK = 0x494E4258  # advisory lock key: one inbox scanner at a time



class _TaskList:
    """The task definitions, with procrastinate's ``task``/``periodic`` decorators.

    Each :func:`make_app` registers them on a new :class:`procrastinate.Blueprint`:
    procrastinate renames a blueprint's tasks in place when an app takes them, so one
    blueprint can serve only one app, and a process may make several (tests, a CLI that
    queues a job and then builds it itself).
    """

    def __init__(self) -> None:
        self.specs: list[list] = []  # [function, task options, periodic options or None]

    def task(self, **options):
        def register(func):
            self.specs.append([func, options, None])
            return func
        return register

    def periodic(self, **options):
        def register(func):
            next(spec for spec in self.specs if spec[0] is func)[2] = options
            return func
        return register

    def blueprint(self) -> procrastinate.Blueprint:
        bp = procrastinate.Blueprint()
        for func, options, periodic in self.specs:
            task = bp.task(**options)(func)
            if periodic is not None:
                bp.periodic(**periodic)(task)
        return bp


blueprint = _TaskList()

#: Transient failures worth retrying; parse errors are final and never raised here.
TRANSIENT = {
    psycopg.OperationalError,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    DatabaseUnavailable,
}


def _retry() -> procrastinate.RetryStrategy:
    return procrastinate.RetryStrategy(
        max_attempts=get_settings().job_retries, wait=2, exponential_wait=2, retry_exceptions=TRANSIENT
    )


@blueprint.task(name="import_file", queue="imports", retry=_retry(), pass_context=True)
def import_file(context: procrastinate.JobContext, source_file_id: int | None = None,
                source_file_ids: list[int] | None = None) -> None:
    """Import received files (``source_file_ids``, consecutive files of a station that
    :func:`_defer_imports` grouped; ``source_file_id`` in jobs queued by older versions),
    each in its own transaction, then refresh their rollups once and queue their stations'
    quality checks once (:class:`core.ingest.Batch`).

    Whatever ends the job (a parse error is recorded by the import itself), the file being
    imported does not stay ``importing``: it becomes ``failed`` with the reason, or
    ``queued`` again when the queue retries the job. A retried job skips the files it
    imported already (each committed on its own), so none is imported twice or lost.
    """
    job = context.job
    ids = list(source_file_ids or []) + ([source_file_id] if source_file_id is not None else [])
    log.info("job %s: import file(s) %s", job.id, ", ".join(map(str, ids)), extra={"job_id": job.id})
    with ingest.Batch() as batch:
        for i, file_id in enumerate(ids):
            try:
                row = batch.import_file(file_id)
            except BaseException as exc:  # also KeyboardInterrupt/cancellation: re-raised below
                retrying = isinstance(exc, Exception) and context.task.get_retry_exception(exc, job) is not None
                _import_failed(context.app, job, file_id, ids[i + 1:], _reason(exc, job, retrying), retrying)
                _checks(context.app, batch.imported)  # of the files imported before it
                raise
            _defer_imports(context.app, row["queue"])  # members of an archive
    _checks(context.app, batch.imported)


def _import_failed(app: procrastinate.App, job, file_id: int, rest: list[int], reason: str, retrying: bool) -> None:
    """Record that the import of ``file_id`` ended in ``reason``; when the job is not retried,
    the files after it in the batch, never tried, get a job of their own."""
    try:
        ingest.import_ended(file_id, reason, retrying=retrying)
        if rest and not retrying:
            _defer_imports(app, rest)
    except Exception:  # the database is gone too: the stalled-job check settles it later
        log.exception("job %s: could not record the end of file %s", job.id, file_id)


def _checks(app: procrastinate.App, imported: list[dict]) -> None:
    """Queue the quality checks of the stations whose files were imported: their ranges
    recorded (joined where they touch), and one ``run_qc`` job per station."""
    ranges: dict[int, list[tuple[datetime, datetime]]] = {}
    for row in imported:
        if row["n_readings"] and row["station_id"] is not None:
            # the file's readings lie in [first_time, last_time]
            ranges.setdefault(row["station_id"], []).append(
                (row["first_time"], row["last_time"] + timedelta(microseconds=1)))
    if not ranges:
        return
    with db.connection() as conn, conn.transaction():
        for station_id, spans in ranges.items():
            for start, end in qc_runner.merge_ranges(spans):
                qc_runner.request_checks(conn, station_id, start, end)
    for station_id, spans in ranges.items():
        defer_qc(app, station_id, min(a for a, _ in spans), max(b for _, b in spans))


def _reason(exc: BaseException, job: procrastinate.jobs.Job, retrying: bool) -> str:
    """What the Files page says about a file whose import job ended in ``exc``."""
    what = db.first_line(exc) if isinstance(exc, Exception) else "the worker was stopped"
    attempt = (job.attempts or 0) + 1
    if retrying:
        return f"attempt {attempt} failed, will be retried: {what}"
    return f"import failed (job {job.id}, attempt {attempt}): {what}"


def _defer_imports(app: procrastinate.App, ids: Iterable[int], url: str | None = None) -> None:
    """Queue the import of files ``ids`` in one statement (a first sync queues thousands):
    consecutive small files of a station together, up to STATIONMANAGER_IMPORT_BATCH_FILES
    files and STATIONMANAGER_IMPORT_BATCH_MB per job (:func:`import_batches`); a lone file
    gets its job at once, as ever."""
    ids = list(ids)
    if not ids:
        return
    settings = get_settings()
    with db.connection(url) as conn:
        rows = db.fetch_all(conn, "files_to_batch", ids=ids)
    groups = import_batches(rows, settings.import_batch_files, settings.import_batch_mb << 20)
    app.configure_task("sm:import_file").batch_defer(*({"source_file_ids": g} for g in groups))


def import_batches(rows: list[dict], max_files: int, max_bytes: int) -> list[list[int]]:
    """File ids grouped for import jobs: the files of one station (``station_id``, None for
    files routed by their header) in the order given, cut when a group would pass
    ``max_files`` files or ``max_bytes`` bytes (a bigger file is a group of its own).

    >>> rows = [{"id": i, "station_id": i % 2, "size_bytes": 10} for i in range(1, 8)]
    >>> import_batches(rows, 2, 100)
    [[1, 3], [5, 7], [2, 4], [6]]
    >>> import_batches([{"id": 1, "station_id": 1, "size_bytes": 500}, {"id": 2, "station_id": 1, "size_bytes": 5}], 9, 100)
    [[1], [2]]
    """
    by_station: dict[int | None, list[dict]] = {}
    for r in rows:
        by_station.setdefault(r["station_id"], []).append(r)
    groups: list[list[int]] = []
    for files in by_station.values():
        size = 0
        current: list[int] = []
        for r in files:
            if current and (len(current) >= max_files or size + r["size_bytes"] > max_bytes):
                groups.append(current)
                current, size = [], 0
            current.append(r["id"])
            size += r["size_bytes"]
        groups.append(current)
    return groups


#: Priority of quality-check jobs: below imports (0), so that a worker busy with a first sync
#: imports its files first and checks them once, not between every batch.
QC_PRIORITY = -1


def defer_qc(app: procrastinate.App, station_id: int, start: datetime, end: datetime) -> None:
    """Queue the station's quality checks, unless a run of them is queued already (it will
    take this range too: see :func:`core.qc_runner.run_requested`)."""
    lock = f"qc-station-{station_id}"
    try:
        app.configure_task("sm:run_qc", lock=lock, queueing_lock=lock, priority=QC_PRIORITY).defer(
            station_id=station_id, start=start.isoformat(), end=end.isoformat())
    except procrastinate.exceptions.AlreadyEnqueued:
        log.debug("quality checks of station %s are queued already", station_id)


@blueprint.task(name="run_qc", queue="qc", retry=_retry(), pass_context=True)
def run_qc(context: procrastinate.JobContext, station_id: int, start: str | None = None,
           end: str | None = None) -> None:
    """Run the quality checks over every range of the station waiting for them (the imported
    files' ranges, and ``[start, end)``) and store the suggested flags."""
    job = context.job
    extra = (datetime.fromisoformat(start), datetime.fromisoformat(end)) if start and end else None
    ranges = qc_runner.run_requested(station_id, extra)
    log.info("job %s: quality checks of station %s over %s", job.id, station_id,
             ", ".join(f"{a:%Y-%m-%d %H:%M} .. {b:%Y-%m-%d %H:%M}" for a, b in ranges) or "nothing",
             extra={"job_id": job.id})


@blueprint.periodic(cron="* * * * * */5")
@blueprint.task(name="scan_inbox", queue="inbox", queueing_lock="scan_inbox", pass_context=True)
def scan_inbox(context: procrastinate.JobContext, timestamp: int) -> None:
    """Receive settled new files from the inbox folder and queue their import."""
    settings = get_settings()
    with db.connection() as conn:
        # one scanner at a time, whatever the number of workers
        if not conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (_INBOX_LOCK,)).fetchone()["ok"]:
            return
        ids = inbox.scan(conn, settings)
        conn.commit()
    _defer_imports(context.app, ids)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="sync_due_sources", queue="maintenance", queueing_lock="sync_due_sources", pass_context=True)
def sync_due_sources(context: procrastinate.JobContext, timestamp: int) -> None:
    """Queue one sync job per source whose interval has passed (each runs on its own: a slow
    or failing source does not hold up the others)."""
    from core import sources

    with db.connection() as conn:
        due = sources.claim_due(conn)
        conn.commit()
    for row in due:
        defer_sync(context.app, row["id"])


def defer_sync(app: procrastinate.App, source_id: int, trigger: str = "schedule") -> bool:
    """Queue a run of a source unless one is queued already; a queued run waits for a running
    one of the same source (procrastinate's lock). Returns whether a job was queued."""
    lock = f"source-{source_id}"
    try:
        app.configure_task("sm:sync_source", lock=lock, queueing_lock=lock).defer(
            source_id=source_id, trigger=trigger)
    except procrastinate.exceptions.AlreadyEnqueued:
        log.debug("a run of source %s is queued already", source_id)
        return False
    return True


@blueprint.task(name="sync_source", queue="sources", retry=_retry(), pass_context=True)
def sync_source(context: procrastinate.JobContext, source_id: int, trigger: str = "schedule") -> None:
    """Fetch a source's new files (``core.sources.sync``) and queue their import."""
    from core import sources

    log.info("job %s: sync source %s", context.job.id, source_id, extra={"job_id": context.job.id})
    result = sources.sync(source_id, trigger=trigger, on_received=lambda ids: _defer_imports(context.app, ids))
    _defer_imports(context.app, result["queue"])


@blueprint.task(name="test_source", queue="sources", pass_context=True)
def check_source(context: procrastinate.JobContext, source_id: int, actor: str) -> None:
    """Connect to a source and list it, for the Sources page's "Test" (``core.sources.check_for``)."""
    from core import sources

    log.info("job %s: test source %s", context.job.id, source_id, extra={"job_id": context.job.id})
    sources.check_for(source_id, actor, context.job.id)


def defer_test(app: procrastinate.App, source_id: int, actor: str) -> int:
    """Queue a test of a source; returns the job's id (its result is found by it)."""
    return app.configure_task("sm:test_source", queue="sources").defer(source_id=source_id, actor=actor)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="evaluate_alerts", queue="maintenance", queueing_lock="evaluate_alerts", pass_context=True)
def evaluate_alerts(context: procrastinate.JobContext, timestamp: int) -> None:
    """Alert each change of a station's or source's state, queue the digests that are due,
    and send the messages due (``core.alerts.run``)."""
    from core import alerts

    with db.connection() as conn:
        conn.autocommit = True
        try:
            alerts.run(conn)
        finally:
            conn.autocommit = False


@blueprint.task(name="deliver_alerts", queue="maintenance", pass_context=True)
def deliver_alerts(context: procrastinate.JobContext, ids: list[int] | None = None) -> None:
    """Send queued alert messages now (the Admin page's test button queues this)."""
    from core import alerts

    with db.connection() as conn:
        conn.autocommit = True
        try:
            alerts.deliver(conn, ids=ids)
        finally:
            conn.autocommit = False


def defer_delivery(app: procrastinate.App, ids: list[int]) -> None:
    """Queue the sending of alert messages ``ids``."""
    app.configure_task("sm:deliver_alerts", queue="maintenance").defer(ids=ids)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="retry_stalled", queue="maintenance", queueing_lock="retry_stalled", pass_context=True)
async def retry_stalled(context: procrastinate.JobContext, timestamp: int) -> None:
    """Retry jobs whose worker died (no heartbeat): a killed worker's file is imported again.

    The killed import's transaction was rolled back by PostgreSQL, so nothing is half-loaded.
    """
    await handle_stalled(context.app)


async def handle_stalled(app: procrastinate.App, seconds_since_heartbeat: float = 30) -> list[int]:
    """Retry each job whose worker stopped sending heartbeats, or, once it has had its
    STATIONMANAGER_JOB_RETRIES attempts, end it as failed (an import's file becomes
    ``failed``). Returns the ids of the jobs ended."""
    manager = app.job_manager
    ended = []
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat):
        attempts = (job.attempts or 0) + 1
        if attempts < get_settings().job_retries:
            log.warning("retrying job %s of a worker that stopped responding", job.id, extra={"job_id": job.id})
            await manager.retry_job(job)
            continue
        log.error("job %s: its worker stopped responding %s times; giving up", job.id, attempts,
                  extra={"job_id": job.id})
        await manager.finish_job(job, status=procrastinate.jobs.Status.FAILED, delete_job=False)
        ended.append(job.id)
        if job.task_name == "sm:import_file":
            reason = (f"import failed (job {job.id}): the worker importing it stopped responding "
                      f"{attempts} times (killed, or out of memory?)")
            await asyncio.to_thread(_give_up_imports, app, job.task_kwargs, reason)
        elif job.task_name == "sm:build_export" and "export_id" in job.task_kwargs:
            from core import exports

            reason = (f"export failed (job {job.id}): the worker building it stopped responding "
                      f"{attempts} times (killed, or out of memory?)")
            await asyncio.to_thread(exports.export_ended, job.task_kwargs["export_id"], reason)
    return ended


def _give_up_imports(app: procrastinate.App, kwargs: dict, reason: str) -> None:
    """An import job given up: the file it was importing fails with ``reason``; the files of
    its batch still queued (never tried) get a job of their own."""
    ids = list(kwargs.get("source_file_ids") or []) + (
        [kwargs["source_file_id"]] if kwargs.get("source_file_id") is not None else [])
    for file_id in ids:
        ingest.import_ended(file_id, reason, retrying=False)
    with db.connection() as conn:
        waiting = [r["id"] for r in db.fetch_all(conn, "files_to_batch", ids=ids) if r["status"] == "queued"]
    _defer_imports(app, waiting)


@blueprint.task(name="build_export", queue="exports", retry=_retry(), pass_context=True)
def build_export(context: procrastinate.JobContext, export_id: int) -> None:
    """Build one requested export (``core.exports.build_export``); its row shows the progress."""
    from core import exports

    job = context.job
    final = (job.attempts or 0) >= get_settings().job_retries  # no retry after this attempt
    log.info("job %s: build export %s", job.id, export_id, extra={"job_id": job.id})
    exports.build_export(export_id, final=final)


def defer_export(app: procrastinate.App, export_id: int) -> None:
    """Queue the build of a requested export (by name and queue: deferring works from any
    process, also one that made more than one app)."""
    app.configure_task("sm:build_export", queue="exports").defer(export_id=export_id)


@blueprint.periodic(cron="41 * * * *")
@blueprint.task(name="cleanup_exports", queue="maintenance", queueing_lock="cleanup_exports", pass_context=True)
def cleanup_exports(context: procrastinate.JobContext, timestamp: int) -> None:
    """Delete export files older than STATIONMANAGER_EXPORT_RETENTION_DAYS (rows kept as expired)."""
    from core import exports

    with db.connection() as conn:
        exports.cleanup(conn)
        conn.commit()


@blueprint.periodic(cron="17 * * * *")
@blueprint.task(name="prune_jobs", queue="maintenance", queueing_lock="prune_jobs", pass_context=True)
async def prune_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
    """Delete finished jobs older than a day (the inbox scan alone makes 17 000 a day)."""
    await context.app.job_manager.delete_old_jobs(nb_hours=24, queue=None, include_failed=False)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="refresh_pending_rollups", queue="maintenance", queueing_lock="refresh_pending_rollups",
                pass_context=True)
def refresh_pending_rollups(context: procrastinate.JobContext, timestamp: int) -> None:
    """Refresh the rollup ranges an import left pending (storage level 2: a process that died
    between its commit and its refresh); see :func:`core.rollups.refresh_pending`."""
    with db.connection() as conn:
        conn.autocommit = True
        try:
            rollups.refresh_pending(conn)
        finally:
            conn.autocommit = False


def make_app(url: str) -> procrastinate.App:
    """A procrastinate app on ``url`` with StationManager's tasks."""
    settings = get_settings()
    connector = procrastinate.PsycopgConnector(
        conninfo=url, min_size=1, max_size=settings.worker_concurrency + 2
    )
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(blueprint.blueprint(), namespace="sm")
    return app


def queue_imports(url: str, source_file_ids: Iterable[int]) -> int:
    """Queue an import job per file; returns how many were queued."""
    ids = list(source_file_ids)
    if not ids:
        return 0
    app = make_app(url)
    with app.open():
        _defer_imports(app, ids, url)
    return len(ids)


def wait_for_files(url: str, ids: list[int], *, report: Callable[[str], None] | None = None,
                   timeout: float = 3600, grace_s: float = 10, poll_s: float = 0.5) -> dict[str, int]:
    """Wait until none of the files ``ids`` (and the members of archives among them) is
    ``queued`` or ``importing``; returns the count of each status.

    A file whose import job has ended without finishing it (cancelled, aborted, or ended
    in an error its file did not record) is marked ``failed`` once that has lasted
    ``grace_s`` seconds (the time for a re-queue to defer its new job), so waiting always
    ends. ``report`` is called with each new summary line; after ``timeout`` seconds a
    :class:`StationManagerError` says what is still waiting.
    """
    deadline = time.monotonic() + timeout
    last = ""
    orphans: dict[int, float] = {}  # file id -> when it was first seen without a job
    with db.connect(url, autocommit=True) as conn, db.translate():
        while True:
            counts = {r["status"]: r["n"] for r in db.fetch_all(conn, "file_status_counts", ids=ids)}
            busy = counts.get("queued", 0) + counts.get("importing", 0)
            line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            if report is not None and line != last:
                report(line)
                last = line
            if busy == 0:
                return counts
            now = time.monotonic()
            gone = {r["id"]: r for r in db.fetch_all(conn, "import_files_without_job", ids=_tree(conn, ids))}
            orphans = {i: orphans.get(i, now) for i in gone}
            for i, since in orphans.items():
                if now - since >= grace_s:
                    job = gone[i]
                    reason = (f"import failed: its job {job['job_id']} ended ({job['job_status']}) "
                              "before the import did; re-queue the file to try again")
                    if db.fetch_one(conn, "source_file_job_gone", id=i, error=reason):
                        log.warning("file %s: %s", i, reason, extra={"file_id": i})
            if now > deadline:
                raise StationManagerError(
                    f"gave up waiting after {timeout:g} s ({line}): is a worker running? (stationmanager worker)")
            time.sleep(poll_s)



def _tree(conn, ids: list[int]) -> list[int]:
    """``ids`` and the files unpacked from them."""
    return [r["id"] for r in db.fetch_all(conn, "file_tree_ids", ids=ids)]
