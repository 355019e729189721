"""Automatic quality checks of met-mast time series, returning QARTOD flags.

Each check is a plain, vectorised function over numpy arrays that returns one ``uint8``
flag per record, as in the IOOS QARTOD manuals (and ``ioos_qc.qartod``):

====  ===============  ===========================================================
flag  name             meaning
====  ===============  ===========================================================
1     GOOD             passed the check
2     NOT_EVALUATED    the check could not judge this record (e.g. no neighbours)
3     SUSPECT          questionable; an analyst should look
4     FAIL             bad data
9     MISSING          the value itself is missing (NaN)
====  ===============  ===========================================================

:func:`periods` turns flags into ``[start, end)`` runs, and :func:`run_station_checks`
runs the checks that fit each channel of a station and returns a short list of
:class:`Finding` s, meant to be stored as *suggested* flags for an analyst to confirm.

Times are ``datetime64`` (naive, one clock for the whole station). The functions that
return periods use the **period-start** convention: pass times that mark the start of
each averaging period (subtract the interval from logger end-stamps first).

>>> v = np.array([5.2, 5.6, 5.6, 5.6, 5.6, 5.6, 5.9, np.nan])
>>> gross_range(v, fail_span=(0, 75), suspect_span=(0, 50))
array([1, 1, 1, 1, 1, 1, 1, 9], dtype=uint8)
>>> flat_line(v, None, tolerance=0.005, suspect_steps=3, fail_steps=5)
array([1, 4, 4, 4, 4, 4, 1, 9], dtype=uint8)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

GOOD, NOT_EVALUATED, SUSPECT, FAIL, MISSING = 1, 2, 3, 4, 9
SEVERITY = {SUSPECT: "suspect", FAIL: "fail"}

Span = tuple[float | None, float | None]


class Ranges(NamedTuple):
    """Plausible spans of one measurement type, in ``unit``; ``None`` = open end."""

    unit: str
    fail: Span  # outside: FAIL (sensor limits, physically impossible)
    suspect: Span  # outside: SUSPECT (possible but rare at a met mast)
    sd_fail: Span = (0.0, None)  # the same for standard-deviation columns
    sd_suspect: Span = (0.0, None)


#: Gross-range spans per measurement type, in the units our channels use. A channel's
#: ``meta`` may override them with ``fail_span`` / ``suspect_span``.
DEFAULT_RANGES: dict[str, Ranges] = {
    "wind_speed": Ranges("m/s", (0.0, 75.0), (0.0, 50.0), (0.0, 20.0), (0.0, 8.0)),
    "vertical_wind_speed": Ranges("m/s", (-30.0, 30.0), (-10.0, 10.0), (0.0, 15.0), (0.0, 5.0)),
    "wind_direction": Ranges("deg", (0.0, 360.0), (0.0, 360.0), (0.0, 180.0), (0.0, 105.0)),
    "air_temperature": Ranges("deg C", (-60.0, 60.0), (-40.0, 45.0), (0.0, 10.0), (0.0, 5.0)),
    "relative_humidity": Ranges("%", (0.0, 105.0), (3.0, 102.0), (0.0, 50.0), (0.0, 20.0)),
    "air_pressure": Ranges("hPa", (500.0, 1100.0), (650.0, 1060.0), (0.0, 20.0), (0.0, 5.0)),
    "battery_voltage": Ranges("V", (9.0, 16.0), (11.5, 15.0)),
    "precipitation": Ranges("mm", (0.0, 100.0), (0.0, 30.0)),  # per 10-minute period
    "solar_radiation": Ranges("W/m2", (-20.0, 1600.0), (-5.0, 1400.0), (0.0, 800.0), (0.0, 600.0)),
}

#: Unit spellings accepted as the unit of :data:`DEFAULT_RANGES` (lower case, no spaces).
#: A channel in another unit (K, mph, kPa ...) gets no default gross-range check.
UNIT_ALIASES: dict[str, set[str]] = {
    "m/s": {"m/s", "ms-1", "ms^-1", "mps", "m/sec"},
    "deg": {"deg", "degrees", "degree", "°", "deg."},
    "deg C": {"degc", "c", "°c", "celsius", "deg_c"},
    "%": {"%", "%rh", "percent", "pct"},
    "hPa": {"hpa", "mbar", "mb", "millibar"},
    "V": {"v", "volts", "volt", "vdc"},
    "mm": {"mm"},
    "W/m2": {"w/m2", "w/m^2", "wm-2", "w/m²", "wm^-2"},
}


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of :func:`run_station_checks`. Durations in seconds are turned into
    record counts with the station's logging interval."""

    ranges: Mapping[str, Ranges] = field(default_factory=lambda: dict(DEFAULT_RANGES))
    flat_tolerance: Mapping[str, float] = field(
        default_factory=lambda: {"wind_speed": 0.005, "wind_direction": 0.05})  # m/s, deg
    flat_suspect_s: float = 3600.0  # unchanged for 1 h: suspect
    flat_fail_s: float = 3 * 3600.0  # unchanged for 3 h: fail
    icing_temp_max: float = 2.0  # deg C; icing needs air at or below this
    icing_sd_max: Mapping[str, float] = field(
        default_factory=lambda: {"wind_speed": 0.05, "wind_direction": 0.1})  # m/s, deg
    icing_suspect_s: float = 3600.0
    icing_fail_s: float = 3 * 3600.0
    pair_window_s: float = 6 * 3600.0  # rolling window of the boom-pair ratio
    pair_threshold: float = 0.1  # relative drift from the long-term ratio (0.1 = 10 %)
    pair_min_speed: float = 3.0  # m/s; both cups above this count towards the ratio
    dead_s: float = 12 * 3600.0  # NaN (or constant) this long: dead sensor
    dead_constant_types: tuple[str, ...] = ("air_temperature", "air_pressure")
    merge_gap_s: float = 3600.0  # flagged runs this close are one finding


