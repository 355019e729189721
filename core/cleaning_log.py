"""Cleaning logs: a station's flags read from and written to brightwind and Windographer files.

Both formats list periods of bad data, one sensor per line:

**brightwind** cleaning file (what ``brightwind.apply_cleaning`` reads): comma-separated, with a
header naming ``Sensor``, ``Start`` and ``Stop`` (``Reason`` is optional, other columns are
ignored)::

    Sensor,Start,Stop,Reason
    All,2016-01-09 15:30:00,2016-01-09 17:10:00,Installation
    Spd,2016-03-09 06:20,2016-03-09 10:30,Icing

``Sensor`` is a column-name **prefix**: the line applies to every channel of the station whose
column name starts with it (``Spd`` covers ``Spd80mN``, ``Spd80mNStd``, ``Spd40mSMax``…;
``Spd80mS`` also covers ``Spd80mSStd``), exactly as brightwind matches it. ``All`` means every
channel: the flag is on the whole station. ``Start`` is inclusive, ``Stop`` exclusive.

**Windographer** flag-segment log: tab-separated, with the header
``Data Column, Flag Name, Start Time, End Time, Time Steps``. ``Data Column`` names one column
exactly. Its ``End Time`` is **exclusive**: in Windographer's logs ``Time Steps`` is always
``(End Time - Start Time) / interval`` (``15:30``–``17:10`` is 10 steps of 10 minutes, not 11).
A log whose ``Time Steps`` also count the end stamp (one more) is read as inclusive, and its end
is moved one interval later. The interval is the station's logger interval in force at the
start (10 minutes when the station has no logger yet); a ``Time Steps`` that fits neither
reading is reported as a bad line. (brightwind's ``apply_cleaning_windographer`` matches a
Windographer column as a prefix and skips ``Synthesized`` segments; here the column is exact,
as Windographer writes it, and every segment is imported so that nothing in the file is
silently dropped.)

**Times.** Neither format carries a time zone: the times are taken as **UTC** and mark the
start of a time step, as StationManager stores readings. A time with an explicit offset
(``2016-01-09 15:30:00+00:00``) is converted to UTC. Dates must be written year first
(``2016-01-09 15:30`` or ``2016-01-09 15:30:00``); day-first dates like ``09/01/2016`` are
ambiguous and rejected. An empty ``Start``/``Stop`` (brightwind's "from the beginning" /
"until today") is rejected too: a flag needs a fixed period.

**Categories.** A reason (flag name) that is one of :data:`core.flags.CATEGORIES` (ignoring
case, ``_`` and ``-``; ``Tower shading`` is ``tower shadow``) gives that category; ``icing: rime
on the cups`` gives ``icing`` with the note ``rime on the cups``; anything else gives ``other``
with the text as the note (``Installation``, ``Invalid``…).

**Import.** Lines with the same period and reason become one flag on all their channels
(source ``manual``, author the importing user). A flag is added only when the station has no
live flag with the same channels, period, category and note, so importing the same file again
adds nothing (a deleted flag is added again). Sensors that match no channel are reported as
``unmatched``. A file with any bad line imports nothing: :class:`CleaningLogError` lists every
bad line with its number and the reason.

**Export** writes the station's live flags in either format; importing that file into a
station with the same channels gives the same flags. Two limits of the formats: brightwind
cannot name ``Spd80mS`` without ``Spd80mSStd`` (prefixes), so such a flag is written for the
prefix and the export says which channels it widens to; Windographer has no whole-station line,
so a whole-station flag is written for each current channel. Tabs and line breaks in notes
become spaces in Windographer logs.

**Spreadsheets.** No cell of an exported log starts like a formula (:mod:`core.spreadsheet`):
a note that would is written after its category (``other: =x``), which reads back as the
note ``=x``; a sensor (column name) that would gets a ``'`` in front, and the export warns
that brightwind and Windographer will not match it. The import takes such a quoted sensor as
its column only when the name with the ``'`` matches no channel; reasons are read as written.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from core import db, flags, spreadsheet
from core.errors import StationManagerError

log = logging.getLogger(__name__)

FORMATS = ("brightwind", "windographer")
#: brightwind's word for every sensor of the station.
ALL_SENSORS = "All"
#: The recording interval assumed for a station without a logger configuration.
DEFAULT_INTERVAL_S = 600
_SYNONYMS = {"tower shading": "tower shadow"}
_BRIGHTWIND_HEADER = ("Sensor", "Start", "Stop", "Reason")
_WINDOGRAPHER_HEADER = ("Data Column", "Flag Name", "Start Time", "End Time", "Time Steps")
_DAY_FIRST = re.compile(r"^\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b")


class CleaningLogError(StationManagerError):
    """The cleaning log has bad lines; nothing was imported.

    ``problems`` lists ``(line, reason)``; line 0 is the file as a whole.
    """

    def __init__(self, problems: Sequence[tuple[int, str]], file: str | None = None) -> None:
        self.problems = list(problems)
        self.file = file
        n = len(self.problems)
        head = f"{file}: " if file else ""
        lines = [f"line {line}: {why}" if line else why for line, why in self.problems]
        super().__init__(f"{head}{n} bad line{'s' if n != 1 else ''} in the cleaning log, nothing imported "
                         f"(correct {'them' if n != 1 else 'it'} and import the file again):\n" + "\n".join(lines))


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of a cleaning log: ``sensor`` bad over ``[start, end)`` (UTC) for ``reason``."""

    line: int
    sensor: str
    start: datetime
    end: datetime
    reason: str


