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
    pair_threshold: float = 0.02  # smallest relative drift of a boom pair's ratio (2 %)
    pair_spread_k: float = 5.0  # ... or this many times the pair's own spread (scaled MAD), if more
    pair_max_threshold: float = 0.1  # ... but never more than 10 %
    pair_min_speed: float = 4.0  # m/s; both cups above this count towards the ratio
    pair_reference_days: int = 14  # good days before a day that make its reference ratio
    pair_window_s: float = 12 * 3600.0  # rolling ratio that places a drift's edges
    pair_wake_deg: float = 30.0  # leave out records with the wind this close to behind a boom
    spike: Mapping[str, tuple[float, float]] = field(default_factory=lambda: {
        "wind_speed": (8.0, 12.0),  # m/s, (suspect, fail) deviation from the neighbours' mean
        "wind_direction": (120.0, 150.0),  # deg, circular; neighbours within 120 deg of each other
        "air_temperature": (3.0, 5.0),  # deg C
        "relative_humidity": (15.0, 25.0),  # %
        "air_pressure": (3.0, 5.0),  # hPa
        "vertical_wind_speed": (4.0, 6.0),  # m/s
    })
    spike_noise_k: float = 8.0  # ... and never below 8 x the column's median deviation (noise, not spikes)
    spike_min_wind: float = 3.0  # m/s; wind direction spikes are judged only in a wind this strong
    rate_of_change: Mapping[str, float] = field(default_factory=lambda: {
        "wind_speed": 12.0,  # m/s per 10 minutes between two records of averages
        "air_temperature": 5.0,  # deg C per 10 minutes
        "relative_humidity": 30.0,  # % per 10 minutes
        "air_pressure": 5.0,  # hPa per 10 minutes
    })
    dead_s: float = 12 * 3600.0  # NaN (or constant) this long: dead sensor
    dead_constant_types: tuple[str, ...] = ("air_temperature", "air_pressure")
    event_gap_s: float = 6 * 3600.0  # fragments of one event on one sensor this close are one finding
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


_last_breaks: list = [None, None]  # (times array, its breaks): the checks of one station share them


def _breaks(times: Any, n: int) -> np.ndarray:
    """``out[i]`` is True when record ``i`` does not follow ``i - 1`` by the usual step.

    The result for the last ``times`` array seen is kept (the checks of a station all ask for
    the same one); callers must not change the array in place between calls, nor the result.
    """
    out = np.zeros(n, dtype=bool)
    if times is None or n < 2:
        return out
    if _last_breaks[0] is times and _last_breaks[1].size == n:
        return _last_breaks[1]
    t = _as_times(times)
    if t.size != n:
        raise ValueError(f"times has {t.size} entries but values has {n}")
    step = _interval_s(t)
    d = np.diff(t) / np.timedelta64(1, "s")
    out[1:] = (d <= 0) | (d > 1.5 * (step or 0.0))
    if isinstance(times, np.ndarray):
        out.flags.writeable = False
        _last_breaks[:] = [times, out]
    return out


def _median(values: list[float]) -> float:
    """The median of a short list of floats (faster than numpy for a handful of values)."""
    v = sorted(values)
    k = len(v)
    return v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2


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


