"""Tokens of the HTTP API: made, listed and revoked with ``stationmanager tokens``.

A token is ``sm_`` followed by 43 characters of URL-safe base64 (256 random bits). It is
shown once, when it is made; the database keeps only its sha256, which is enough for a
random secret of that size (nothing to guess from it, so no slow password hash is needed)
and lets the API find a token with one indexed look-up. A token has a name (unique among
live tokens) and one of the web app's roles (:mod:`core.auth`); a revoked token is kept,
marked, and never accepted again. Each use is recorded (at most once a minute).

>>> token = new_secret()
>>> token.startswith("sm_") and len(token) == 46
True
>>> digest(token) == digest(token) != digest(new_secret())
True
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from core import auth, db
from core.errors import NotFound, PermissionDenied, StationManagerError

_SQL = db.SqlFile("api.sql")
PREFIX = "sm_"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,60}$")


class TokenRefused(PermissionDenied):
    """The API token is missing, unknown or revoked."""


@dataclass(frozen=True)
class Caller:
    """Who calls the API: the token's id, name and role."""

    token_id: int
    name: str
    role: str

    @property
    def actor(self) -> str:
        """The name recorded as the author of what the caller does (flags, exports, files)."""
        return f"token:{self.name}"


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add(conn: psycopg.Connection, name: str, role: str, actor: str) -> tuple[str, dict[str, Any]]:
    """Make a token; returns it (shown once, never stored) and its row."""
    if not _NAME.match(name):
        raise StationManagerError(f"invalid token name {name!r}: use 1–60 letters, digits, '.', '_', '@' or '-'")
    if role not in auth.ROLES:
        raise StationManagerError(f"unknown role {role!r}; roles: {', '.join(auth.ROLES)}")
    token = new_secret()
    with conn.transaction():
        if _SQL.fetch_one(conn, "live_token_by_name", name=name):
            raise StationManagerError(f"a token called {name!r} exists; revoke it first "
                                      f"(stationmanager tokens revoke {name})")
        row = _SQL.fetch_one(conn, "insert_token", name=name, role=role, token_sha256=digest(token), actor=actor)
        assert row is not None
        db.audit(conn, actor, "create", "api_token", row["id"], name=name, role=role)
    return token, row


def revoke(conn: psycopg.Connection, name: str, actor: str) -> None:
    with conn.transaction():
        row = _SQL.fetch_one(conn, "revoke_token", name=name, actor=actor)
        if row is None:
            raise NotFound(f"no live token called {name!r} (stationmanager tokens list)")
        db.audit(conn, actor, "revoke", "api_token", row["id"], name=name)


def list_tokens(conn: psycopg.Connection, *, revoked: bool = False) -> list[dict[str, Any]]:
    """The tokens (never their secrets), with when each was last used."""
    return _SQL.fetch_all(conn, "list_tokens", revoked=revoked)


def authenticate(conn: psycopg.Connection, token: str | None) -> Caller:
    """The caller of a token, its use recorded; :class:`TokenRefused` says what is wrong."""
    if not token:
        raise TokenRefused("this needs an API token: send the header 'Authorization: Bearer TOKEN' "
                           "(an admin makes one with: stationmanager tokens add NAME --role viewer)")
    row = _SQL.fetch_one(conn, "token_by_hash", token_sha256=digest(token))
    if row is None:
        raise TokenRefused("this API token is not known: check that it was copied whole, or ask an "
                           "admin for a new one (stationmanager tokens add)")
    if row["revoked_at"] is not None:
        raise TokenRefused(f"the API token {row['name']!r} was revoked on {row['revoked_at']:%Y-%m-%d %H:%M} "
                           "UTC; ask an admin for a new one")
    conn.execute(_SQL.q("touch_token"), {"id": row["id"]})
    return Caller(row["id"], row["name"], row["role"])