def parse_time(text: str, what: str = "time") -> datetime:
    """A cleaning-log time as an aware UTC datetime: year first, UTC unless it has an offset.

    >>> parse_time("2016-03-09 06:20")
    datetime.datetime(2016, 3, 9, 6, 20, tzinfo=datetime.timezone.utc)
    >>> parse_time("2016-01-09 16:30:00+01:00", "Start")
    datetime.datetime(2016, 1, 9, 15, 30, tzinfo=datetime.timezone.utc)
    >>> for bad in ("09/01/2016 15:30", "2016-13-01 00:00", " "):
    ...     try:
    ...         parse_time(bad, "Start")
    ...     except flags.FlagError as exc:
    ...         print(exc)
    Start '09/01/2016 15:30': day and month are ambiguous; write the date year first, e.g. 2016-01-09 15:30
    Start '2016-13-01 00:00' is not a date and time like 2016-01-09 15:30
    Start is empty: give a date and time like 2016-01-09 15:30
    """
    t = text.strip()
    if not t:
        raise flags.FlagError(f"{what} is empty: give a date and time like 2016-01-09 15:30")
    if _DAY_FIRST.match(t):
        raise flags.FlagError(f"{what} {t!r}: day and month are ambiguous; write the date year first, "
                              "e.g. 2016-01-09 15:30")
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        raise flags.FlagError(f"{what} {t!r} is not a date and time like 2016-01-09 15:30") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_time(t: datetime) -> str:
    """A time for a cleaning log (UTC, no zone), to the minute unless it has seconds.

    >>> format_time(datetime(2016, 1, 9, 15, 30, tzinfo=UTC))
    '2016-01-09 15:30'
    >>> format_time(datetime(2016, 1, 9, 15, 30, 5, 250000, tzinfo=UTC))
    '2016-01-09 15:30:05.250000'
    """
    t = t.astimezone(UTC)
    if t.microsecond:
        return f"{t:%Y-%m-%d %H:%M:%S.%f}"
    return f"{t:%Y-%m-%d %H:%M:%S}" if t.second else f"{t:%Y-%m-%d %H:%M}"


def _header(fields: list[str], required: Sequence[str], line: int, fmt: str) -> dict[str, int]:
    """Column positions by name; a header missing a required name is a bad line."""
    names = [f.strip() for f in fields]
    missing = [r for r in required if r not in names]
    if missing:
        raise CleaningLogError([(line, f"the header must name the columns {', '.join(required)} "
                                       f"(a {fmt} cleaning log); it has {', '.join(map(repr, names))}")])
    return {n: i for i, n in reversed(list(enumerate(names)))}


def _records(text: str, fmt: str) -> Iterable[tuple[int, list[str]]]:
    """(first line number, fields) of each non-blank record."""
    text = text.lstrip("\ufeff")
    if fmt == "brightwind":
        reader = csv.reader(io.StringIO(text, newline=""))
        last = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CleaningLogError([(reader.line_num, f"not valid CSV: {exc}")]) from exc
            first, last = last + 1, reader.line_num
            if any(f.strip() for f in row):
                yield first, row
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield n, line.split("\t")