def spike(values: Any, suspect_threshold: float, fail_threshold: float, *, circular: bool = False,
          peaks_only: bool = False, noise_k: float | None = None) -> np.ndarray:
    """Flag spikes: ``|v[i] - (v[i-1] + v[i+1]) / 2|`` above a threshold (QARTOD spike test).

    Parameters
    ----------
    values : array of float (NaN = missing), evenly spaced.
    suspect_threshold, fail_threshold : largest normal deviation, in the unit of values.
    circular : values are angles in degrees (wind direction): differences wrap at 360, and
        a record is judged only when its neighbours agree within ``suspect_threshold``
        (in a turning light wind the neighbours of a record need not agree at all).
    peaks_only : flag a record only where its deviation is at least its neighbours' (a spike
        of height h makes its neighbours deviate by h/2; this leaves them out) and, for
        values that do not wrap, more than its neighbours differ (a step is not a spike).
    noise_k : raise both thresholds to ``noise_k`` times the series' median deviation when
        that is more (a series noisy all along is not spiky).

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
    >>> spike([10.0, 16.0, 10.0, 11.0], 2.5, 5.0, peaks_only=True)
    array([2, 4, 1, 2], dtype=uint8)
    >>> spike([10.0, 10.0, 16.0, 16.0], 2.5, 5.0, peaks_only=True)  # a step
    array([2, 1, 1, 2], dtype=uint8)
    >>> noisy = [10.0, 14.0, 10.0, 14.0, 10.0, 14.0]
    >>> spike(noisy, 2.5, 5.0), spike(noisy, 2.5, 5.0, noise_k=2.0)
    (array([2, 3, 3, 3, 3, 2], dtype=uint8), array([2, 1, 1, 1, 1, 2], dtype=uint8))
    >>> spike([350.0, 170.0, 10.0, 20.0, 15.0], 60, 120, circular=True)  # 350 and 10 agree
    array([2, 4, 1, 1, 2], dtype=uint8)
    """
    x = _floats(values)
    flags = np.full(x.size, NOT_EVALUATED, dtype=np.uint8)
    if x.size >= 3:
        with np.errstate(invalid="ignore"):
            if circular:
                spread = (x[2:] - x[:-2] + 180.0) % 360.0 - 180.0
                dev = np.abs((x[1:-1] - (x[:-2] + spread / 2) + 180.0) % 360.0 - 180.0)
                dev[np.abs(spread) > suspect_threshold] = 0.0
            else:
                dev = np.abs(x[1:-1] - (x[:-2] + x[2:]) / 2)
        inner = np.where(np.isnan(dev), NOT_EVALUATED, GOOD).astype(np.uint8)
        high = np.nan_to_num(dev, nan=0.0)
        if noise_k is not None and np.isfinite(dev).any():
            noise = noise_k * float(np.median(dev[np.isfinite(dev)]))
            suspect_threshold, fail_threshold = max(suspect_threshold, noise), max(fail_threshold, noise)
        if peaks_only:
            peak = np.ones(high.size, dtype=bool)
            peak[1:] &= high[1:] >= high[:-1]
            peak[:-1] &= high[:-1] >= high[1:]
            if not circular:  # a step is not a spike: its neighbours differ by twice its deviation
                with np.errstate(invalid="ignore"):
                    peak &= ~(np.abs(x[2:] - x[:-2]) >= high)
            high = np.where(peak, high, 0.0)
        inner[high > suspect_threshold] = SUSPECT
        inner[high > fail_threshold] = FAIL
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


