"""Run the job queue: imports now, quality checks and exports as they are added.

Several workers may run at once against one database; procrastinate claims each job with
``FOR UPDATE SKIP LOCKED`` so a job runs once. SIGTERM or SIGINT stop the worker cleanly:
it takes no new job and lets running ones finish (a second signal aborts them; their
transactions roll back, so nothing is half-loaded).

When the database goes away, procrastinate stops the worker (its listener loses its
connection); the worker then exits with an error (code 1) saying so, rather than as if it
had been asked to stop, so that ``stationmanager up`` (or systemd's ``Restart=on-failure``)
starts it again. It exits the same way when the database cannot be reached at start-up.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

import procrastinate

from core import budget, db, extents, home, jobs, schema
from core.errors import DatabaseUnavailable, StationManagerError
from core.logs import setup_logging
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


def run(concurrency: int | None = None, *, wait: bool = True) -> None:
    """Run a worker until stopped (or, with ``wait=False``, until the queue is empty)."""
    settings = get_settings()
    url = db.database_url(settings)
    schema.upgrade(url, settings)
    with db.connect(url) as conn, db.translate():
        budget.check(conn, "worker", settings)  # a warning: stopping would not help
        extents.recompute(conn)  # imports an older worker made after the upgrade count too
    settings.inbox_dir.mkdir(parents=True, exist_ok=True)
    prepare_home(settings)
    app = jobs.make_app(url)
    name = f"{socket.gethostname()}-{os.getpid()}"
    concurrency = concurrency or settings.worker_concurrency
    log.info(
        "worker %s starting: concurrency %s, database %s, inbox %s",
        name, concurrency, db.redact(url), settings.inbox_dir,
    )
    if threading.current_thread() is threading.main_thread():
        # procrastinate takes the first SIGINT/SIGTERM (stop taking jobs, finish the running
        # ones) and then puts back the handlers it found. Without this one, a SIGTERM after
        # a Ctrl-C (``stationmanager up`` stopping its children, which the terminal's SIGINT
        # reached too) would kill the process without its exit handlers: the embedded
        # PostgreSQL would never learn that this process let go of it.
        signal.signal(signal.SIGTERM, _interrupt)
    failure = _SideTaskFailure()
    logging.getLogger("procrastinate").addHandler(failure)
    try:
        app.run_worker(concurrency=concurrency, name=name, wait=wait, install_signal_handlers=True)
        if failure.reason is not None:
            raise DatabaseUnavailable(f"worker {name} stopped: it lost the database ({failure.reason})")
    except procrastinate.exceptions.ConnectorException as exc:  # a job's end could not be recorded
        raise DatabaseUnavailable(
            f"worker {name} stopped: it lost the database ({db.first_line(exc.__cause__ or exc)})") from exc
    finally:
        logging.getLogger("procrastinate").removeHandler(failure)
        # clean-up is under way (the exit handlers tell the embedded server that this
        # process lets go of it): a further Ctrl-C or SIGTERM must not cut it short.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        db.close_pools()
        log.info("worker %s stopped", name)


class _SideTaskFailure(logging.Handler):
    """Notes procrastinate's "side task failed, stopping worker" (its listener or heartbeat
    lost the database): the worker then ends as if asked to stop."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) != "side_task_failed":
            return
        exc = record.exc_info[1] if record.exc_info else None
        self.reason = db.first_line(exc.__cause__ or exc) if exc is not None else record.getMessage()


def prepare_home(settings: Settings) -> None:
    """Before taking jobs: files and folders this process writes are private to the service
    account and its group (umask 027), the temporary folders (HOME/tmp) of processes that
    died are removed, and a store written by an earlier version loses group write and
    others' access (see :mod:`core.home`)."""
    os.umask(0o027)
    home.sweep(settings)
    home.tighten(settings)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    setup_logging(get_settings().log_level)
    try:
        run()
    except KeyboardInterrupt:
        log.warning("worker interrupted; the running imports were rolled back and will be retried")
        return 130
    except StationManagerError as exc:
        log.error("%s", exc)
        return 1
    return 0