def parse(text: str, fmt: str, interval_at: Callable[[datetime], int] = lambda t: DEFAULT_INTERVAL_S
          ) -> list[Entry]:
    """The lines of a ``brightwind`` or ``windographer`` cleaning log, with ``[start, end)`` in UTC.

    ``interval_at(t)`` is the recording interval (seconds) at ``t``; Windographer's ``Time
    Steps`` are checked against it. Raises :class:`CleaningLogError` listing every bad line.

    >>> log = "Sensor,Start,Stop,Reason\\nSpd,2016-03-09 06:20,2016-03-09 10:30,Icing\\n"
    >>> [(e.line, e.sensor, f"{e.start:%H:%M}", f"{e.end:%H:%M}", e.reason) for e in parse(log, "brightwind")]
    [(2, 'Spd', '06:20', '10:30', 'Icing')]
    >>> wg = ("Data Column\\tFlag Name\\tStart Time\\tEnd Time\\tTime Steps\\n"
    ...       "T2m\\tIcing\\t2016-03-09 06:20\\t2016-03-09 10:30\\t25\\n")
    >>> [(e.sensor, f"{e.end:%H:%M}") for e in parse(wg, "windographer")]  # End Time exclusive: 25 steps
    [('T2m', '10:30')]
    >>> [(e.sensor, f"{e.end:%H:%M}") for e in parse(wg.replace("\\t25", "\\t26"), "windographer")]  # inclusive
    [('T2m', '10:40')]
    >>> try:
    ...     parse("Sensor,Start,Stop\\nSpd,2016-03-09 10:30,2016-03-09 06:20\\nDir,x,2016-03-09 06:20\\n", "brightwind")
    ... except CleaningLogError as exc:
    ...     for problem in exc.problems:
    ...         print(problem)
    (2, 'Stop 2016-03-09 06:20 is not after Start 2016-03-09 10:30')
    (3, "Start 'x' is not a date and time like 2016-01-09 15:30")
    """
    if fmt not in FORMATS:
        raise flags.FlagError(f"format {fmt!r} is not one of: {', '.join(FORMATS)}")
    wg = fmt == "windographer"
    names = _WINDOGRAPHER_HEADER if wg else _BRIGHTWIND_HEADER
    records = _records(text, fmt)
    try:
        first, fields = next(iter(records))
    except StopIteration:
        raise CleaningLogError([(0, f"the file is empty: a {fmt} cleaning log starts with the header "
                                    f"{', '.join(names)}")]) from None
    where = _header(fields, names[:4] if wg else names[:3], first, fmt)
    width = len(fields)
    entries: list[Entry] = []
    problems: list[tuple[int, str]] = []
    for line, row in records:
        try:
            entries.append(_entry(line, row, where, width, wg, interval_at))
        except flags.FlagError as exc:
            problems.append((line, str(exc)))
    if problems:
        raise CleaningLogError(problems)
    return entries


def _entry(line: int, row: list[str], where: dict[str, int], width: int, wg: bool,
           interval_at: Callable[[datetime], int]) -> Entry:
    if len(row) != width:
        raise flags.FlagError(f"{len(row)} fields, but the header has {width}")
    sensor_key, reason_key, start_key, end_key = (
        ("Data Column", "Flag Name", "Start Time", "End Time") if wg else ("Sensor", "Reason", "Start", "Stop"))
    sensor = row[where[sensor_key]].strip()
    if not sensor:
        raise flags.FlagError(f"{sensor_key} is empty: name a column{'' if wg else ' prefix, or All'}")
    start = parse_time(row[where[start_key]], start_key)
    end = parse_time(row[where[end_key]], end_key)
    reason = row[where[reason_key]].strip() if reason_key in where else ""
    if end < start:
        raise flags.FlagError(f"{end_key} {format_time(end)} is not after {start_key} {format_time(start)}")
    if wg and "Time Steps" in where:
        end = _windographer_end(start, end, row[where["Time Steps"]].strip(), interval_at(start))
    if end <= start:
        raise flags.FlagError(f"{end_key} {format_time(end)} is not after {start_key} {format_time(start)}")
    return Entry(line, sensor, start, end, reason)


