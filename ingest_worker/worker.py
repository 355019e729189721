"""Run the job queue: imports now, quality checks and exports as they are added.

Several workers may run at once against one database; procrastinate claims each job with
``FOR UPDATE SKIP LOCKED`` so a job runs once. SIGTERM or SIGINT stop the worker cleanly:
it takes no new job and lets running ones finish (a second signal aborts them; their
transactions roll back, so nothing is half-loaded).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from core import db, home, jobs, schema
from core.logs import setup_logging
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


def run(concurrency: int | None = None, *, wait: bool = True) -> None:
    """Run a worker until stopped (or, with ``wait=False``, until the queue is empty)."""
    settings = get_settings()
    url = db.database_url(settings)
    schema.upgrade(url, settings)
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
    try:
        app.run_worker(concurrency=concurrency, name=name, wait=wait, install_signal_handlers=True)
    finally:
        # clean-up is under way (the exit handlers tell the embedded server that this
        # process lets go of it): a further Ctrl-C or SIGTERM must not cut it short.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        db.close_pools()
        log.info("worker %s stopped", name)


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
    return 0
