"""Saved queries of the Explore page: each user's own by name, shared ones listed for everyone.

A user saves a query (its SQL and chart: ``x``, ``y``, ``colour``, ``kind``) under a name of
their own; saving again under the same name replaces it. A *shared* query is listed for
every user under its name, which no other user's shared query may take (case aside), so a
name said in a meeting finds one query. Only its owner changes or deletes it; every change
is audited.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core import db
from core.errors import NotFound, StationManagerError
from core.explore.chart import KINDS
from core.explore.sandbox import MAX_SQL_CHARS

_sql = db.SqlFile("explore.sql")
MAX_NAME_CHARS = 200


class SavedQueryError(StationManagerError):
    """The query cannot be saved as asked."""


def save(conn: psycopg.Connection, owner: str, name: str, sql: str, *, shared: bool = False,
         chart: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save (or replace) ``owner``'s query ``name``; returns its row. Commits its own transaction."""
    name = " ".join(name.split())
    problems = []
    if not owner.strip():
        problems.append("a saved query needs its owner's name")
    if not name:
        problems.append("give the query a name")
    elif len(name) > MAX_NAME_CHARS:
        problems.append(f"the name is {len(name)} characters long; at most {MAX_NAME_CHARS}")
    if not sql.strip():
        problems.append("there is no SQL to save")
    elif len(sql) > MAX_SQL_CHARS:
        problems.append(f"the query is {len(sql):,} characters long; at most {MAX_SQL_CHARS:,}")
    chart = {k: v for k, v in (chart or {}).items() if k in ("x", "y", "colour", "kind")}
    if chart.get("kind") not in (None, *KINDS):
        problems.append(f"chart kind {chart['kind']!r} is not one of {', '.join(KINDS)}")
    if problems:
        raise SavedQueryError("; ".join(problems))
    with conn.transaction():
        if shared:
            other = _sql.fetch_one(conn, "shared_by_other", name=name, owner=owner)
            if other is not None:
                raise SavedQueryError(f"{other['owner']} already shares a query named {name!r}; "
                                      "choose another name to share yours")
        row = _sql.fetch_one(conn, "save_query", owner=owner, name=name, sql=sql, shared=shared, chart=Jsonb(chart))
        assert row is not None
        db.audit(conn, owner, "save", "explore_query", row["id"], name=name, shared=shared)
    return row


def visible(conn: psycopg.Connection, user: str) -> list[dict[str, Any]]:
    """The user's own queries, then those other users share, each by name (``mine`` tells)."""
    return _sql.fetch_all(conn, "visible_queries", user=user)


def get(conn: psycopg.Connection, user: str, query_id: int) -> dict[str, Any]:
    """One query the user may see (their own, or shared)."""
    row = _sql.fetch_one(conn, "visible_query", id=query_id, user=user)
    if row is None:
        raise NotFound(f"no saved query {query_id} of yours or shared")
    return row


def delete(conn: psycopg.Connection, user: str, query_id: int) -> None:
    """Delete one of the user's own queries (a shared query of another user is refused)."""
    with conn.transaction():
        row = _sql.fetch_one(conn, "delete_query", id=query_id, owner=user)
        if row is None:
            raise NotFound(f"no saved query {query_id} of yours: only its owner deletes a query")
        db.audit(conn, user, "delete", "explore_query", query_id, name=row["name"])
