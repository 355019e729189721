"""Each channel's first and last reading time, kept in ``channel_extent`` (migration 0021).

The Overview, the Station page and sync health ask when each channel's first and last
reading are; with 800 channels, two index probes per channel into ``reading`` were most of
the Overview's time. The table answers in one row per channel (none for a channel without
readings). Whoever changes ``reading`` keeps it right, in the same transaction:

- an import: :func:`widen`, once per file, with each channel's first and last time in it;
- a file imported again first loses its earlier readings: :func:`recompute_touching` the span
  they had;
- a restore or ``db copy`` (derived data, not in a backup) and migration 0021: :func:`recompute`
  of every channel; a worker does it too when it starts (an import made by an older version
  after the upgrade, while it still ran, is then counted).

A channel (or station) deleted leaves its readings (``reading`` has no foreign key) and its
row here, both never read again: every query starts from ``channel``. There is no foreign
key here either: checking it would lock the channel's row whenever a channel gets its first
reading, against another import of the station holding that row (a deadlock).

Anything else that writes or deletes readings directly (a script, a test) calls
:func:`recompute` for the channels it touched. :func:`mismatches` compares the table with
``reading``.

Locking: :func:`widen` locks the rows in channel order, as the last thing an import's
transaction locks, so two imports of the same station wait for each other and never
deadlock on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import psycopg

from core import db

_SQL = db.SqlFile("extents.sql")


def widen(conn: psycopg.Connection, spans: Mapping[int, tuple[datetime, datetime]]) -> None:
    """Widen the extents of the channels in ``spans`` (channel id -> first and last time of
    readings just written) to include them; one statement."""
    if not spans:
        return
    ids = sorted(spans)
    conn.execute(_SQL.q("widen"), {"channel_ids": ids, "firsts": [spans[i][0] for i in ids],
                                   "lasts": [spans[i][1] for i in ids]})


def recompute(conn: psycopg.Connection, channel_ids: Iterable[int] | None = None) -> None:
    """Set the extents of ``channel_ids`` (default: every channel) from ``reading`` (two index
    probes per channel); a channel without readings loses its row.

    Every channel: the table is locked against imports first (they wait, at their last
    step, for the commit), so the probes see every import committed before, and the imports
    still running widen the new rows after."""
    ids = None if channel_ids is None else sorted(set(channel_ids))
    with conn.transaction():
        if ids is None:
            conn.execute("LOCK TABLE channel_extent IN SHARE ROW EXCLUSIVE MODE")
        conn.execute(_SQL.q("recompute"), {"channel_ids": ids})


def recompute_touching(conn: psycopg.Connection, first: datetime, last: datetime) -> list[int]:
    """After readings in ``[first, last]`` were deleted: the extents that start or end in that
    span are set from ``reading`` again (their rows locked first, in channel order, so that what
    other imports committed meanwhile is seen). Returns those channels."""
    ids = [r["channel_id"] for r in _SQL.fetch_all(conn, "lock_touching", first=first, last=last)]
    if ids:
        recompute(conn, ids)
    return ids


def mismatches(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Channels whose extent differs from their readings (none when the table is right)."""
    return _SQL.fetch_all(conn, "mismatches")