def pair_ratio_drift(a: Any, b: Any, times: Any, threshold: float = 0.02, min_speed: float = 4.0, *,
                     exclude: Any = None, reference_days: int = 14, spread_k: float = 5.0,
                     max_threshold: float = 0.1, window_steps: int = 72, min_day_records: int = 18,
                     confirm_days: int = 2, new_normal_days: int = 45) -> np.ndarray:
    """Flag a drifting ratio of two anemometers at the same height (a cup slowing down).

    The ratio ``a / b`` (records with both cups above ``min_speed`` and not in ``exclude``,
    e.g. a cup in the mast's wake) is summed up per UTC day as its median. Days are judged in
    order against a **preceding** reference: the median of the last ``reference_days`` good
    days (a day that deviates is not added to it, so a drift cannot become its own baseline).
    A day deviates when its median differs from the reference by more than the pair's own
    spread (``spread_k`` x the scaled MAD of the reference days, or of the day-to-day changes
    of the whole series if more), at least ``threshold`` and at most ``max_threshold``. ``confirm_days`` deviating days in a row are a drift; its edges are
    then placed to the record with a centred ``window_steps`` rolling ratio (half the
    threshold). The check cannot say which cup is wrong (see :func:`run_station_checks`).

    Parameters
    ----------
    a, b : wind speed averages of the two booms, m/s (NaN = missing or masked).
    times : datetime64 array, increasing (period starts).
    threshold : the smallest relative deviation that counts (0.02 = 2 %).
    min_speed : m/s; slower records are left out (cups disagree more in light wind).
    exclude : bool array, records to leave out (wake sectors), optional.
    reference_days : good days in the reference. The first days of the data seed it.
    new_normal_days : after this many deviating days in a row the ratio is taken as the new
        normal (a replaced or recalibrated cup) and the reference starts again.

    Returns
    -------
    uint8 array: 1 good, 2 not evaluated (no usable ratio that day), 3 suspect (drift),
    9 missing.

    Examples
    --------
    Cup b reads 5 % low from day 20 of 30:

    >>> t = np.datetime64("2025-01-01") + np.arange(30 * 144) * np.timedelta64(10, "m")
    >>> a = 8 + 3 * np.sin(np.arange(t.size) / 40)
    >>> b = a * np.where(np.arange(t.size) >= 20 * 144, 0.95, 1.0) * (1 + 0.004 * np.cos(np.arange(t.size)))
    >>> flags = pair_ratio_drift(a, b, t)
    >>> str(t[np.argmax(flags == SUSPECT)]), bool((flags[20 * 144 + 12:] == SUSPECT).all())
    ('2025-01-21T01:10', True)
    >>> bool((flags[:20 * 144 - 36] == GOOD).all())
    True
    """
    x, y = _floats(a), _floats(b)
    n = x.size
    if y.size != n:
        raise ValueError("a and b must have the same length")
    flags = np.full(n, NOT_EVALUATED, dtype=np.uint8)
    missing = np.isnan(x) | np.isnan(y)
    if not n:
        return flags
    t = _as_times(times)
    if t.size != n:
        raise ValueError(f"times has {t.size} entries but values has {n}")
    with np.errstate(invalid="ignore"):
        valid = (x > min_speed) & (y > min_speed)
    if exclude is not None:
        valid &= ~np.asarray(exclude, dtype=bool)
    ratio = np.divide(x, y, out=np.ones(n), where=valid)
    day = ((t - t[0].astype("datetime64[D]")) // np.timedelta64(1, "D")).astype(np.int64)
    nd = int(day[-1]) + 1
    idx = np.flatnonzero(valid)
    counts = np.bincount(day[idx], minlength=nd)
    order = np.lexsort((ratio[idx], day[idx]))
    rs = ratio[idx][order]
    first = np.r_[0, np.cumsum(counts)[:-1]]
    has = counts > 0
    med = np.full(nd, np.nan)
    med[has] = (rs[first[has] + (counts[has] - 1) // 2] + rs[first[has] + counts[has] // 2]) / 2
    usable = np.flatnonzero(counts >= min_day_records)
    base = np.full(nd, np.nan)
    thr = np.full(nd, np.nan)
    bad = np.zeros(nd, dtype=bool)
    medians = med.tolist()  # plain floats: the walk below is a Python loop over days
    ref = [medians[d] for d in usable[:min(5, reference_days)]]
    # the day-to-day scatter of the whole series, from differences of successive days: a
    # drift's step is one difference among many, so it barely moves this
    steps_ = np.abs(np.diff(med[usable]))
    scatter = 1.4826 * float(np.median(steps_)) / np.sqrt(2) if steps_.size >= 5 else 0.0
    streak: list[int] = []
    for d in usable.tolist():
        r = ref[-reference_days:]
        m = _median(r)
        spread = max(1.4826 * _median([abs(v - m) for v in r]), scatter / m)
        th = min(max(threshold, spread_k * spread), max_threshold)
        base[d], thr[d] = m, th
        if abs(medians[d] / m - 1) > th:
            bad[d] = True
            streak.append(d)
            if len(streak) >= new_normal_days:  # the new normal: start the reference again
                ref, streak = [medians[k] for k in streak[-5:]], []
        else:
            ref.append(medians[d])
            streak = []
    judged = np.zeros(nd, dtype=bool)
    judged[usable] = True
    flags[judged[day]] = GOOD
    # runs of deviating days (days without a usable ratio neither break nor extend a run)
    runs: list[list[int]] = []
    previous_bad = False
    for d in usable:
        if bad[d]:
            if previous_bad:
                runs[-1].append(d)
            else:
                runs.append([d])
        previous_bad = bool(bad[d])
    runs = [r for r in runs if len(r) >= confirm_days]
    if runs:
        filled = np.where(np.isnan(base), np.nan, base)
        last = np.maximum.accumulate(np.where(np.isnan(filled), -1, np.arange(nd)))
        base_r = np.where(last >= 0, filled[np.maximum(last, 0)], np.nan)[day]
        thr_r = np.where(last >= 0, thr[np.maximum(last, 0)], np.nan)[day]
        lo, hi = _segments(_breaks(times, n))
        i = np.arange(n)
        lo = np.maximum(i - window_steps // 2, lo)
        hi = np.minimum(i - window_steps // 2 + window_steps, hi)
        ca = np.concatenate(([0.0], np.cumsum(np.where(valid, x, 0.0))))
        cb = np.concatenate(([0.0], np.cumsum(np.where(valid, y, 0.0))))
        cn = np.concatenate(([0], np.cumsum(valid)))
        enough = cn[hi] - cn[lo] >= max(1, window_steps // 6)
        dev = np.full(n, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            dev[enough] = np.abs((ca[hi] - ca[lo])[enough] / (cb[hi] - cb[lo])[enough] / base_r[enough] - 1)
        day_start = np.searchsorted(day, np.arange(nd + 1))
        for r in runs:
            s0, e0 = day_start[r[0]], day_start[r[-1] + 1]
            # the edges: where the rolling ratio is half way to the drift's own level (NaN, no
            # usable ratio, is not calm: it neither starts nor ends a drift)
            level = np.nanmedian(dev[s0:e0]) if np.isfinite(dev[s0:e0]).any() else 0.0
            calm = dev <= np.maximum(thr_r / 2, level / 2)
            w0 = day_start[max(r[0] - 1, 0)]
            before = np.flatnonzero(calm[w0:day_start[min(r[0] + 1, nd)]])
            s = w0 + before[-1] + 1 if before.size else w0
            s = min(s, e0 - 1)
            after = np.flatnonzero(calm[day_start[max(r[-1], 0)]:day_start[min(r[-1] + 2, nd)]])
            e = day_start[r[-1]] + after[0] if after.size else day_start[min(r[-1] + 2, nd)]
            e = max(e, s0 + 1, s + 1)
            flags[s:e] = SUSPECT
    flags[missing] = MISSING
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
    starts, ends, worst = _period_arrays(_as_times(times), flags, interval_s, min_flag, merge_gap_steps)
    return [(a, b, int(w)) for a, b, w in zip(starts, ends, worst)]


def _period_arrays(t: np.ndarray, flags: Any, interval_s: float, min_flag: int = SUSPECT,
                   merge_gap_steps: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`periods` as three arrays: starts, ends (datetime64[us]) and worst flags."""
    f = np.asarray(flags).ravel()
    sel = np.flatnonzero((f >= min_flag) & (f != MISSING))
    if not sel.size:
        return np.zeros(0, "datetime64[us]"), np.zeros(0, "datetime64[us]"), np.zeros(0, np.uint8)
    step = _td(interval_s)
    starts = t[sel]
    ends = starts + step
    new = np.ones(sel.size, dtype=bool)
    new[1:] = starts[1:] - ends[:-1] > merge_gap_steps * step
    first = np.flatnonzero(new)
    last = np.r_[first[1:], sel.size] - 1
    return starts[first], ends[last], np.maximum.reduceat(f[sel], first)


def _event_runs(starts: list[int], ends: list[int], worst: list[int], gap: int, event_gap: int
                ) -> list[tuple[int, int, int]]:
    """Join runs (sorted, in microseconds) into events: the next run joins when the pause is
    at most ``gap``, or at most the longer run's length up to ``event_gap``.

    >>> _event_runs([0, 10, 100, 400], [5, 60, 110, 410], [3, 4, 3, 3], gap=6, event_gap=60)
    [(0, 110, 4), (400, 410, 3)]
    """
    out: list[tuple[int, int, int]] = []
    cs, ce, cw = starts[0], ends[0], worst[0]
    for s, e, w in zip(starts[1:], ends[1:], worst[1:]):
        if s <= ce + min(event_gap, max(gap, e - s, ce - cs)):
            ce, cw = max(ce, e), max(cw, w)
        else:
            out.append((cs, ce, cw))
            cs, ce, cw = s, e, w
    out.append((cs, ce, cw))
    return out


# --- a whole station --------------------------------------------------------------------------

RULE_TEXT = {
    "gross_range": "values outside the plausible range",
    "spike": "a single value far from its neighbours (spike)",
    "rate_of_change": "values changing faster than possible",
    "flat_line": "values unchanged (stuck sensor)",
    "icing": "sensor frozen in cold air (icing)",
    "pair_ratio": "ratio to the other anemometer at this height drifted from its preceding value",
    "dead": "sensor reports no data or one constant value",
    "gap": "no records",
    "duplicates": "records with a repeated timestamp",
}
#: When findings of several rules cover one sensor at once for as long, the merged finding
#: takes the first of these rules (the likeliest cause).
RULE_ORDER = ("icing", "dead", "flat_line", "gross_range", "spike", "rate_of_change", "pair_ratio", "duplicates")
_COMPASS = {p: i * 22.5 for i, p in enumerate(
    ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW"))}


def run_station_checks(times: Any, columns: Mapping[str, Any], meta: Mapping[str, Mapping],
                       *, interval_s: float | None = None, config: CheckConfig | None = None
                       ) -> list[Finding]:
    """Run the checks that fit each channel of one station; return merged findings.

    Parameters
    ----------
    times : datetime64 array, the START of each period (any order; duplicates reported).
    columns : column name -> values (float, NaN = missing), each as long as ``times``.
    meta : column name -> ``{"measurement_type", "statistic", "height_m", "orientation"}``
        as known (orientation in degrees or a compass point), optionally ``unit``,
        ``fail_span``, ``suspect_span``. Columns without meta only get the dead-sensor check.
    interval_s : logging interval; default: the usual step of ``times``.
    config : thresholds (:class:`CheckConfig`).

    The checks run in this order, and each later check sees the values an earlier one
    failed as missing (a sensor-level finding hides all the sensor's columns):

    1. gross range on every typed column (FAIL values are hidden);
    2. spike on averages of the types in ``config.spike`` (wind direction wraps at 360);
    3. rate of change on averages of the types in ``config.rate_of_change``;
    4. dead sensors: NaN, or one constant for ``dead_constant_types`` (on the raw values);
    5. icing on each anemometer and vane, with the air temperature nearest its height;
    6. flat line on wind speed and direction averages (in warm air, or not iced);
    7. the ratio of each same-height anemometer pair against its preceding reference
       (:func:`pair_ratio_drift`, wake sectors left out when the booms' orientations and a
       vane are known); the cup whose ratio to the other heights' cups moved is named alone;
    8. gaps and duplicate timestamps.

    Sensor-level findings name all columns of the sensor (same type, height and
    orientation). One event on one sensor gives one finding: runs of one rule closer than
    ``merge_gap_s`` are joined (``event_gap_s`` for fragments of the same columns), findings
    of different rules that overlap on a sensor are merged under the rule that found most of
    the time (on a par, the first in :data:`RULE_ORDER`), and findings of one rule over about
    the same period are merged across sensors.

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

    gap_us, event_us = int(cfg.merge_gap_s * 1e6), int(max(cfg.merge_gap_s, cfg.event_gap_s) * 1e6)

    def add(rule: str, cols: tuple[str, ...], flags: np.ndarray) -> None:
        a, b, w = _period_arrays(t, flags, step_s, merge_gap_steps=int(cfg.merge_gap_s // step_s))
        if a.size:  # fragments of one event joined here, on plain numbers (data failing often gives many)
            for s, e, worst in _event_runs(a.astype(np.int64).tolist(), b.astype(np.int64).tolist(), w.tolist(),
                                           gap_us, event_us):
                found.append(Finding(rule, cols, _EPOCH + timedelta(microseconds=s),
                                     _EPOCH + timedelta(microseconds=e), SEVERITY[min(worst, FAIL)], ""))

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
    work = dict(data)  # what later checks see: failed values hidden (a column is copied when first hidden)
    copied: set[str] = set()

    def sensor_cols(name: str) -> tuple[str, ...]:
        return tuple(sensors.get(info[name]["sensor"], [name]))

    def hide(cols: tuple[str, ...], flags: np.ndarray, level: int = SUSPECT) -> None:
        bad = (flags >= level) & (flags != MISSING)
        if bad.any():
            for c in cols:
                if c not in copied:
                    work[c] = work[c].copy()
                    copied.add(c)
                work[c][bad] = np.nan

    def find(mtype: str, stat: str) -> list[str]:
        return [c for c, m in info.items() if m["type"] == mtype and m["stat"] == stat]

    # 1. gross range
    for name, m in info.items():
        spans = _spans(m, meta.get(name) or {}, cfg)
        if spans is not None:
            flags = gross_range(data[name], *spans)
            add("gross_range", (name,), flags)
            hide((name,), flags, FAIL)
    # 2. spikes, 3. rate of change (averages only: extremes and sd are spiky by nature)
    cups = find("wind_speed", "avg")
    for mtype, (suspect, fail) in cfg.spike.items():
        for name in find(mtype, "avg"):
            flags = spike(work[name], suspect, fail, circular=mtype == "wind_direction", peaks_only=True,
                          noise_k=cfg.spike_noise_k)
            if mtype == "wind_direction" and cups:  # a light wind turns any way it likes
                cup = min(cups, key=lambda c: abs((info[c]["height"] or 0) - (info[name]["height"] or 0)))
                with np.errstate(invalid="ignore"):
                    flags[~(data[cup] >= cfg.spike_min_wind) & (flags >= SUSPECT)] = NOT_EVALUATED
            add("spike", (name,), flags)
            hide((name,), flags)
    for mtype, per_10_min in cfg.rate_of_change.items():
        for name in find(mtype, "avg"):
            flags = rate_of_change(work[name], t, per_10_min / 600.0)
            add("rate_of_change", (name,), flags)
            hide((name,), flags)
    # 4. dead sensors (on the raw values: a hidden value is not a missing one)
    for name, m in info.items():
        constant = m["type"] in cfg.dead_constant_types and m["stat"] == "avg"
        flags = dead(data[name], steps(cfg.dead_s), constant=constant)
        cols = sensor_cols(name) if constant else (name,)
        add("dead", cols, flags)
        hide(cols, flags, FAIL)
    # 5. icing
    temps = find("air_temperature", "avg")
    if temps:
        for mtype, sd_max in cfg.icing_sd_max.items():
            for name in find(mtype, "avg"):
                sd = next((c for c in sensor_cols(name) if info[c]["stat"] == "sd"), None)
                temp = min(temps, key=lambda c: abs((info[c]["height"] or 0) - (info[name]["height"] or 0)))
                flags = icing(data[temp], work[sd] if sd else None, work[name], sd_max=sd_max,
                              min_steps=steps(cfg.icing_suspect_s),
                              fail_steps=steps(cfg.icing_fail_s), times=t)
                add("icing", sensor_cols(name), flags)
                hide(sensor_cols(name), flags)
    # 6. flat line
    for mtype, tol in cfg.flat_tolerance.items():
        for name in find(mtype, "avg"):
            flags = flat_line(work[name], t, tol, steps(cfg.flat_suspect_s), steps(cfg.flat_fail_s))
            add("flat_line", sensor_cols(name), flags)
            hide(sensor_cols(name), flags)
    # 7. boom pairs
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
                wake = None
                degs = [_degrees(info[c]["orientation"]) for c in (a, b)]
                if vane is not None and None not in degs:
                    d = work[vane]
                    wake = np.isnan(d)
                    for deg in degs:
                        wake |= np.abs((d - deg) % 360.0 - 180.0) < cfg.pair_wake_deg  # wind from behind the boom
                flags = pair_ratio_drift(
                    work[a], work[b], t, cfg.pair_threshold, cfg.pair_min_speed, exclude=wake,
                    reference_days=cfg.pair_reference_days, spread_k=cfg.pair_spread_k,
                    max_threshold=cfg.pair_max_threshold, window_steps=steps(cfg.pair_window_s),
                    min_day_records=steps(3 * 3600.0))
                others = {h: n for h, n in by_height.items() if h != height}
                for lo, hi, worst in periods(t, flags, step_s, merge_gap_steps=int(cfg.merge_gap_s // step_s)):
                    i0, i1 = np.searchsorted(t, lo), np.searchsorted(t, hi)
                    who = _blame(work, a, b, others, height, i0, i1, steps(cfg.pair_reference_days * 86400.0),
                                 cfg.pair_min_speed, wake)
                    cols = sensor_cols(a) * (who != "b") + sensor_cols(b) * (who != "a")
                    found.append(Finding("pair_ratio", cols, _dt(lo), _dt(hi), SEVERITY[min(worst, FAIL)], ""))

    merged = _merge(found, cfg.merge_gap_s, cfg.event_gap_s)
    log.info("QC: %d findings (%d before merging) for %d columns x %d records in %.2f s",
             len(merged), len(found), len(data), t.size, time.perf_counter() - began)
    return merged


def _degrees(orientation: Any) -> float | None:
    """A boom orientation in degrees, from a number or a compass point (``NE``)."""
    if orientation is None:
        return None
    if isinstance(orientation, str):
        return _COMPASS.get(orientation.strip().upper())
    try:
        return float(orientation)
    except (TypeError, ValueError):
        return None


def _blame(work: Mapping[str, np.ndarray], a: str, b: str, others: Mapping[float, list[str]], height: float,
           i0: int, i1: int, ref_steps: int, min_speed: float, wake: np.ndarray | None) -> str:
    """Which cup of a drifting pair moved: ``"a"``, ``"b"`` or ``"both"`` (cannot tell).

    Each cup is compared with the wind predicted at its height from the pairs at the two
    nearest other heights (power law; one other height: its wind), over the drift and over
    the ``ref_steps`` records before it; the cup whose ratio changed at least twice as much
    as the other's is the one.
    """
    near = sorted(others, key=lambda h: abs(h - height))[:2]
    if not near:
        return "both"
    with np.errstate(invalid="ignore", divide="ignore", all="ignore"):
        means = []
        for h in near:
            stack = np.vstack([work[c] for c in others[h]])
            count = np.sum(~np.isnan(stack), axis=0)
            means.append(np.where(count > 0, np.nansum(stack, axis=0) / np.maximum(count, 1), np.nan))
        if len(near) == 2:
            alpha = np.log(means[0] / means[1]) / np.log(near[0] / near[1])
            pred = means[0] * (height / near[0]) ** np.clip(alpha, -0.2, 0.6)
        else:
            pred = means[0]
        x, y = work[a], work[b]
        ok = (x > min_speed) & (y > min_speed) & (pred > min_speed)
        if wake is not None:
            ok &= ~wake
        changes = []
        r0 = max(0, i0 - ref_steps)
        for v in (x, y):
            now, before = ok[i0:i1], ok[r0:i0]
            if now.sum() < 36 or before.sum() < 36:
                return "both"
            changes.append(np.median(v[i0:i1][now] / pred[i0:i1][now])
                           / np.median(v[r0:i0][before] / pred[r0:i0][before]) - 1)
    ca, cb = abs(changes[0]), abs(changes[1])
    return "a" if ca >= 2 * cb else "b" if cb >= 2 * ca else "both"


_EPOCH = datetime(1970, 1, 1)


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


def _merge(found: list[Finding], gap_s: float, event_gap_s: float | None = None) -> list[Finding]:
    """One finding per event: join fragments of one rule on the same columns (at most
    ``gap_s`` apart, or up to ``event_gap_s`` when a fragment is at least as long as the
    pause), merge findings of different rules that overlap on a sensor (the merged one takes
    the rule that found most of its time; on a par, the first in :data:`RULE_ORDER`), then
    findings of one rule over about the same period across sensors.

    Gaps are kept apart: a lone record between two gaps is data, not "no records".
    Each pass sorts once and compares a finding only with the recent ones it could join.
    """
    gap = timedelta(seconds=gap_s)
    event_gap = timedelta(seconds=max(gap_s, event_gap_s or gap_s))

    def fragments(items: list[Finding]) -> list[Finding]:
        groups: dict[tuple, list[Finding]] = {}
        for f in items:
            groups.setdefault((f.rule, f.columns), []).append(f)
        joined = []
        for fs in groups.values():
            fs.sort(key=lambda f: (f.start, f.end))
            cur = fs[0]
            for f in fs[1:]:
                pause = min(event_gap, max(gap, f.end - f.start, cur.end - cur.start))
                if f.start <= cur.end + pause:
                    cur = _combine(cur, f, cur.rule)
                else:
                    joined.append(cur)
                    cur = f
            joined.append(cur)
        return joined

    def alike(items: list[Finding]) -> list[Finding]:
        res: list[Finding] = []
        for rule in dict.fromkeys(f.rule for f in items):
            window: list[int] = []  # findings of this rule that started at most `gap` before
            for f in sorted((f for f in items if f.rule == rule), key=lambda f: (f.start, f.end)):
                window = [i for i in window if f.start - res[i].start <= gap]
                i = next((i for i in window if abs(f.end - res[i].end) <= gap), None)
                if i is None:
                    window.append(len(res))
                    res.append(f)
                else:
                    res[i] = _combine(res[i], f, rule)
        return res

    def across_rules(items: list[Finding]) -> list[Finding]:
        rank = {r: i for i, r in enumerate(RULE_ORDER)}
        res: list[Finding] = []
        spans: list[dict[str, timedelta]] = []  # per merged finding: time found by each rule
        colsets: list[frozenset[str]] = []
        open_: list[int] = []  # findings that have not ended before the current one starts
        for f in sorted(items, key=lambda f: (f.start, f.end)):
            open_ = [i for i in open_ if res[i].end >= f.start]
            cols = frozenset(f.columns)
            i = next((i for i in open_ if not cols.isdisjoint(colsets[i])), None) if cols else None
            if i is None:
                open_.append(len(res))
                res.append(f)
                colsets.append(cols)
                spans.append({f.rule: f.end - f.start})
            else:
                colsets[i] |= cols
                spans[i][f.rule] = spans[i].get(f.rule, timedelta(0)) + (f.end - f.start)
                # the rule that found most of it; on a par, the likelier cause
                rule = max(spans[i], key=lambda r: (spans[i][r], -rank.get(r, len(rank))))
                res[i] = _combine(res[i], f, rule)
        return res

    out: list[Finding] = [f for f in found if f.rule == "gap"]
    rest = [f for f in found if f.rule != "gap"]
    if rest:  # per sensor first, then sensors alike in time (one event over several sensors)
        out += alike(fragments(across_rules(fragments(rest))))
    out = [replace(f, message=message(f)) for f in out]
    return sorted(out, key=lambda f: (f.start, f.rule, f.columns))


def _combine(m: Finding, f: Finding, rule: str) -> Finding:
    cols = tuple(dict.fromkeys(m.columns + f.columns))
    sev = "fail" if "fail" in (m.severity, f.severity) else "suspect"
    return replace(m, rule=rule, columns=cols, start=min(m.start, f.start), end=max(m.end, f.end), severity=sev)


def message(f: Finding) -> str:
    hours = (f.end - f.start).total_seconds() / 3600
    span = f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
    cols = ", ".join(f.columns[:6]) + (f" and {len(f.columns) - 6} more" if len(f.columns) > 6 else "")
    where = f" in {cols}" if f.columns else ""
    return f"{RULE_TEXT.get(f.rule, f.rule)}{where} for {span} ({f.severity})"
