"""Sign-in sessions, kept in the database so that every app process sees them and a restart
keeps them.

A password accepted starts a session (:func:`start`): a random id, of which only the sha256
is stored. The browser's remember-me cookie is a token signed with the user file's cookie
key, in streamlit-authenticator's format (``username``, ``exp_date``) plus that id
(``sid``; :func:`cookie_token`). The app checks the session on every run (:func:`check`):
a session that was ended (log out, ``stationmanager users logout``, the user removed or
given a new password), idle longer than ``STATIONMANAGER_SESSION_IDLE_MINUTES`` or older
than the cookie's lifetime signs the user out, whatever the cookie says. So a copied cookie
stops working when its session ends.

>>> key = "k" * 64  # the user file's cookie key: 64 hex digits
>>> token = cookie_token("ana", "s1", key, 7, now=1_000_000.0)
>>> read_token(token, key) == {"username": "ana", "exp_date": 1_604_800.0, "sid": "s1"}
True
>>> read_token(token, "x" * 64) is None
True
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import jwt
import psycopg

from core import db

_SQL = db.SqlFile("sign_in.sql")

#: Why a session ended, as the signed-out user is told.
ENDED = {
    "logout": "You logged out.",
    "revoked": "An administrator signed you out.",
    "removed": "Your session has ended.",
    "password": "Your password was changed: please sign in again.",
    "expired": "Your session has expired: please sign in again.",
    "idle": "You were signed out after {idle:g} minutes without activity: please sign in again.",
    "unknown": "Your session has ended: please sign in again.",
}


def ended_message(reason: str, idle_minutes: float) -> str:
    """What a user signed out for ``reason`` is told.

    >>> ended_message("idle", 60.0)
    'You were signed out after 60 minutes without activity: please sign in again.'
    """
    return ENDED.get(reason, ENDED["unknown"]).format(idle=idle_minutes)


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def start(conn: psycopg.Connection, username: str, password_fp: str) -> str:
    """Start a session for ``username`` (signed in with the password of fingerprint
    ``password_fp``, :func:`core.auth.password_fingerprint`); its id."""
    sid = secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute(_SQL.q("purge_sessions"))
        conn.execute(_SQL.q("start_session"), {"id": _key(sid), "username": username, "password_fp": password_fp})
    return sid


def check(conn: psycopg.Connection, sid: str | None, username: str, password_fp: str | None, *,
          idle_minutes: float, max_age_days: float) -> str | None:
    """None if session ``sid`` of ``username`` is live (and mark it used now), else why it is
    not (a key of :data:`ENDED`, or ``idle``), ending it.

    ``password_fp`` is the fingerprint of the user's password now, None if the user no
    longer exists.
    """
    if not sid:
        return "unknown"
    params = {"id": _key(sid), "username": username, "password_fp": password_fp or "",
              "idle_s": idle_minutes * 60, "max_age_s": max_age_days * 86400}
    with conn.transaction():
        if _SQL.fetch_one(conn, "touch_session", **params):
            return None
        row = _SQL.fetch_one(conn, "session", **params)
        if row is None or row["username"] != username:
            return "unknown"
        if row["ended_at"] is not None:
            return row["end_reason"] if row["end_reason"] in ENDED else "unknown"
        reason = ("removed" if password_fp is None else "password" if row["password_fp"] != password_fp
                  else "idle" if row["idle"] else "expired")
        conn.execute(_SQL.q("end_session"), {"id": _key(sid), "reason": reason})
    return reason


def end(conn: psycopg.Connection, sid: str | None, reason: str = "logout") -> None:
    """End one session (log out)."""
    if sid:
        with conn.transaction():
            conn.execute(_SQL.q("end_session"), {"id": _key(sid), "reason": reason})


def end_user(conn: psycopg.Connection, username: str, reason: str = "revoked") -> int:
    """End every live session of ``username``, in every browser; how many there were."""
    with conn.transaction():
        return len(_SQL.fetch_all(conn, "end_user_sessions", username=username, reason=reason))


def live(conn: psycopg.Connection, *, idle_minutes: float) -> list[dict[str, Any]]:
    """Per user: the live sessions and when one was last used."""
    return _SQL.fetch_all(conn, "live_sessions", idle_s=idle_minutes * 60)


def cookie_token(username: str, sid: str, key: str, expiry_days: float, *, now: float | None = None) -> str:
    """The remember-me cookie's value: streamlit-authenticator's token (which its cookie
    sign-in reads) with the session id."""
    exp = (time.time() if now is None else now) + expiry_days * 86400
    return jwt.encode({"username": username, "exp_date": exp, "sid": sid}, key, algorithm="HS256")


def read_token(token: str | None, key: str) -> dict[str, Any] | None:
    """The claims of a cookie token signed with ``key``, or None."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def secure_cookie(url: str | None, forwarded_proto: str | None, ssl_cert_file: str | None) -> bool:
    """Whether the browser reaches the app over TLS, so the cookie must be ``Secure``: the
    address it shows, a reverse proxy's ``X-Forwarded-Proto``, or Streamlit's own TLS.

    >>> secure_cookie("http://127.0.0.1:8501/", None, None)
    False
    >>> secure_cookie("https://masts.example.org/", None, None)
    True
    >>> secure_cookie("http://10.0.0.5:8501/", "https, http", None)
    True
    >>> secure_cookie(None, None, "/etc/ssl/app.pem")
    True
    """
    proto = (forwarded_proto or "").split(",")[0].strip().lower()
    return (url or "").lower().startswith("https://") or proto == "https" or bool(ssl_cert_file)
