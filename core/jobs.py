"""Job definitions, on a PostgreSQL-backed queue (procrastinate).

procrastinate was chosen over a home-made queue: it is well kept, uses psycopg 3, claims
jobs with ``FOR UPDATE SKIP LOCKED``, retries, locks and shuts workers down cleanly on
SIGTERM/SIGINT, and keeps the queue in the same database (one thing to run and back up).

The tasks are thin: each calls one function of ``core`` that can be tested directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import procrastinate
import psycopg

from core import ingest
from core.errors import DatabaseUnavailable
from core.settings import get_settings

log = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

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
def import_file(context: procrastinate.JobContext, source_file_id: int) -> None:
    """Import one received file into ``reading`` and refresh its rollups."""
    job = context.job
    log.info("job %s: import file %s", job.id, source_file_id, extra={"job_id": job.id})
    ingest.import_file(source_file_id)


def make_app(url: str) -> procrastinate.App:
    """A procrastinate app on ``url`` with StationManager's tasks."""
    settings = get_settings()
    connector = procrastinate.PsycopgConnector(
        conninfo=url, min_size=1, max_size=settings.worker_concurrency + 2
    )
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(blueprint, namespace="sm")
    return app


def queue_imports(url: str, source_file_ids: Iterable[int]) -> int:
    """Queue an import job per file; returns how many were queued."""
    ids = list(source_file_ids)
    if not ids:
        return 0
    app = make_app(url)
    with app.open():
        task = app.tasks["sm:import_file"]
        for i in ids:
            task.defer(source_file_id=i)
    return len(ids)
