"""Sending alert messages: by SMTP (STARTTLS, implicit TLS, or plain on the loopback) and
by webhook (a JSON POST with ``text``, which Slack and Teams incoming webhooks show, and
the message's fields).

Messages wait in ``alert_message`` (the outbox, written in the transaction that changed a
state). :func:`deliver` sends the due ones, each locked while it is sent (``FOR UPDATE
SKIP LOCKED``: several workers never send one message twice); a failure is recorded and
tried again after ``ALERT_RETRY_WAIT_S``, doubled each time, until its last attempt.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import psycopg
import requests

from core import credentials, db
from core.alerts import config
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)
_sql = db.SqlFile("alerts.sql")


class SendError(Exception):
    """A message could not be sent (the text says why, without secrets)."""


def send_email(options: dict[str, Any], login: credentials.Credentials | None, to: str, subject: str, body: str,
               timeout: float) -> None:
    """Send one mail through the server of ``options`` (host, port, security, from, ca_file)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = options["from"], to, subject
    msg["Date"], msg["Message-ID"] = formatdate(localtime=False), make_msgid(domain="stationmanager")
    msg.set_content(body)
    security = options.get("security", "starttls")
    context = ssl.create_default_context(cafile=options.get("ca_file") or None)
    host, port = options["host"], int(options["port"])
    try:
        if security == "tls":
            server: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            server = smtplib.SMTP(host, port, timeout=timeout)
        with server:
            if security == "starttls":
                server.starttls(context=context)
            elif security == "none" and not config.is_loopback(host):
                raise SendError("plain SMTP is allowed only to a server on this machine")
            if login is not None and login.username:
                server.login(login.username, login.password or "")
            server.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(f"mail server {host}:{port}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"refused ({exc.smtp_code} {text.strip()})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipient refused: " + ", ".join(exc.recipients)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


def send_webhook(url: str, payload: dict[str, Any], timeout: float) -> None:
    """POST ``payload`` as JSON; any answer but 2xx is a failure (redirects are not followed)."""
    try:
        r = requests.post(url, json=payload, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:  # its text holds the URL (and its token): left out
        what = ("certificate not trusted" if isinstance(exc, requests.exceptions.SSLError) else
                "timeout" if isinstance(exc, requests.Timeout) else
                "cannot connect" if isinstance(exc, requests.ConnectionError) else type(exc).__name__)
        raise SendError(f"webhook: {what}") from None
    if not 200 <= r.status_code < 300:
        raise SendError(f"webhook answered {r.status_code} {r.reason}: {r.text[:200].strip()}")


def payload(msg: dict[str, Any]) -> dict[str, Any]:
    """The webhook body: ``text`` (all Slack and Teams need), ``title``, and the fields.

    >>> payload({"subject": "Kestrel Ridge is late", "body": "Kestrel Ridge is late: …", "kind": "alert",
    ...          "fields": {"station": "Kestrel Ridge", "state": "late"}})["text"]
    'Kestrel Ridge is late: …'
    """
    return {"text": msg["body"], "title": msg["subject"], "kind": msg["kind"], **(msg.get("fields") or {})}


def send_one(msg: dict[str, Any], settings: Settings) -> None:
    """Send a claimed message to its target; :class:`SendError` (or ConfigError) when it fails."""
    if msg["target_kind"] is None:
        raise SendError(f"the target {msg['target_name']!r} was removed")
    timeout = settings.alert_send_timeout_s
    if msg["target_kind"] == "email":
        login = config.smtp_login(msg["credentials"], settings)
        try:
            send_email(msg["options"], login, msg["recipient"], msg["subject"], msg["body"], timeout)
        except SendError as exc:
            raise SendError(credentials.redact(str(exc), login.secrets() if login else [])) from None
    else:
        url = config.webhook_url(msg["credentials"], settings)
        try:
            send_webhook(url, payload(msg), timeout)
        except SendError as exc:
            raise SendError(credentials.redact(str(exc).replace(url, "***"), [])) from None


def deliver(conn: psycopg.Connection, *, settings: Settings | None = None, now: datetime | None = None,
            ids: list[int] | None = None, limit: int = 200) -> dict[str, int]:
    """Send the messages due by ``now`` (only ``ids``, when given), each in its own
    transaction; returns how many were ``sent``, will be ``retried`` and ``failed``."""
    settings = settings or get_settings()
    counts = {"sent": 0, "retried": 0, "failed": 0}
    for _ in range(limit):
        at = now or datetime.now(UTC)
        with conn.transaction():
            msg = _sql.fetch_one(conn, "claim_message", now=at, ids=ids)
            if msg is None:
                break
            try:
                send_one(msg, settings)
            except Exception as exc:  # recorded on the message, tried again later
                error = str(exc) or type(exc).__name__
                status = _sql.fetch_one(conn, "message_failed", id=msg["id"], now=at, error=error,
                                        wait_s=settings.alert_retry_wait_s)["status"]
                counts["failed" if status == "failed" else "retried"] += 1
                log.warning("alert %s to %s: %s (%s)", msg["id"], msg["target_name"], error,
                            "given up" if status == "failed" else "will be retried")
                continue
            conn.execute(_sql.q("message_sent"), {"id": msg["id"], "now": at})
            counts["sent"] += 1
            log.info("alert %s sent to %s: %s", msg["id"], msg["target_name"], msg["subject"])
    return counts


def messages(conn: psycopg.Connection, *, ids: list[int] | None = None, limit: int = 100) -> list[dict]:
    """The alert log, newest first: time, target, recipient, subject, status, attempts, error."""
    return _sql.fetch_all(conn, "messages", ids=ids, limit=limit)