def _windographer_end(start: datetime, end: datetime, steps_text: str, interval_s: int) -> datetime:
    """The exclusive end of a segment, checked against its ``Time Steps``."""
    try:
        steps = int(steps_text)
    except ValueError:
        raise flags.FlagError(f"Time Steps {steps_text!r} is not a whole number") from None
    span = (end - start).total_seconds()
    if steps >= 1 and span == (steps - 1) * interval_s:
        return end + timedelta(seconds=interval_s)  # End Time is the last step's stamp
    exclusive = math.ceil(span / interval_s) if span > 0 else 0
    if steps != exclusive:
        raise flags.FlagError(
            f"Time Steps {steps} does not fit {format_time(start)} – {format_time(end)} at the station's "
            f"{interval_s / 60:g}-minute interval: expected {exclusive} (End Time exclusive) "
            f"or {int(span // interval_s) + 1} (End Time inclusive)")
    return end


# --- categories -------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def _category_named(text: str) -> str | None:
    n = _norm(text)
    n = _SYNONYMS.get(n, n)
    return n if n in flags.CATEGORIES else None


def category_of(reason: str) -> tuple[str, str]:
    """(category, note) of a reason or flag name.

    >>> category_of("Icing"), category_of("Tower_Shading"), category_of("Installation")
    (('icing', ''), ('tower shadow', ''), ('other', 'Installation'))
    >>> category_of("faulty sensor: bearing worn"), category_of("")
    (('faulty sensor', 'bearing worn'), ('other', ''))
    """
    reason = reason.strip()
    if (cat := _category_named(reason)) is not None:
        return cat, ""
    head, colon, rest = reason.partition(":")
    if colon and (cat := _category_named(head)) is not None:
        return cat, rest.strip()
    return "other", reason


def reason_of(category: str, note: str) -> str:
    """The reason text that :func:`category_of` reads back as ``(category, note)``.

    >>> reason_of("icing", ""), reason_of("other", "Installation"), reason_of("icing", "rime")
    ('icing', 'Installation', 'icing: rime')
    >>> reason_of("other", "Icing"), category_of(reason_of("other", "Icing"))
    ('other: Icing', ('other', 'Icing'))

    A note that a spreadsheet would read as a formula is never written bare: after its
    category, it is text, and reads back whole (no quote to add, nor to remove on import).

    >>> reason_of("other", "=HYPERLINK(A1)"), category_of(reason_of("other", "-1+1"))
    ('other: =HYPERLINK(A1)', ('other', '-1+1'))
    """
    note = note.strip()
    if not note:
        return category
    if category_of(note) == (category, note) and not spreadsheet.is_formula_like(note):
        return note
    return f"{category}: {note}"


# --- planning an import -----------------------------------------------------------------------


@dataclass
class PlannedFlag:
    """A flag a cleaning log asks for; ``existing`` is the id of the live flag that has it already."""

    start: datetime
    end: datetime
    category: str
    note: str
    whole_station: bool
    channel_ids: list[int]
    columns: list[str]
    lines: list[int] = field(default_factory=list)
    sensors: list[str] = field(default_factory=list)
    existing: int | None = None

    @property
    def key(self) -> tuple:
        chans: Any = "station" if self.whole_station else tuple(sorted(self.channel_ids))
        return (chans, self.start, self.end, self.category, self.note)


@dataclass
class Plan:
    """What importing a cleaning log into a station would do."""

    station: str
    fmt: str
    flags: list[PlannedFlag]
    unmatched: dict[str, list[int]]  # sensor -> its lines

    @property
    def new(self) -> list[PlannedFlag]:
        return [f for f in self.flags if f.existing is None]

    @property
    def unchanged(self) -> list[PlannedFlag]:
        return [f for f in self.flags if f.existing is not None]


def interval_lookup(conn: psycopg.Connection, station_id: int) -> Callable[[datetime], int]:
    """``interval_at(t)``: the station's logger interval (s) in force at ``t``; else its first
    logger's; else :data:`DEFAULT_INTERVAL_S`."""
    loggers = flags.fetch_all(conn, "station_loggers", station_id=station_id)

    def interval_at(t: datetime) -> int:
        for lg in loggers:
            if (lg["valid_from"] is None or lg["valid_from"] <= t) and (lg["valid_to"] is None or t < lg["valid_to"]):
                return int(lg["interval_s"])
        return int(loggers[0]["interval_s"]) if loggers else DEFAULT_INTERVAL_S

    return interval_at


def _matches(sensor: str, columns: dict[str, int], fmt: str) -> list[str] | None:
    """Column names a line's sensor covers (None: every channel, a whole-station flag)."""
    if fmt == "brightwind":
        if sensor == ALL_SENSORS:
            return None
        return [c for c in columns if c.startswith(sensor)]
    return [sensor] if sensor in columns else []