@dataclass(frozen=True)
class Finding:
    """A suggested flag: ``rule`` found ``columns`` bad over ``[start, end)``.

    ``start``/``end`` are naive datetimes on the clock of the input times, in the
    period-start convention; ``columns`` is empty for time-axis findings (gaps).
    """

    rule: str  # gross_range, flat_line, icing, pair_ratio, dead, gap, duplicates
    columns: tuple[str, ...]
    start: datetime
    end: datetime
    severity: str  # "suspect" | "fail"
    message: str


# --- helpers ------------------------------------------------------------------------------


def _as_times(times: Any) -> np.ndarray:
    """``times`` as naive ``datetime64[us]`` (aware values are converted to UTC)."""
    tz = getattr(times, "tz", None) or getattr(getattr(times, "dt", None), "tz", None)
    if tz is not None:  # pandas, tz-aware
        times = (times.tz_convert("UTC").tz_localize(None) if hasattr(times, "tz_convert")
                 else times.dt.tz_convert("UTC").dt.tz_localize(None))
    arr = np.asarray(times)
    if arr.dtype == object:
        arr = np.array([x.astimezone(UTC).replace(tzinfo=None) if getattr(x, "tzinfo", None)
                        else x for x in arr.ravel()], dtype="datetime64[us]")
    return arr.astype("datetime64[us]")


