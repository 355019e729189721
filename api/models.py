"""The shapes of the API's requests and answers (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from core import auth, exports, flags
from core.errors import InvalidValue

Category = Literal[flags.CATEGORIES]  # type: ignore[valid-type]
#: Text without NUL (PostgreSQL text cannot hold it).
Text = Annotated[str, Field(pattern=r"^[^\x00]*$", max_length=2000)]
Name = Annotated[str, Field(pattern=r"^[^\x00]*$", min_length=1, max_length=200)]
ChannelId = Annotated[int, Field(ge=1, le=2**31 - 1)]
FIRST_YEAR, LAST_YEAR = 1970, 2200


def checked_time(t: datetime | None, what: str = "time") -> datetime | None:
    """A time as UTC (naive: taken as UTC), refused outside 1970–2200.

    >>> checked_time(datetime(2025, 1, 1, 12)).isoformat()
    '2025-01-01T12:00:00+00:00'
    >>> checked_time(datetime(1, 1, 1), "start")
    Traceback (most recent call last):
    ...
    core.errors.InvalidValue: start: 0001-01-01 00:00:00 is outside the years 1970 to 2200
    """
    if t is None:
        return None
    if not FIRST_YEAR <= t.year <= LAST_YEAR:
        raise InvalidValue(f"{what}: {t} is outside the years {FIRST_YEAR} to {LAST_YEAR}")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _in_range(t: datetime) -> datetime:
    if not FIRST_YEAR <= t.year <= LAST_YEAR:
        raise ValueError(f"outside the years {FIRST_YEAR} to {LAST_YEAR}")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


When = Annotated[datetime, AfterValidator(_in_range)]


class Error(BaseModel):
    """Every error: one message a person can act on."""

    error: str = Field(examples=["no station called 'Mast X'"])


class FileStatus(BaseModel):
    """A received file: its status, counts and, when it failed, the reason and line."""

    id: int
    name: str
    station: str | None
    status: Literal["queued", "importing", "imported", "failed", "duplicate", "needs station", "unpacked"]
    duplicate: bool = Field(description="True when the same content was received before (nothing is imported)")
    duplicate_of: int | None = Field(description="The file first received with this content")
    format: str | None
    size_bytes: int
    rows: int | None
    readings: int | None
    changed: int | None = Field(description="Readings an earlier import had, changed by this one")
    first_time: datetime | None
    last_time: datetime | None
    error: str | None
    error_line: int | None
    warnings: list[str]
    parent_id: int | None = Field(description="The archive this file came out of")
    received_at: datetime
    received_by: str
    origin: str


class Station(BaseModel):
    id: int
    name: str
    latitude: float | None
    longitude: float | None
    elevation_m: float | None
    kind: str


class Channel(BaseModel):
    id: int
    column_name: str
    label: str
    statistic: str
    unit: str
    mapped: bool
    measurement_point: str | None
    measurement_type: str | None
    height_m: float | None
    orientation_deg: float | None


class Sync(BaseModel):
    state: str = Field(description="syncing, failing, not running, no new readings, no file, no data")
    reason: str
    sources: list[str]


class Health(BaseModel):
    """What the Overview shows of a station."""

    station: str
    status: str = Field(description="ok, late, silent, faulty … (worst first on the Overview)")
    faults: list[str]
    last_reading: datetime | None
    age_hours: float | None
    interval_s: int | None
    channels: int
    mapped_channels: int
    files_imported: int
    files_failed: int
    files_pending: int
    last_file_received: datetime | None
    files_7d: int
    failed_7d: int
    recovery_30d: float | None = Field(description="Readings of the last 30 days as % of those expected")
    recovery_30d_unflagged: float | None
    open_findings: int
    sync: Sync | None


class ExportIn(BaseModel):
    """The Exports page's options."""

    model_config = {"extra": "forbid"}

    station: Name
    format: Literal[exports.FORMATS]  # type: ignore[valid-type]
    start: When | None = Field(None, description="UTC unless an offset is given; default: the first reading")
    end: When | None = Field(None, description="Exclusive; default: just after the last reading")
    channel_ids: list[ChannelId] | None = Field(None, min_length=1, max_length=10_000,
                                                description="Default: every mapped channel")
    measurement_types: list[Name] | None = Field(None, min_length=1, max_length=100)
    calibrated: bool = True
    exclude_categories: list[Category] | None = Field(
        None, description="Flagged values left out; default (null): every category; []: keep flagged values")
    averaging: Literal[tuple(exports.AVERAGING)] = "10min"  # type: ignore[valid-type]
    timezone: Name = "UTC"
    parquet_layout: Literal[exports.PARQUET_LAYOUTS] = "wide"  # type: ignore[valid-type]
    headers: Literal[exports.HEADERS] = "descriptive"  # type: ignore[valid-type]


class Export(BaseModel):
    id: int
    station: str
    format: str
    status: Literal[exports.STATUSES]  # type: ignore[valid-type]
    progress: float
    message: str
    reused: bool = Field(description="An unchanged earlier export's file, not built again")
    file_name: str | None
    size_bytes: int | None
    rows: int | None
    requested_by: str
    requested_at: datetime
    finished_at: datetime | None
    error: str | None
    params: dict
    file_url: str | None = Field(description="Where the finished file downloads (same token)")


class FlagIn(BaseModel):
    model_config = {"extra": "forbid"}

    start: When = Field(description="UTC unless an offset is given")
    end: When = Field(description="Exclusive")
    category: Category
    channels: list[Name] | None = Field(
        None, min_length=1, max_length=10_000,
        description="Column names (or channel ids as text); null: the whole station")
    note: Text = ""


class Flag(BaseModel):
    id: int
    station: str
    start: datetime
    end: datetime
    category: str
    whole_station: bool
    channel_ids: list[int]
    channels: list[str]
    note: str
    source: str
    rule: str | None
    author: str
    created_at: datetime
    deleted: bool


Role = Literal[auth.ROLES]  # type: ignore[valid-type]