def _unquoted(sensor: str) -> str | None:
    """The column name a sensor written spreadsheet-safe stands for (None: it is not one).

    >>> _unquoted("'=cmd"), _unquoted("'Spd80mN"), _unquoted("=cmd")
    ('=cmd', None, None)
    """
    if sensor.startswith(spreadsheet.PREFIX) and spreadsheet.is_formula_like(sensor[1:]):
        return sensor[1:]
    return None


def plan_import(conn: psycopg.Connection, station: str | int, text: str, fmt: str) -> Plan:
    """Read a cleaning log and work out the flags it gives ``station`` (nothing is written).

    Raises :class:`CleaningLogError` listing every bad line.
    """
    st = flags.station_row(conn, station)
    entries = parse(text, fmt, interval_lookup(conn, st["id"]))
    chans = flags.fetch_all(conn, "station_channels", station_id=st["id"])
    by_name = {c["column_name"]: c["id"] for c in chans}
    groups: dict[tuple, PlannedFlag] = {}
    unmatched: dict[str, list[int]] = {}
    for e in entries:
        cols = _matches(e.sensor, by_name, fmt)
        if cols == [] and (bare := _unquoted(e.sensor)) is not None:
            cols = _matches(bare, by_name, fmt)
        if cols == []:
            unmatched.setdefault(e.sensor, []).append(e.line)
            continue
        category, note = category_of(e.reason)
        g = groups.setdefault((e.start, e.end, category, note),
                              PlannedFlag(e.start, e.end, category, note, False, [], []))
        g.lines.append(e.line)
        if e.sensor not in g.sensors:
            g.sensors.append(e.sensor)
        if cols is None:
            g.whole_station = True
        else:
            g.columns = sorted(set(g.columns) | set(cols), key=lambda c: by_name[c])
    for g in groups.values():
        if g.whole_station:
            g.columns = sorted(by_name, key=by_name.__getitem__)
        g.channel_ids = [by_name[c] for c in g.columns]
    live = {_key_of(r): r["id"] for r in flags.list_flags(conn, st["id"])}
    planned = sorted(groups.values(), key=lambda g: (g.start, g.end, g.lines[0]))
    for g in planned:
        g.existing = live.get(g.key)
    return Plan(st["name"], fmt, planned, unmatched)


def _key_of(row: dict[str, Any]) -> tuple:
    chans: Any = "station" if row["whole_station"] else tuple(sorted(row["channel_ids"]))
    return (chans, row["start_time"], row["end_time"], row["category"], row["note"])


def import_flags(conn: psycopg.Connection, station: str, text: str, fmt: str, actor: str) -> dict[str, Any]:
    """Add the flags of a cleaning log (``fmt`` brightwind or windographer) to ``station``.

    Returns ``{"added": n, "unchanged": m, "unmatched": [sensor names], "flag_ids": [new ids]}``.
    Idempotent: flags the station already has live are not added again. A file with any bad
    line adds nothing (:class:`CleaningLogError`). One transaction; audited.
    """
    if not actor.strip():
        raise flags.FlagError("an import needs the user it is done for")
    with conn.transaction():
        st = flags.station_row(conn, station)
        conn.execute(flags.query("lock_station_flags"), {"station_id": st["id"]})
        plan = plan_import(conn, st["id"], text, fmt)
        ids = [flags.add_flag(conn, st["id"], "station" if g.whole_station else g.channel_ids, g.start, g.end,
                              g.category, g.note, actor, "manual") for g in plan.new]
        result = {"added": len(ids), "unchanged": len(plan.unchanged), "unmatched": list(plan.unmatched),
                  "flag_ids": ids}
        db.audit(conn, actor, "import cleaning log", "station", st["id"], format=fmt,
                 **{k: v for k, v in result.items() if k != "flag_ids"})
    log.info("cleaning log (%s) for %s: %d flags added, %d unchanged, unmatched %s",
             fmt, st["name"], result["added"], result["unchanged"], result["unmatched"])
    return result


# --- export -----------------------------------------------------------------------------------