def _floats(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


def _td(seconds: float) -> np.timedelta64:
    return np.timedelta64(int(round(seconds * 1e6)), "us")


def _interval_s(t: np.ndarray) -> float | None:
    """The usual step of ``t`` in seconds (median positive difference)."""
    d = np.diff(t) / np.timedelta64(1, "s")
    d = d[d > 0]
    return float(np.median(d)) if d.size else None


def _breaks(times: Any, n: int) -> np.ndarray:
    """``out[i]`` is True when record ``i`` does not follow ``i - 1`` by the usual step."""
    out = np.zeros(n, dtype=bool)
    if times is None or n < 2:
        return out
    t = _as_times(times)
    if t.size != n:
        raise ValueError(f"times has {t.size} entries but values has {n}")
    step = _interval_s(t)
    d = np.diff(t) / np.timedelta64(1, "s")
    out[1:] = (d <= 0) | (d > 1.5 * (step or 0.0))
    return out


def _run_lengths(mask: np.ndarray, breaks: np.ndarray | None = None) -> np.ndarray:
    """Length of the run of True that each element belongs to (0 where False)."""
    m = np.asarray(mask, dtype=bool)
    if not m.size:
        return np.zeros(0, dtype=np.int64)
    first = m.copy()
    first[1:] &= ~m[:-1] | (breaks[1:] if breaks is not None else False)
    run = np.cumsum(first)
    lengths = np.bincount(run[m], minlength=int(run[-1]) + 1)
    return np.where(m, lengths[run], 0)


def _rolling(x: np.ndarray, k: int, op: np.ufunc) -> np.ndarray:
    """``op`` (np.maximum/np.minimum) over each window ``x[j:j+k]``; ``n - k + 1`` values.

    Doubling blocks: about log2(k) passes over the data instead of k.
    """
    out, span = x, 1
    while span * 2 <= k:
        out = op(out[:-span], out[span:])
        span *= 2
    m = x.size - k + 1
    return op(out[:m], out[k - span:k - span + m])


def _covered(ok: np.ndarray, k: int, n: int) -> np.ndarray:
    """Records inside at least one window ``j..j+k-1`` with ``ok[j]``."""
    c = np.concatenate(([0], np.cumsum(ok)))
    i = np.arange(n)
    return c[np.clip(i + 1, 0, ok.size)] - c[np.clip(i - k + 1, 0, ok.size)] > 0


def _segments(breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per record, the first index and one past the last index of its unbroken segment."""
    n = breaks.size
    seg = np.cumsum(breaks)
    starts = np.flatnonzero(np.r_[True, breaks[1:]]) if n else np.zeros(0, np.int64)
    stops = np.r_[starts[1:], n]
    return starts[seg], stops[seg]


# --- single-series checks -------------------------------------------------------------------


def gross_range(values: Any, fail_span: Span, suspect_span: Span | None = None) -> np.ndarray:
    """Flag values outside plausible spans (QARTOD gross range test).

    Parameters
    ----------
    values : array of float, in the unit of the spans (NaN = missing).
    fail_span : (low, high), inclusive; outside is FAIL. ``None`` leaves an end open.
    suspect_span : (low, high), inclusive; outside is SUSPECT. Optional.

    Returns
    -------
    uint8 array: 1 good, 3 suspect, 4 fail, 9 missing.

    Examples
    --------
    Wind speed in m/s against the sensor limit (75) and a storm limit (50):

    >>> gross_range([-0.4, 0.0, 12.3, 55.0, 80.0, np.nan], (0, 75), (0, 50))
    array([4, 1, 1, 3, 4, 9], dtype=uint8)
    >>> gross_range([990.0, 1200.0], (500, None))
    array([1, 1], dtype=uint8)
    """
    x = _floats(values)
    flags = np.full(x.size, GOOD, dtype=np.uint8)
    for span, flag in ((suspect_span, SUSPECT), (fail_span, FAIL)):
        if span is None:
            continue
        lo, hi = (-np.inf if span[0] is None else span[0]), (np.inf if span[1] is None else span[1])
        flags[(x < lo) | (x > hi)] = flag
    flags[np.isnan(x)] = MISSING
    return flags


def flat_line(values: Any, times: Any, tolerance: float, suspect_steps: int,
              fail_steps: int) -> np.ndarray:
    """Flag a stuck sensor: records that stay within ``tolerance`` of each other.

    Every record of a run of at least ``suspect_steps`` consecutive records whose
    max - min <= ``tolerance`` is SUSPECT; of at least ``fail_steps`` records, FAIL. The
    whole run is flagged, not only its tail.

    Parameters
    ----------
    values : array of float (NaN = missing).
    times : datetime64 array or None. With times, a run does not continue across a gap
        (a step longer than 1.5 times the usual step).
    tolerance : largest change that still counts as "no change", in the unit of values.
    suspect_steps, fail_steps : run lengths in records (>= 2, fail_steps >= suspect_steps).

    Returns
    -------
    uint8 array: 1 good, 3 suspect, 4 fail, 9 missing.

    Warnings
    --------
    A NaN ends a run (a stuck sensor with one missing value gives two runs), and a
    sensor that reports only NaN is not "flat": use :func:`dead` for that.

    Examples
    --------
    >>> flat_line([3.1, 4.0, 4.0, 4.001, 4.0, 5.2], None, 0.005, 3, 4)
    array([1, 4, 4, 4, 4, 1], dtype=uint8)
    >>> flat_line([4.0, 4.0, np.nan, 4.0, 4.0], None, 0.0, 3, 4)
    array([1, 1, 9, 1, 1], dtype=uint8)
    >>> t = np.array(["2025-01-01T00:00", "2025-01-01T00:10", "2025-01-01T09:00"], "datetime64[m]")
    >>> flat_line([2.0, 2.0, 2.0], t, 0.0, 3, 3)  # the gap ends the run
    array([1, 1, 1], dtype=uint8)
    """
    if not 2 <= suspect_steps <= fail_steps:
        raise ValueError("need 2 <= suspect_steps <= fail_steps")
    x = _floats(values)
    n = x.size
    flags = np.full(n, GOOD, dtype=np.uint8)
    missing = np.isnan(x)
    x = np.where(np.isfinite(x), x, np.nan)  # inf - inf would warn
    brk = _breaks(times, n)
    cb = np.concatenate(([0], np.cumsum(brk)))
    for k, flag in ((suspect_steps, SUSPECT), (fail_steps, FAIL)):
        if k > n:
            continue
        ok = _rolling(x, k, np.maximum) - _rolling(x, k, np.minimum) <= tolerance
        ok &= cb[k:] - cb[1:n - k + 2] == 0  # no break at records j+1 .. j+k-1
        flags[_covered(ok, k, n)] = flag
    flags[missing] = MISSING
    return flags


def spike(values: Any, suspect_threshold: float, fail_threshold: float) -> np.ndarray:
    """Flag spikes: ``|v[i] - (v[i-1] + v[i+1]) / 2|`` above a threshold (QARTOD spike test).

    Parameters
    ----------
    values : array of float (NaN = missing), evenly spaced.
    suspect_threshold, fail_threshold : largest normal deviation, in the unit of values.

    Returns
    -------
    uint8 array: 1 good, 2 not evaluated (first, last, or a missing neighbour),
    3 suspect, 4 fail, 9 missing.

    Warnings
    --------
    The neighbours of a spike of height h deviate by about h/2: keep the suspect
    threshold above half the fail threshold, or they are flagged too.

    Examples
    --------
    >>> spike([10.0, 10.2, 10.1, 14.0, 10.3, 10.4, np.nan, 10.1], 2.5, 3.5)
    array([2, 1, 1, 4, 1, 2, 9, 2], dtype=uint8)
    >>> spike([], 1.0, 2.0)
    array([], dtype=uint8)
    """
    x = _floats(values)
    flags = np.full(x.size, NOT_EVALUATED, dtype=np.uint8)
    if x.size >= 3:
        with np.errstate(invalid="ignore"):
            dev = np.abs(x[1:-1] - (x[:-2] + x[2:]) / 2)
        inner = np.where(np.isnan(dev), NOT_EVALUATED, GOOD).astype(np.uint8)
        inner[dev > suspect_threshold] = SUSPECT
        inner[dev > fail_threshold] = FAIL
        flags[1:-1] = inner
    flags[np.isnan(x)] = MISSING
    return flags


def rate_of_change(values: Any, times: Any, threshold_per_s: float) -> np.ndarray:
    """Flag changes faster than ``threshold_per_s`` (QARTOD rate of change test).

    Each value is compared with the previous non-missing value.

    Parameters
    ----------
    values : array of float (NaN = missing).
    times : datetime64 array of the same length, increasing.
    threshold_per_s : largest normal rate, in unit of values per second.

    Returns
    -------
    uint8 array: 1 good, 2 not evaluated (no time step), 3 suspect, 9 missing.

    Examples
    --------
    Air temperature (deg C) every 10 minutes, at most 5 K per hour:

    >>> t = np.arange(5) * np.timedelta64(10, "m") + np.datetime64("2025-01-01T00:00")
    >>> rate_of_change([5.0, 5.3, np.nan, 7.5, 7.4], t, 5 / 3600)
    array([1, 1, 9, 3, 1], dtype=uint8)
    """
    x = _floats(values)
    t = _as_times(times)
    if t.size != x.size:
        raise ValueError(f"times has {t.size} entries but values has {x.size}")
    idx = np.flatnonzero(~np.isnan(x))
    flags = np.full(x.size, MISSING, dtype=np.uint8)
    flags[idx] = GOOD
    if idx.size >= 2:
        dt = np.diff(t[idx]) / np.timedelta64(1, "s")
        with np.errstate(invalid="ignore"):
            dv = np.abs(np.diff(x[idx]))
        rate = np.divide(dv, dt, out=np.zeros_like(dv), where=dt > 0)
        sub = np.where(dt > 0, GOOD, NOT_EVALUATED).astype(np.uint8)
        sub[(dt > 0) & (rate > threshold_per_s)] = SUSPECT
        flags[idx[1:]] = sub
    return flags


def dead(values: Any, min_steps: int, *, constant: bool = True) -> np.ndarray:
    """Flag a dead sensor: at least ``min_steps`` consecutive NaN, or identical values.

    Parameters
    ----------
    values : array of float.
    min_steps : run length in records (>= 2) that makes a sensor dead.
    constant : also count runs of one repeated (non-NaN) value; off for quantities that
        stay constant legitimately (rain, night-time radiation).

    Returns
    -------
    uint8 array: 4 fail inside dead runs (also where NaN), 9 other NaN, 1 good.

    Examples
    --------
    >>> dead([1.0, np.nan, np.nan, np.nan, 2.0, np.nan], 3)
    array([1, 4, 4, 4, 1, 9], dtype=uint8)
    >>> dead([7.0, 7.0, 7.0, 7.5], 3), dead([7.0, 7.0, 7.0, 7.5], 3, constant=False)
    (array([4, 4, 4, 1], dtype=uint8), array([1, 1, 1, 1], dtype=uint8))
    """
    if min_steps < 2:
        raise ValueError("min_steps must be at least 2")
    x = _floats(values)
    nan = np.isnan(x)
    same = np.zeros(x.size, dtype=bool)
    same[1:] = nan[1:] & nan[:-1]
    if constant:
        same[1:] |= x[1:] == x[:-1]
    flags = np.where(nan, MISSING, GOOD).astype(np.uint8)
    if x.size:
        group = np.cumsum(~same)
        flags[np.bincount(group)[group] >= min_steps] = FAIL
    return flags


def icing(temperature: Any, wind_speed_sd: Any, wind_speed_avg: Any = None, *,
          temp_max: float = 2.0, sd_max: float = 0.05, min_steps: int = 6,
          fail_steps: int | None = None, tolerance: float = 0.0, times: Any = None
          ) -> np.ndarray:
    """Flag an iced (frozen) wind sensor: cold air and a sensor that stopped moving.

    A record is "frozen" when the sensor's standard deviation is at most ``sd_max``, or
    (with ``wind_speed_avg``) its average equals a neighbour's within ``tolerance``.
    Runs of frozen records with the temperature at or below ``temp_max`` are SUSPECT
    from ``min_steps`` records and FAIL from ``fail_steps`` records (default 3 x min_steps).
    Also works for vanes: pass the direction sd (deg) and average, with ``sd_max`` in deg.

    Parameters
    ----------
    temperature : air temperature, deg C (the sensor nearest the wind sensor's height).
    wind_speed_sd : the wind sensor's 10-min standard deviation (m/s), or None.
    wind_speed_avg : its average (m/s), or None.
    temp_max : deg C. sd_max : m/s. min_steps, fail_steps : records.
    tolerance : m/s; how equal two averages must be to count as a stopped sensor.
    times : datetime64 array or None; a run does not continue across a gap.

    Returns
    -------
    uint8 array: 1 good, 2 not evaluated (temperature missing), 3 suspect, 4 fail,
    9 missing (the sensor's values are missing).

    Examples
    --------
    >>> temp = [-3.0] * 7 + [5.0] * 2
    >>> sd = [0.6, 0.0, 0.01, 0.0, 0.0, 0.02, 0.7, 0.0, 0.0]
    >>> icing(temp, sd, min_steps=3, fail_steps=5)
    array([1, 4, 4, 4, 4, 4, 1, 1, 1], dtype=uint8)
    >>> icing([-5.0, np.nan, -5.0], [0.0, 0.0, np.nan], min_steps=2)
    array([1, 2, 9], dtype=uint8)
    """
    t = _floats(temperature)
    n = t.size
    if wind_speed_sd is None and wind_speed_avg is None:
        raise ValueError("give wind_speed_sd, wind_speed_avg or both")
    frozen = np.zeros(n, dtype=bool)
    sensor_missing = np.ones(n, dtype=bool)
    if wind_speed_sd is not None:
        sd = _floats(wind_speed_sd)
        frozen |= sd <= sd_max
        sensor_missing &= np.isnan(sd)
    if wind_speed_avg is not None:
        avg = _floats(wind_speed_avg)
        with np.errstate(invalid="ignore"):
            eq = np.abs(np.diff(avg)) <= tolerance
        frozen[1:] |= eq
        frozen[:-1] |= eq
        sensor_missing &= np.isnan(avg)
    fail_steps = 3 * min_steps if fail_steps is None else fail_steps
    run = _run_lengths(frozen & (t <= temp_max), _breaks(times, n))
    flags = np.full(n, GOOD, dtype=np.uint8)
    flags[np.isnan(t)] = NOT_EVALUATED
    flags[run >= min_steps] = SUSPECT
    flags[run >= fail_steps] = FAIL
    flags[sensor_missing] = MISSING
    return flags


def pair_ratio_drift(a: Any, b: Any, times: Any, window_steps: int, threshold: float,
                     min_speed: float, *, direction: Any = None, sector_deg: float = 30.0,
                     min_valid: int | None = None) -> np.ndarray:
    """Flag a drifting ratio of two anemometers at the same height (failing or iced cup).

    The ratio ``sum(a) / sum(b)`` over a centred window of ``window_steps`` records
    (counting only records with both above ``min_speed``) is compared with the long-term
    median of ``a / b``; where it differs by more than ``threshold`` (0.1 = 10 %) the
    record is SUSPECT. The check cannot say which cup is wrong: flag both.

    Parameters
    ----------
    a, b : wind speed averages of the two booms, m/s.
    times : datetime64 array or None; windows do not reach across a gap.
    window_steps : records in the rolling window. threshold : relative drift.
    min_speed : m/s; slower records are left out of the ratios.
    direction : wind direction avg (deg), optional: the long-term ratio is then taken per
        ``sector_deg`` sector, so tower shadow in a turning wind is not mistaken for drift.
    min_valid : records a window needs to be judged (default a quarter of the window).

    Returns
    -------
    uint8 array: 1 good, 2 not evaluated (too few valid records), 3 suspect, 9 missing.

    Examples
    --------
    >>> a = np.array([8.0, 9.0, 10.0, 9.0, 8.0, 9.0, 10.0, 9.0])
    >>> b = a * [1, 1, 1, 1, 1, 0.8, 0.8, 0.8]   # cup b slows down from record 5
    >>> pair_ratio_drift(a, b, None, window_steps=3, threshold=0.1, min_speed=3)
    array([1, 1, 1, 1, 1, 3, 3, 3], dtype=uint8)
    >>> pair_ratio_drift([1.0, np.nan], [1.2, 1.0], None, 3, 0.1, 3)
    array([2, 9], dtype=uint8)
    """
    x, y = _floats(a), _floats(b)
    n = x.size
    if y.size != n:
        raise ValueError("a and b must have the same length")
    flags = np.full(n, NOT_EVALUATED, dtype=np.uint8)
    valid = (x > min_speed) & (y > min_speed)
    if valid.any():
        ratio = np.divide(x, y, out=np.ones(n), where=valid)
        overall = np.median(ratio[valid])
        expected = np.full(n, overall)
        if direction is not None:
            d = _floats(direction)
            nsec = int(np.ceil(360 / sector_deg))
            sector = (np.nan_to_num(d, nan=0.0) % 360 // sector_deg).astype(np.intp)
            usable = valid & ~np.isnan(d)
            s, r = sector[usable], ratio[usable]
            table = np.full(nsec + 1, overall)
            for k in np.flatnonzero(np.bincount(s, minlength=nsec) >= 100):
                table[k] = np.median(r[s == k])
            expected = np.where(np.isnan(d), overall, table[sector])
        lo, hi = _segments(_breaks(times, n))
        i = np.arange(n)
        lo = np.maximum(i - window_steps // 2, lo)
        hi = np.minimum(i - window_steps // 2 + window_steps, hi)
        ca = np.concatenate(([0.0], np.cumsum(np.where(valid, x, 0.0))))
        cb = np.concatenate(([0.0], np.cumsum(np.where(valid, y * expected, 0.0))))
        cn = np.concatenate(([0], np.cumsum(valid)))
        enough = cn[hi] - cn[lo] >= (max(1, window_steps // 4) if min_valid is None else min_valid)
        drift = np.zeros(n)
        drift[enough] = np.abs((ca[hi] - ca[lo])[enough] / (cb[hi] - cb[lo])[enough] - 1)
        flags[enough] = GOOD
        flags[enough & (drift > threshold)] = SUSPECT
    flags[np.isnan(x) | np.isnan(y)] = MISSING
    return flags


# --- the time axis --------------------------------------------------------------------------


def gaps(times: Any, interval_s: float, *, start: Any = None, end: Any = None
         ) -> list[tuple[np.datetime64, np.datetime64]]:
    """Periods ``[start, end)`` with no records, in the period-start convention.

    A gap is a step longer than 1.5 intervals. With ``start``/``end`` (the expected
    first record and the end of the last period), missing records at the edges count too.

    Parameters
    ----------
    times : datetime64 array (any order; duplicates are ignored).
    interval_s : logging interval, seconds.

    Returns
    -------
    list of (first missing period start, next present record), as datetime64[us].

    Examples
    --------
    >>> t = np.array(["2025-01-01T00:00", "2025-01-01T00:10", "2025-01-01T00:40"], "datetime64[m]")
    >>> [(str(a), str(b)) for a, b in gaps(t, 600)]
    [('2025-01-01T00:20:00.000000', '2025-01-01T00:40:00.000000')]
    >>> len(gaps(t, 600, start=np.datetime64("2025-01-01T00:00"), end=np.datetime64("2025-01-01T00:50")))
    1
    >>> gaps(t[:0], 600)
    []
    """
    step = _td(interval_s)
    t = _as_times(times)
    if np.any(t[1:] < t[:-1]):
        t = np.sort(t)
    t = t[np.r_[True, t[1:] != t[:-1]]] if t.size else t
    if start is not None:
        t = np.concatenate((_as_times([start]) - step, t))
    if end is not None:
        t = np.concatenate((t, _as_times([end])))
    if t.size < 2:
        return []
    d = np.diff(t)
    at = np.flatnonzero(d > _td(1.5 * interval_s))
    return [(t[i] + step, t[i + 1]) for i in at]


def duplicates(times: Any) -> np.ndarray:
    """Indices of records whose timestamp already occurred earlier in ``times``.

    >>> t = np.array(["2025-01-01T00:10", "2025-01-01T00:20", "2025-01-01T00:10",
    ...               "2025-01-01T00:10"], "datetime64[m]")
    >>> duplicates(t)
    array([2, 3])
    >>> duplicates(t[:0]).size
    0
    """
    t = _as_times(times)
    order = np.argsort(t, kind="stable")
    s = t[order]
    repeated = np.zeros(t.size, dtype=bool)
    repeated[1:] = s[1:] == s[:-1]
    return np.sort(order[repeated])


def periods(times: Any, flags: Any, interval_s: float, min_flag: int = SUSPECT,
            merge_gap_steps: int = 0) -> list[tuple[np.datetime64, np.datetime64, int]]:
    """Runs of flagged records as ``(start, end, worst_flag)``, start inclusive, end exclusive.

    ``times`` must mark the START of each period (``end`` = last flagged start + interval).
    A record is flagged when its flag is at least ``min_flag``; MISSING (9) records are
    never flagged (use :func:`dead` for missing data). Runs separated by at most
    ``merge_gap_steps`` intervals are merged.

    Parameters
    ----------
    times : datetime64 array, increasing. flags : QARTOD flags, same length.
    interval_s : logging interval, seconds. min_flag : 3 (suspect) or 4 (fail).
    merge_gap_steps : records of unflagged time allowed inside one period.

    Examples
    --------
    >>> t = np.datetime64("2025-01-01T00:00") + np.arange(6) * np.timedelta64(10, "m")
    >>> [(str(a)[11:16], str(b)[11:16], w) for a, b, w in periods(t, [1, 3, 4, 1, 3, 9], 600)]
    [('00:10', '00:30', 4), ('00:40', '00:50', 3)]
    >>> len(periods(t, [1, 3, 4, 1, 3, 9], 600, merge_gap_steps=1)), periods(t, [1] * 6, 600)
    (1, [])
    """
    t = _as_times(times)
    f = np.asarray(flags).ravel()
    sel = np.flatnonzero((f >= min_flag) & (f != MISSING))
    if not sel.size:
        return []
    step = _td(interval_s)
    starts = t[sel]
    ends = starts + step
    new = np.ones(sel.size, dtype=bool)
    new[1:] = starts[1:] - ends[:-1] > merge_gap_steps * step
    first = np.flatnonzero(new)
    last = np.r_[first[1:], sel.size] - 1
    worst = np.maximum.reduceat(f[sel], first)
    return [(starts[a], ends[b], int(w)) for a, b, w in zip(first, last, worst)]


# --- a whole station --------------------------------------------------------------------------

RULE_TEXT = {
    "gross_range": "values outside the plausible range",
    "flat_line": "values unchanged (stuck sensor)",
    "icing": "sensor frozen in cold air (icing)",
    "pair_ratio": "ratio of the two anemometers at this height drifted from its long-term value",
    "dead": "sensor reports no data or one constant value",
    "gap": "no records",
    "duplicates": "records with a repeated timestamp",
}


def run_station_checks(times: Any, columns: Mapping[str, Any], meta: Mapping[str, Mapping],
                       *, interval_s: float | None = None, config: CheckConfig | None = None
                       ) -> list[Finding]:
    """Run the checks that fit each channel of one station; return merged findings.

    Parameters
    ----------
    times : datetime64 array, the START of each period (any order; duplicates reported).
    columns : column name -> values (float, NaN = missing), each as long as ``times``.
    meta : column name -> ``{"measurement_type", "statistic", "height_m", "orientation"}``
        as known, optionally ``unit``, ``fail_span``, ``suspect_span``. Columns without
        meta only get the dead-sensor check.
    interval_s : logging interval; default: the usual step of ``times``.
    config : thresholds (:class:`CheckConfig`).

    Checks: gross range on every typed column; flat line on wind speed and direction
    averages; icing on each anemometer and vane (with the air temperature nearest its
    height); the ratio of each same-height anemometer pair; dead sensors (NaN, or a constant
    for ``dead_constant_types``); gaps and duplicate timestamps. Sensor-level findings name
    all columns of the sensor (same type, height and orientation). Runs closer than
    ``merge_gap_s`` are merged, and findings of one rule over about the same period are
    merged across columns, so one fault gives one or a few findings.

    Returns
    -------
    list of :class:`Finding`, sorted by start then rule.
    """
    cfg = config or CheckConfig()
    began = time.perf_counter()
    t = _as_times(times)
    data = {name: _floats(v) for name, v in columns.items()}
    for name, v in data.items():
        if v.size != t.size:
            raise ValueError(f"column {name} has {v.size} values but times has {t.size}")
    if not t.size:
        return []
    if np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        t = t[order]
        data = {k: v[order] for k, v in data.items()}
    step_s = float(interval_s or _interval_s(t) or 600.0)
    found: list[Finding] = []

    def add(rule: str, cols: tuple[str, ...], flags: np.ndarray) -> None:
        gap_steps = int(cfg.merge_gap_s // step_s)
        for a, b, worst in periods(t, flags, step_s, merge_gap_steps=gap_steps):
            found.append(Finding(rule, cols, _dt(a), _dt(b), SEVERITY[min(worst, FAIL)], ""))

    def steps(seconds: float) -> int:
        return max(2, int(round(seconds / step_s)))

    dup = duplicates(t)
    if dup.size:
        flags = np.full(t.size, GOOD, dtype=np.uint8)
        flags[dup] = SUSPECT
        add("duplicates", (), flags)
        keep = np.ones(t.size, dtype=bool)
        keep[dup] = False
        t = t[keep]
        data = {k: v[keep] for k, v in data.items()}
    for a, b in gaps(t, step_s):
        found.append(Finding("gap", (), _dt(a), _dt(b), "fail", ""))

    info = {name: _meta(meta.get(name) or {}) for name in data}
    sensors: dict[tuple, list[str]] = {}
    for name, m in info.items():
        if m["type"]:
            sensors.setdefault(m["sensor"], []).append(name)

    def sensor_cols(name: str) -> tuple[str, ...]:
        return tuple(sensors.get(info[name]["sensor"], [name]))

    def find(mtype: str, stat: str) -> list[str]:
        return [c for c, m in info.items() if m["type"] == mtype and m["stat"] == stat]

    # gross range
    for name, m in info.items():
        spans = _spans(m, meta.get(name) or {}, cfg)
        if spans is not None:
            add("gross_range", (name,), gross_range(data[name], *spans))
    # flat line
    for mtype, tol in cfg.flat_tolerance.items():
        for name in find(mtype, "avg"):
            add("flat_line", sensor_cols(name), flat_line(
                data[name], t, tol, steps(cfg.flat_suspect_s), steps(cfg.flat_fail_s)))
    # dead sensors
    for name, m in info.items():
        constant = m["type"] in cfg.dead_constant_types and m["stat"] == "avg"
        flags = dead(data[name], steps(cfg.dead_s), constant=constant)
        add("dead", sensor_cols(name) if constant else (name,), flags)
    # icing
    temps = find("air_temperature", "avg")
    if temps:
        for mtype, sd_max in cfg.icing_sd_max.items():
            for name in find(mtype, "avg"):
                sd = next((c for c in sensor_cols(name) if info[c]["stat"] == "sd"), None)
                temp = min(temps, key=lambda c: abs((info[c]["height"] or 0) - (info[name]["height"] or 0)))
                flags = icing(data[temp], data[sd] if sd else None, data[name], sd_max=sd_max,
                              min_steps=steps(cfg.icing_suspect_s),
                              fail_steps=steps(cfg.icing_fail_s), times=t)
                add("icing", sensor_cols(name), flags)
    # boom pairs
    vanes = find("wind_direction", "avg")
    by_height: dict[float, list[str]] = {}
    for name in find("wind_speed", "avg"):
        if info[name]["height"] is not None:
            by_height.setdefault(info[name]["height"], []).append(name)
    for height, names in by_height.items():
        vane = min(vanes, key=lambda c: abs((info[c]["height"] or 0) - height)) if vanes else None
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if info[a]["orientation"] == info[b]["orientation"]:
                    continue
                flags = pair_ratio_drift(data[a], data[b], t, steps(cfg.pair_window_s),
                                         cfg.pair_threshold, cfg.pair_min_speed,
                                         direction=data[vane] if vane else None)
                add("pair_ratio", sensor_cols(a) + sensor_cols(b), flags)

    merged = _merge(found, cfg.merge_gap_s)
    log.info("QC: %d findings (%d before merging) for %d columns x %d records in %.2f s",
             len(merged), len(found), len(data), t.size, time.perf_counter() - began)
    return merged


def _dt(value: np.datetime64) -> datetime:
    return value.astype("datetime64[us]").item()


def _meta(m: Mapping) -> dict[str, Any]:
    mtype = m.get("measurement_type")
    mtype = None if mtype in (None, "", "unknown", "other") else str(mtype)
    height = m.get("height_m")
    height = None if height is None else float(height)
    orient = m.get("orientation", m.get("orientation_deg"))
    return {"type": mtype, "stat": str(m.get("statistic") or "unknown").lower(),
            "height": height, "orientation": orient, "sensor": (mtype, height, orient)}


def _spans(m: dict[str, Any], raw: Mapping, cfg: CheckConfig) -> tuple[Span, Span | None] | None:
    """(fail, suspect) spans of a column, or None when it gets no gross-range check."""
    if "fail_span" in raw or "suspect_span" in raw:
        return raw.get("fail_span") or (None, None), raw.get("suspect_span")
    r = cfg.ranges.get(m["type"] or "")
    if r is None or m["stat"] in ("count", "ti", "ti30sec", "availability", "quality", "text"):
        return None
    unit = str(raw.get("unit") or "").lower().replace(" ", "")
    if unit and unit not in UNIT_ALIASES.get(r.unit, {r.unit.lower()}):
        return None
    return (r.sd_fail, r.sd_suspect) if m["stat"] == "sd" else (r.fail, r.suspect)


def _merge(found: list[Finding], gap_s: float) -> list[Finding]:
    """Merge findings of one rule that touch (same columns) or cover about the same period.

    Gaps are kept apart: a lone record between two gaps is data, not "no records".
    """
    gap = timedelta(seconds=gap_s)
    out: list[Finding] = [f for f in found if f.rule == "gap"]
    for rule in dict.fromkeys(f.rule for f in found if f.rule != "gap"):
        active: list[Finding] = []
        for f in sorted((f for f in found if f.rule == rule), key=lambda f: (f.start, f.end)):
            for i, m in enumerate(active):
                same = f.columns == m.columns and f.start <= m.end + gap
                alike = abs(f.start - m.start) <= gap and abs(f.end - m.end) <= gap
                if same or alike:
                    cols = tuple(dict.fromkeys(m.columns + f.columns))
                    sev = "fail" if "fail" in (m.severity, f.severity) else "suspect"
                    active[i] = replace(m, columns=cols, end=max(m.end, f.end), severity=sev)
                    break
            else:
                active.append(f)
            done = [m for m in active if m.end + gap < f.start]
            out += done
            active = [m for m in active if m not in done]
        out += active
    for i, f in enumerate(out):
        out[i] = replace(f, message=message(f))
    return sorted(out, key=lambda f: (f.start, f.rule, f.columns))


def message(f: Finding) -> str:
    hours = (f.end - f.start).total_seconds() / 3600
    span = f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
    cols = ", ".join(f.columns[:6]) + (f" and {len(f.columns) - 6} more" if len(f.columns) > 6 else "")
    where = f" in {cols}" if f.columns else ""
    return f"{RULE_TEXT.get(f.rule, f.rule)}{where} for {span} ({f.severity})"
