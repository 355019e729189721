"""What StationManager accepts from people and documents: physical bounds and safe JSON.

Every value a user types or a document brings (a Task 43 import, a file mapping, a
calibration, a flag) is checked here before it reaches the database, so that a mistake or
a hostile document gives a clear :class:`~core.errors.InvalidValue` naming the value (and
its JSON path), never a traceback or a raw database error.

The bounds are what is physically possible, with room to spare:

========================  =============================================================
UTC offset                −12 h … +14 h, in whole minutes (every zone in use today)
latitude / longitude      −90 … 90 / −180 … 180 degrees
height                    −1000 … 9000 m (depths of water sensors on floating lidars;
                          heights above sea level of the highest sites)
boom orientation          0 … 360 degrees
slope / offset            finite, at most 1e6 in size (a reading times 1e300 overflows)
averaging period          more than 0, at most 1 day
date and time             from 1970-01-01 to 2100-01-01 (Task 43's "still in force")
names / texts             at most 200 / 10 000 characters
JSON                      at most 64 levels deep; no ``NaN`` or ``Infinity``
========================  =============================================================

>>> check_range(52.1, "latitude", *LATITUDE)
52.1
>>> try:
...     check_range(float("nan"), "slope", *MAGNITUDE)
... except InvalidValue as exc:
...     print(exc)
slope: nan is not a finite number
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import InvalidValue

UTC_OFFSET_MINUTES = (-12 * 60, 14 * 60)
LATITUDE = (-90.0, 90.0)
LONGITUDE = (-180.0, 180.0)
HEIGHT_M = (-1000.0, 9000.0)
ORIENTATION_DEG = (0.0, 360.0)
MAGNITUDE = (-1e6, 1e6)
AVERAGING_MINUTES = (0.0, 1440.0)  # lower bound exclusive
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
NAME_MAX = 200
TEXT_MAX = 10_000
JSON_DEPTH_MAX = 64


def check_range(value: Any, what: str, lo: float, hi: float, *, path: str | None = None) -> float:
    """``value`` as a float, if it is a finite number within ``[lo, hi]``.

    >>> check_range(360, "boom orientation", *ORIENTATION_DEG)
    360.0
    >>> try:
    ...     check_range(400, "boom orientation", *ORIENTATION_DEG, path="$.x")
    ... except InvalidValue as exc:
    ...     print(exc)
    $.x: boom orientation 400 is outside 0 … 360
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{what}: {value!r} is not a number", path=path)
    if not math.isfinite(value):
        raise InvalidValue(f"{what}: {value} is not a finite number", path=path)
    if not lo <= value <= hi:
        raise InvalidValue(f"{what} {value:g} is outside {lo:g} … {hi:g}", path=path)
    return float(value)


def check_utc_offset_minutes(value: Any, *, path: str | None = None) -> int:
    """A UTC offset in whole minutes, −720 … +840.

    >>> check_utc_offset_minutes(-330)
    -330
    >>> try:
    ...     check_utc_offset_minutes(99999 * 60)
    ... except InvalidValue as exc:
    ...     print(exc)
    UTC offset 5999940 minutes is outside -720 … 840 minutes (−12 h … +14 h)
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"UTC offset: {value!r} is not a whole number of minutes", path=path)
    lo, hi = UTC_OFFSET_MINUTES
    if not lo <= value <= hi:
        raise InvalidValue(f"UTC offset {value} minutes is outside {lo} … {hi} minutes (−12 h … +14 h)", path=path)
    return value


def check_time(value: datetime, what: str, *, path: str | None = None) -> datetime:
    """``value`` (naive = UTC) if it lies in 1970-01-01 … 2100-01-01.

    >>> check_time(datetime(2024, 5, 1), "start").year
    2024
    >>> try:
    ...     check_time(datetime(1, 1, 1), "start")
    ... except InvalidValue as exc:
    ...     print(exc)
    start 0001-01-01 00:00 is outside 1970-01-01 … 2100-01-01
    """
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if not EARLIEST <= aware <= LATEST:
        raise InvalidValue(f"{what} {value.isoformat(' ', 'minutes')[:16]} is outside {EARLIEST:%Y-%m-%d} … {LATEST:%Y-%m-%d}",
                           path=path)
    return value


def check_text(value: str, what: str, limit: int = NAME_MAX, *, path: str | None = None) -> str:
    """``value`` if it has at most ``limit`` characters and no control characters (but tab and line ends).

    >>> check_text("Ballymore Hill", "station name")
    'Ballymore Hill'
    >>> try:
    ...     check_text("x" * 201, "station name")
    ... except InvalidValue as exc:
    ...     print(exc)
    station name: 201 characters, more than the 200 allowed
    """
    if not isinstance(value, str):
        raise InvalidValue(f"{what}: {value!r} is not a text", path=path)
    if len(value) > limit:
        raise InvalidValue(f"{what}: {len(value)} characters, more than the {limit} allowed", path=path)
    if _CONTROL.search(value):
        raise InvalidValue(f"{what}: contains a control character", path=path)
    return value


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, new line and carriage return pass


def check_timezone(name: Any) -> str:
    """An IANA time zone name that this machine knows.

    >>> check_timezone("Europe/Dublin")
    'Europe/Dublin'
    >>> try:
    ...     check_timezone("../../etc/passwd")
    ... except InvalidValue as exc:
    ...     print(exc)
    time zone '../../etc/passwd' is unknown; use an IANA name such as UTC, Europe/Berlin or Etc/GMT-1
    """
    message = f"time zone {name!r} is unknown; use an IANA name such as UTC, Europe/Berlin or Etc/GMT-1"
    if not isinstance(name, str) or not name or len(name) > 64:
        raise InvalidValue(message)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidValue(message) from exc
    return name


# --- JSON --------------------------------------------------------------------------------


class _NotANumber:
    """Stands for a ``NaN``/``Infinity`` literal or an out-of-range number while parsing, so
    that :func:`json_problems` can name its JSON path."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _float(text: str) -> float | _NotANumber:
    value = float(text)
    return value if math.isfinite(value) else _NotANumber(text)