def brightwind_sensors(columns: Iterable[str], all_columns: Iterable[str]) -> tuple[list[str], list[str]]:
    """The sensor prefixes that name ``columns`` for brightwind, and the columns of
    ``all_columns`` they also cover though not asked for (brightwind cannot leave them out).

    >>> every = ["Spd80mS", "Spd80mSStd", "Spd80mSMax", "Dir78mS", "Dir78mSStd"]
    >>> brightwind_sensors(["Spd80mSMax", "Spd80mS", "Spd80mSStd"], every)
    (['Spd80mS'], [])
    >>> brightwind_sensors(["Dir78mS"], every)
    (['Dir78mS'], ['Dir78mSStd'])
    """
    wanted = set(columns)
    everyone = list(all_columns)
    chosen: list[str] = []
    wider: list[str] = []
    for name in sorted(wanted):
        if any(name.startswith(p) for p in chosen):
            continue
        chosen.append(name)
        wider += [c for c in everyone if c.startswith(name) and c not in wanted and c not in wider]
    return chosen, sorted(wider)


def _one_line(text: str) -> str:
    return " ".join(text.replace("\t", " ").splitlines()).strip() if text else ""


def export_flags(conn: psycopg.Connection, station: str, fmt: str, *, warnings: list[str] | None = None) -> str:
    """The station's live flags as a ``brightwind`` cleaning file or a ``windographer`` flag log.

    Times are written in UTC without a zone. Where a format cannot say exactly what a flag
    covers (see the module notes), a sentence is appended to ``warnings`` when given.
    """
    if fmt not in FORMATS:
        raise flags.FlagError(f"format {fmt!r} is not one of: {', '.join(FORMATS)}")
    st = flags.station_row(conn, station)
    rows = flags.list_flags(conn, st["id"])
    everyone = [c["column_name"] for c in flags.fetch_all(conn, "station_channels", station_id=st["id"])]
    out = io.StringIO(newline="")
    quoted: set[str] = set()
    if fmt == "brightwind":
        out.write(spreadsheet.text_line(_BRIGHTWIND_HEADER))
        for r in rows:
            sensors, wider = ([ALL_SENSORS], []) if r["whole_station"] else brightwind_sensors(r["columns"], everyone)
            if wider and warnings is not None:
                warnings.append(f"flag {r['id']} also covers {', '.join(wider)} in the brightwind file "
                                "(its sensor names are column-name prefixes)")
            for s in sensors:
                quoted.update([s] if spreadsheet.is_formula_like(s) else [])
                out.write(spreadsheet.text_line((s, format_time(r["start_time"]), format_time(r["end_time"]),
                                                 reason_of(r["category"], r["note"]))))
    else:
        interval_at = interval_lookup(conn, st["id"])
        out.write("\t".join(_WINDOGRAPHER_HEADER) + "\n")
        for r in rows:
            steps = math.ceil((r["end_time"] - r["start_time"]).total_seconds() / interval_at(r["start_time"]))
            name = spreadsheet.safe_cell(_one_line(reason_of(r["category"], r["note"])))
            for col in everyone if r["whole_station"] else r["columns"]:
                col = spreadsheet.one_line(col)  # a tab or line break would split the line
                quoted.update([col] if spreadsheet.is_formula_like(col) else [])
                out.write("\t".join((spreadsheet.safe_cell(col), name, format_time(r["start_time"]),
                                     format_time(r["end_time"]), str(steps))) + "\n")
            if r["whole_station"] and warnings is not None:
                warnings.append(f"flag {r['id']} is on the whole station: Windographer gets one line per "
                                "current channel")
    if quoted and warnings is not None:
        warnings.append(f"column names {', '.join(map(repr, sorted(quoted)))} start like a spreadsheet formula: "
                        "they are written with a ' in front so that spreadsheets show them as text; "
                        f"{'brightwind' if fmt == 'brightwind' else 'Windographer'} will not match them to the "
                        "columns (StationManager's import does); rename such channels to use the file there")
    return out.getvalue()


def guess_format(text: str) -> str | None:
    """``windographer`` or ``brightwind`` from a log's header line (None: neither).

    >>> guess_format("Data Column\\tFlag Name\\tStart Time\\tEnd Time\\tTime Steps\\n")
    'windographer'
    >>> guess_format("Sensor,Start,Stop\\n"), guess_format("Date,WS\\n")
    ('brightwind', None)
    """
    head = text.lstrip("\ufeff").lstrip().split("\n", 1)[0]
    if "Data Column" in head and "\t" in head:
        return "windographer"
    if "Sensor" in head and "," in head:
        return "brightwind"
    return None
