"""The data Explore queries: a tidy Parquet snapshot per station, built by the worker.

A snapshot is one export per chosen station (:mod:`core.exports`, format ``parquet``, layout
``tidy``), so it is built by the worker, in bounded memory, with the export's cleaning
(calibrated or raw; flagged values removed, or kept and *marked* in the ``flag`` column),
and **reused** at once while its station's files, flags, calibrations and metadata are
unchanged. The sandbox reads the finished files as the view ``readings`` (every station's
file together) and ``channels`` (:data:`core.explore.examples.CHANNELS_SQL`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from core import exports
from core.errors import StationManagerError
from core.explore.examples import CHANNELS_SQL
from core.settings import Settings

FLAGGED = {"remove": "removed", "mark": "kept and marked in the flag column"}
#: Derived views over ``readings``, offered to every query.
DERIVED = {"channels": CHANNELS_SQL}


class SnapshotError(StationManagerError):
    """The snapshot cannot be made as asked."""


@dataclass(frozen=True)
class SnapshotRequest:
    """What to explore: stations, ``[start, end)`` (UTC; None: all), measurement types (None:
    every mapped channel), calibrated or raw, flagged values ``remove``\\ d or ``mark``\\ ed,
    and the averaging (:data:`core.exports.AVERAGING`)."""

    stations: tuple[str, ...]
    start: datetime | None = None
    end: datetime | None = None
    measurement_types: tuple[str, ...] | None = None
    calibrated: bool = True
    flagged: str = "remove"
    averaging: str = "10min"

    def export_requests(self) -> list[exports.ExportRequest]:
        """One tidy Parquet export per station.

        >>> [r.exclude_categories for r in SnapshotRequest(("A",), flagged="mark").export_requests()]
        [()]
        """
        if not self.stations:
            raise SnapshotError("choose at least one station")
        if self.flagged not in FLAGGED:
            raise SnapshotError(f"flagged values: {self.flagged!r} is not one of {', '.join(FLAGGED)}")
        return [exports.ExportRequest(
            station=name, format="parquet", start=self.start, end=self.end,
            measurement_types=self.measurement_types, calibrated=self.calibrated,
            exclude_categories=None if self.flagged == "remove" else (), averaging=self.averaging,
            timezone="UTC", parquet_layout="tidy") for name in dict.fromkeys(self.stations)]


@dataclass(frozen=True)
class Snapshot:
    """The exports making up a snapshot, and why some stations have none (``problems``)."""

    export_ids: tuple[int, ...]
    problems: tuple[str, ...] = ()


def request(conn: psycopg.Connection, req: SnapshotRequest, actor: str) -> Snapshot:
    """Ask the worker for each station's part (or reuse an unchanged one). A station with
    nothing to explore (no readings in the period, no channel of the types) is left out and
    named in ``problems``; when none is left, :class:`SnapshotError` says why."""
    ids, problems = [], []
    for export in req.export_requests():
        try:
            ids.append(exports.request_export(conn, export, actor=actor)["id"])
        except exports.ExportError as exc:
            problems.append(f"{export.station}: {exc}")
    if not ids:
        raise SnapshotError("nothing to explore: " + "; ".join(problems))
    return Snapshot(tuple(ids), tuple(problems))


def rows(conn: psycopg.Connection, snap: Snapshot) -> list[dict[str, Any]]:
    """The export row of each part (status, progress, message, file…)."""
    return [exports.get_export(conn, i) for i in snap.export_ids]


def pending(parts: list[dict[str, Any]]) -> bool:
    """Is the worker still building a part?"""
    return any(r["status"] in ("queued", "running") for r in parts)


def files(parts: list[dict[str, Any]], settings: Settings | None = None) -> list[Path]:
    """The Parquet files of a finished snapshot; :class:`SnapshotError` names a part that
    failed or expired."""
    out = []
    for r in parts:
        if r["status"] == "failed":
            raise SnapshotError(f"the snapshot of {r['station']} failed: {r.get('error') or 'no reason recorded'}")
        try:
            out.append(exports.export_file(r, settings))
        except exports.ExportError as exc:
            raise SnapshotError(f"the snapshot of {r['station']}: {exc}") from exc
    return out


def views(paths: list[Path]) -> dict[str, list[Path]]:
    """The sandbox's views over a snapshot's files."""
    return {"readings": list(paths)}