def _int(text: str) -> int | _NotANumber:
    return int(text) if len(text.lstrip("-")) <= 30 else _NotANumber(text)


# a string (with its escapes) or a bracket; strings are skipped so their brackets do not count
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


def json_depth(text: str, limit: int = JSON_DEPTH_MAX) -> int | None:
    """The offset at which ``text`` nests arrays/objects deeper than ``limit``, or None.

    >>> json_depth('{"a": [[1]], "b": "[[[["}', limit=3), json_depth("[" * 5, limit=3)
    (None, 3)
    """
    depth = 0
    for m in _TOKEN.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > limit:
                return m.start()
        elif c in "]}":
            depth -= 1
    return None


def load_json(data: bytes | str) -> Any:
    """Parse JSON from people or uploads, safely: nested at most :data:`JSON_DEPTH_MAX`
    deep, and every value checked by :func:`json_problems`.

    Raises :class:`InvalidValue` (path ``$`` for the document as a whole, or the path of
    the value) — never ``RecursionError``, whatever the nesting.

    >>> load_json('{"a": [1, 2.5, "x"]}')
    {'a': [1, 2.5, 'x']}
    >>> for bad in ('{"a": [1, NaN]}', '{"a": 1e999}', '[' * 100_000, '{"a": '):
    ...     try:
    ...         load_json(bad)
    ...     except InvalidValue as exc:
    ...         print(exc)
    $.a[1]: NaN is not a number JSON allows (no NaN or Infinity)
    $.a: 1e999 is not a number JSON allows (no NaN or Infinity)
    $: nested more than 64 levels deep (at line 1, column 65)
    $: not valid JSON: Expecting value (line 1, column 7)
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidValue(f"not UTF-8 text: {exc}", path="$") from exc
    elif data.startswith("\ufeff"):
        data = data[1:]
    at = json_depth(data)
    if at is not None:
        line = data.count("\n", 0, at) + 1
        col = at - (data.rfind("\n", 0, at) + 1) + 1
        raise InvalidValue(f"nested more than {JSON_DEPTH_MAX} levels deep (at line {line}, column {col})", path="$")
    try:
        doc = json.loads(data, parse_constant=_NotANumber, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise InvalidValue(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", path="$") from exc
    except (RecursionError, ValueError) as exc:  # defence in depth: the depth was checked above
        raise InvalidValue(f"not valid JSON: {exc}", path="$") from exc
    problems = list(json_problems(doc))
    if problems:
        path, reason = problems[0].split(": ", 1)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidValue(reason + more, path=path, problems=problems)
    return doc


def json_problems(doc: Any, *, text_max: int = TEXT_MAX) -> Iterator[str]:
    """``"path: reason"`` for every value of a parsed document that StationManager refuses:
    ``NaN``/``Infinity`` (or a number too large to be one), a text longer than ``text_max``,
    nesting deeper than :data:`JSON_DEPTH_MAX`. Iterative: any depth is safe.

    >>> list(json_problems({"a": [1.0, float("inf")], "b": "x" * 20}, text_max=10))
    ['$.a[1]: inf is not a number JSON allows (no NaN or Infinity)', '$.b: a text of 20 characters, more than the 10 allowed']

    """
    stack: list[tuple[Any, str, int]] = [(doc, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= JSON_DEPTH_MAX:
                yield f"{path}: nested more than {JSON_DEPTH_MAX} levels deep"
                continue
            items = value.items() if isinstance(value, dict) else enumerate(value)
            children = [(v, _child(path, k), depth + 1) for k, v in items]
            stack.extend(reversed(children))
        elif isinstance(value, _NotANumber) and value.text.lstrip("-").isdigit():
            yield f"{path}: a whole number of {len(value.text.lstrip('-'))} digits is too large"
        elif isinstance(value, _NotANumber) or (isinstance(value, float) and not math.isfinite(value)):
            yield f"{path}: {value!r} is not a number JSON allows (no NaN or Infinity)"
        elif isinstance(value, str) and len(value) > text_max:
            yield f"{path}: a text of {len(value):,} characters, more than the {text_max:,} allowed"


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if _IDENT.match(str(key)) else f"{path}[{json.dumps(str(key))[:60]}]"
