"""Alerts: one message per change of a station's or a source's state, by email and webhook.

- :mod:`core.alerts.config` — targets (mail servers, webhooks; secrets stay in
  ``HOME/secrets.toml``), subscriptions, per-source rules;
- :mod:`core.alerts.evaluate` — the states, their changes and the daily digest, recorded
  with their messages in one transaction (run by the worker every minute, never the app);
- :mod:`core.alerts.send` — sending the queued messages, retried with backoff, logged.
"""

from __future__ import annotations

import psycopg

from core.alerts.evaluate import evaluate, queue_tests, states
from core.alerts.send import deliver, messages

__all__ = ["evaluate", "deliver", "messages", "queue_tests", "states", "run", "test_by_worker"]


def run(conn: psycopg.Connection, **kw) -> dict:
    """Evaluate, then send what is due: what the worker's periodic task does.
    ``conn`` in autocommit mode."""
    result = evaluate(conn, **kw)
    result["sent"] = deliver(conn, **kw)
    return result


def test_by_worker(conn: psycopg.Connection, actor: str, *, target: str | None = None, to: str | None = None
                   ) -> list[int]:
    """Queue a test message to each target (or ``target``) and a worker job to send them
    (the web app never sends); returns the messages' ids, to follow in :func:`messages`."""
    from core import db, jobs

    with conn.transaction():
        ids = queue_tests(conn, actor, target=target, to=to)
    app = jobs.make_app(db.database_url())
    with app.open():
        jobs.defer_delivery(app, ids)
    return ids
