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

__all__ = ["evaluate", "deliver", "messages", "queue_tests", "states", "run"]


def run(conn: psycopg.Connection, **kw) -> dict:
    """Evaluate, then send what is due: what the worker's periodic task does.
    ``conn`` in autocommit mode."""
    result = evaluate(conn, **kw)
    result["sent"] = deliver(conn, **kw)
    return result
