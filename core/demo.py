"""Synthetic demo met-mast site written as Campbell Scientific TOA5 files.

Three invented stations log 10-minute statistics of wind speed (3 heights x 2
booms), wind direction (2 heights), air temperature, relative humidity,
barometric pressure and battery voltage. The series are physically plausible
(Weibull-like persistent wind, power-law shear, tower shadow, seasonal and
diurnal cycles) and carry a documented set of injected faults (``FAULTS``) so
that quality checks can be tested against a known truth.

The demo is current: ``stationmanager demo`` and ``up --demo`` end it now (the last
10-minute step), and its faults lie at fixed offsets from the day its year began
(:func:`faults`), so on the Overview Ballymore Hill is ``ok``, Kestrel Ridge ``faulty`` (its
hygrometer died 11 weeks ago) and Curlew Point, installed a month ago, ``late`` (its modem
delivers hours behind). A later run extends the same site: every past record is the same,
so only the new days' files are new. :data:`FAULTS` is the set for a year beginning on
2025-01-01, the default of :func:`generate` (tests).

While ``up --demo`` runs, the demo logger (:func:`run_logger`) writes each new record of
Ballymore Hill into ``HOME/demo-logger``, fetched by the folder source of
:func:`demo_sources`; the other demo source, Curlew Point's telemetry, is refused.

One file is written per station and day. Timestamps mark the END of each
10-minute averaging period (logger clock = UTC), so the file of day D covers
``D 00:10:00`` .. ``D+1 00:00:00``. A record stamped ``t`` covers
``(t - 10 min, t]`` and is affected by a fault when ``start < t <= end``, i.e.
when its averaging period lies inside the fault's ``[start, end)``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

ROWS_PER_DAY = 144
_STEP = np.timedelta64(10, "m")
WS_HEIGHTS: tuple[int, ...] = (80, 60, 40)
BOOMS: dict[str, float] = {"NE": 45.0, "SW": 225.0}  # boom orientation, deg
WD_HEIGHTS: tuple[int, ...] = (78, 58)
_STATS = ("Avg", "Std", "Min", "Max")
_RICE_MEAN = 0.854  # E|(0.45, 0) + 0.6 * N(0, I2)|: keeps the 80 m mean on target
_NU, _SIG = 0.45, 0.6


@dataclass(frozen=True)
class DemoStation:
    """An invented met mast and its Campbell logger."""

    name: str
    latitude: float
    longitude: float
    elevation_m: float
    logger_serial: str
    mean_wind_ms: float  # long-term mean at the top anemometer height
    mean_temp_c: float  # annual mean air temperature at 2 m
    seed_offset: int
    logger_model: str = "CR1000X"
    os_version: str = "CR1000X.Std.06.02"
    program: str = "CPU:MetMast.CR1X"
    program_signature: str = "21904"
    table: str = "Met10min"

    @property
    def slug(self) -> str:
        """Lower-case, dash-separated directory name, e.g. ``ballymore-hill``."""
        return "-".join(self.name.lower().split())


@dataclass(frozen=True)
class Fault:
    """An injected fault; affects records stamped ``t`` with ``start < t <= end``."""

    station: str
    kind: str  # "stuck" | "icing" | "gap" | "dead"
    columns: tuple[str, ...]  # affected TOA5 columns; () = whole record (gap)
    start: datetime  # UTC, inclusive start of the affected time span
    end: datetime  # UTC, exclusive end of the affected time span
    description: str

    def covers(self, timestamp: datetime) -> bool:
        """Whether the record stamped ``timestamp`` (naive = UTC) is affected."""
        ts = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
        return self.start < ts <= self.end


def _cols(base: str, stats: tuple[str, ...] = _STATS) -> tuple[str, ...]:
    return tuple(f"{base}_{s}" for s in stats)


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


STATIONS: tuple[DemoStation, ...] = (
    DemoStation("Ballymore Hill", 53.4172, -8.2146, 143.0, "31842", 7.0, 9.6, 1),
    DemoStation("Kestrel Ridge", 54.1839, -7.6524, 228.0, "31907", 8.5, 8.9, 2,
                program_signature="40117"),
    DemoStation("Curlew Point", 55.2410, -7.2093, 61.0, "32215", 9.2, 9.9, 3,
                program_signature="40117"),
)

_ICED = (_cols("WS_80m_NE") + _cols("WS_80m_SW") + _cols("WS_60m_NE") + _cols("WS_60m_SW")
         + _cols("WD_78m", ("Avg", "Std")) + _cols("WD_58m", ("Avg", "Std")))

#: The demo year's faults as (station, kind, columns, start, end, description), times as
#: offsets from the day the year begins (``None`` end: until the end of the data).
_FAULT_PLAN: tuple[tuple, ...] = (
    ("Ballymore Hill", "icing", _ICED, timedelta(days=26, hours=18), timedelta(days=28),
     "Rime icing at 80 m and 60 m: cups nearly stopped (Avg 0-0.3 m/s, Std ~0), vanes "
     "frozen (constant Avg, Std 0); AirT < -1 C, RH > 95 %; 40 m keeps turning."),
    ("Kestrel Ridge", "icing", _ICED, timedelta(days=47, hours=4), timedelta(days=48, hours=10),
     "In-cloud icing at 80 m and 60 m for 30 h: cups nearly stopped, vanes frozen; "
     "AirT < -1 C and RH > 95 %."),
    ("Ballymore Hill", "stuck", _cols("WS_60m_SW"), timedelta(days=97, hours=11, minutes=20),
     timedelta(days=99, hours=10, minutes=40),
     "Seized 60 m SW anemometer in mild air (AirT > 5 C): Avg frozen at a constant, Std 0, "
     "Min = Max = Avg."),
    ("Kestrel Ridge", "gap", (), timedelta(days=202), timedelta(days=205),
     "Modem failure: no files for three days (RECORD jumps by 432)."),
    ("Kestrel Ridge", "dead", _cols("RH_2m"), timedelta(days=286, hours=9, minutes=20), None,
     "Hygrometer failed: RH columns read NAN from then on."),
)
#: Curlew Point starts logging this long after the year begins, and its files arrive late.
CURLEW_INSTALLED = timedelta(days=335)
LATE_BY = timedelta(hours=5)
_FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


def faults(year_start: date = date(2025, 1, 1), end: datetime | None = None) -> tuple[Fault, ...]:
    """The demo's faults for a demo year beginning on ``year_start`` (a fault without an
    end lasts until ``end``, by default for ever).

    >>> [f.kind for f in faults()]
    ['icing', 'icing', 'stuck', 'gap', 'dead']
    >>> faults(date(2026, 1, 1))[3].start.isoformat()
    '2026-07-22T00:00:00+00:00'
    """
    t0 = datetime(year_start.year, year_start.month, year_start.day, tzinfo=UTC)
    return tuple(
        Fault(station, kind, columns, t0 + a, t0 + b if b is not None else (end or _FOREVER), text)
        for station, kind, columns, a, b, text in _FAULT_PLAN
    )


#: The faults of the demo year 2025 (the default of :func:`generate`), ongoing ones ending
#: with that year.
FAULTS: tuple[Fault, ...] = faults(date(2025, 1, 1), _utc(2026, 1, 1))


def _column_specs() -> list[tuple[str, str, str, int]]:
    """(name, unit, process, decimals) of every data column after TIMESTAMP/RECORD."""
    specs: list[tuple[str, str, str, int]] = []
    for h in WS_HEIGHTS:
        for boom in BOOMS:
            specs += [(c, "m/s", s, 3 if s in ("Avg", "Std") else 2)
                      for c, s in zip(_cols(f"WS_{h}m_{boom}"), _STATS)]
    for h in WD_HEIGHTS:
        specs += [(f"WD_{h}m_Avg", "Deg", "Avg", 1), (f"WD_{h}m_Std", "Deg", "Std", 2)]
    for base, unit in (("AirT_2m", "Deg C"), ("RH_2m", "%"), ("BP_2m", "hPa")):
        specs += [(c, unit, s, 2) for c, s in zip(_cols(base), _STATS)]
    specs.append(("BattV_Min", "Volts", "Min", 2))
    return specs


COLUMNS: tuple[str, ...] = ("TIMESTAMP", "RECORD") + tuple(s[0] for s in _column_specs())


def _np(x: datetime) -> np.datetime64:
    return np.datetime64(x.replace(tzinfo=None), "m")


def _mask(fault: Fault, ts: np.ndarray) -> np.ndarray:
    """Records (stamped at period end) affected by ``fault``."""
    return (ts > _np(fault.start)) & (ts <= _np(fault.end))


class _Streams:
    """Random draws that do not depend on the length of earlier draws: each call takes a
    generator of its own (spawned in a fixed order), so a longer series (a later end)
    starts with the same values."""

    def __init__(self, entropy: list[int]) -> None:
        self._seq = np.random.SeedSequence(entropy)

    def _next(self) -> np.random.Generator:
        return np.random.default_rng(self._seq.spawn(1)[0])

    def standard_normal(self, *args, **kwargs):
        return self._next().standard_normal(*args, **kwargs)

    def random(self, *args, **kwargs):
        return self._next().random(*args, **kwargs)


def _ar1(rng: np.random.Generator | _Streams, n: int, tau: float, smooth: int = 1) -> np.ndarray:
    """Unit-variance AR(1)-like series with e-folding time ``tau`` (in 10-min steps).

    ``smooth`` > 1 additionally box-averages over that many steps (smooth increments).
    """
    kernel = np.exp(-np.arange(int(8 * tau) + 1) / tau)
    if smooth > 1:
        kernel = np.convolve(kernel, np.ones(smooth))
    kernel /= np.sqrt(np.sum(kernel**2))
    k = kernel.size
    noise = rng.standard_normal(n + k - 1)
    nfft = 1 << int(np.ceil(np.log2(n + 2 * k)))
    y = np.fft.irfft(np.fft.rfft(noise, nfft) * np.fft.rfft(kernel, nfft), nfft)
    return y[k - 1:k - 1 + n]


def _stats(rng: np.random.Generator | _Streams, avg: np.ndarray, std: np.ndarray, g_lo: float,
           g_hi: float, dec: int, lo_bound: float = -np.inf, hi_bound: float = np.inf
           ) -> tuple[np.ndarray, ...]:
    """Rounded (Avg, Std, Min, Max) with Min <= Avg <= Max after rounding."""
    n = avg.size
    avg = np.clip(avg, lo_bound, hi_bound)
    lo = avg - std * np.clip(g_lo + 0.4 * rng.standard_normal(n), 0.8, 4.5)
    hi = avg + std * np.clip(g_hi + 0.4 * rng.standard_normal(n), 0.8, 4.5)
    s = 10.0**dec
    a = np.round(avg, 3)
    lo = np.minimum(np.floor(np.clip(lo, lo_bound, hi_bound) * s), np.floor(a * s)) / s
    hi = np.maximum(np.ceil(np.clip(hi, lo_bound, hi_bound) * s), np.ceil(a * s)) / s
    return a, np.round(std, 3), lo, hi


def _simulate(st: DemoStation, ts: np.ndarray, seed: int, fault_list: tuple[Fault, ...] = FAULTS
              ) -> dict[str, np.ndarray]:
    """Physical 10-min statistics for one station, faults not yet applied."""
    rng = _Streams([seed, st.seed_offset])
    n = ts.size
    mid = ts - np.timedelta64(5, "m")
    day = mid.astype("datetime64[D]")
    hour = (mid - day) / np.timedelta64(1, "h")
    doy = (day - mid.astype("datetime64[Y]")).astype(float) + hour / 24.0
    season = np.cos(2 * np.pi * (doy - 15) / 365.25)  # +1 mid-January
    solar_hour = hour + st.longitude / 15.0
    decl = np.radians(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.25)
    lat = np.radians(st.latitude)
    sin_el = (np.sin(lat) * np.sin(decl)
              + np.cos(lat) * np.cos(decl) * np.cos(np.radians(15 * (solar_hour - 12))))
    cloud = np.clip(0.6 + 0.3 * _ar1(rng, n, 72), 0, 1)
    sun = np.clip(sin_el * 4, 0, 1) * (1 - 0.6 * cloud)
    stable = np.cos(2 * np.pi * (solar_hour - 3) / 24)  # +1 night, -1 afternoon
    out: dict[str, np.ndarray] = {}

    # Wind vector (blowing towards NE, i.e. prevailing from SW) with persistence.
    def latent() -> np.ndarray:
        return (0.85 * _ar1(rng, n, 180, 6) + 0.50 * _ar1(rng, n, 24)
                + 0.16 * _ar1(rng, n, 4))

    scale = (st.mean_wind_ms / _RICE_MEAN * (1 + 0.18 * season)
             * (1 + 0.03 * np.cos(2 * np.pi * (solar_hour - 14) / 24)))
    ue = scale * (_NU * np.sqrt(0.5) + _SIG * latent())
    vn = scale * (_NU * np.sqrt(0.5) + _SIG * latent())
    v80 = np.hypot(ue, vn)
    wd = np.degrees(np.arctan2(-ue, -vn)) % 360.0
    amp = (0.05 + 0.03 * (1 - season)) * np.exp(-v80 / 15)
    alpha = np.clip(0.16 + amp * stable + 0.025 * _ar1(rng, n, 12), 0.02, 0.45)
    ti80 = ((0.075 + 0.3 / (v80 + 2)) * (1 + 0.15 * sun)
            * np.exp(0.12 * rng.standard_normal(n)))
    for h in WS_HEIGHTS:
        vh = v80 * (h / 80) ** alpha
        for boom, orient in BOOMS.items():
            delta = (wd - orient) % 360 - 180  # 0: wind from the far side, boom in the lee
            deficit = 0.07 * np.exp(-0.5 * (delta / 18) ** 2)
            gain = 1 + 0.004 * rng.standard_normal()
            v = np.maximum(vh * (1 - deficit) * gain * (1 + 0.005 * rng.standard_normal(n)), 0.0)
            sd = v * ti80 * (80 / h) ** 0.15 * (1 + 3 * deficit)
            a, s, lo, hi = _stats(rng, v, sd, 2.4, 2.9, 2, lo_bound=0.0)
            out.update(zip(_cols(f"WS_{h}m_{boom}"), (a, s, lo, hi)))
    veer = 2 + 3 * np.maximum(stable, 0)
    for h, off in zip(WD_HEIGHTS, (0.0, -1.0)):
        d = wd - (veer if h < 78 else 0) + off + 0.6 * rng.standard_normal(n)
        out[f"WD_{h}m_Avg"] = np.round(d % 360.0, 1) % 360.0
        sd = (46 * ti80 * (1 + 1.2 / (v80 + 0.3)) * (80 / h) ** 0.1
              * np.exp(0.15 * rng.standard_normal(n)))
        out[f"WD_{h}m_Std"] = np.round(np.clip(sd, 0.5, 95), 2)

    # Temperature, humidity (via dew point), pressure, battery.
    t_base = (st.mean_temp_c - 5.5 * np.cos(2 * np.pi * (doy - 22) / 365.25)
              + 3.2 * (1 + 0.2 * season) * _ar1(rng, n, 300, 36))
    diurnal = (2.0 + 1.6 * (1 - season) / 2) * (1.2 - 0.7 * cloud) * np.cos(
        2 * np.pi * (solar_hour - 15) / 24)
    temp = t_base + diurnal + 0.15 * _ar1(rng, n, 3)
    dep = 0.6 + 2.2 * (1 + 0.3 * (1 - season) / 2) * np.exp(0.45 * _ar1(rng, n, 108))
    td = t_base - dep

    def e_sat(t: np.ndarray) -> np.ndarray:
        return 6.112 * np.exp(17.62 * t / (243.12 + t))

    rh = np.clip(100 * e_sat(td) / e_sat(temp), 8, 100)
    t_sd = (0.04 + 0.3 * sun) * np.exp(0.2 * rng.standard_normal(n))
    for f in fault_list:  # cold, saturated air around icing events; mild air around a stuck cup (6 h tapers)
        if f.kind == "icing" and f.station == st.name:
            ramp = np.timedelta64(6, "h")
            w = np.clip(np.minimum((ts - _np(f.start)) / ramp + 1,
                                   (_np(f.end) - ts) / ramp + 1), 0, 1)
            cold = np.minimum(temp, -2.6 + 0.5 * np.sin(2 * np.pi * hour / 24))
            temp = temp + w * (cold - temp)
            rh = rh + w * (np.maximum(rh, 97.5 + 1.5 * rng.random(n)) - rh)
            t_sd = np.where(w > 0, np.minimum(t_sd, 0.12), t_sd)
        elif f.kind == "stuck" and f.station == st.name:
            # A seized bearing in mild air: the air stays well above freezing, so the
            # stopped cup is a mechanical fault and not icing (which looks the same in the cold).
            ramp = np.timedelta64(6, "h")
            w = np.clip(np.minimum((ts - _np(f.start)) / ramp + 1,
                                   (_np(f.end) - ts) / ramp + 1), 0, 1)
            temp = temp + w * (np.maximum(temp, 6.5 + 1.5 * np.sin(2 * np.pi * (hour - 9) / 24)) - temp)
    rh_sd = (0.15 + 0.02 * (100 - rh)) * np.exp(0.2 * rng.standard_normal(n))
    rh_sd = np.where(rh > 95, np.minimum(rh_sd, 0.3), rh_sd)
    out.update(zip(_cols("AirT_2m"), _stats(rng, temp, t_sd, 2.0, 2.2, 2)))
    out.update(zip(_cols("RH_2m"), _stats(rng, rh, rh_sd, 2.0, 2.0, 2, 0.0, 100.0)))
    box = np.ones(36)  # mean wind of the last 6 hours (not later ones): lows bring wind
    windy = np.convolve(v80, box)[:n] / np.convolve(np.ones(n), box)[:n]
    bp = (1013.25 * np.exp(-st.elevation_m / 8434) + 8.5 * _ar1(rng, n, 500, 72)
          - 0.6 * (windy - st.mean_wind_ms) + 0.5 * np.cos(4 * np.pi * (solar_hour - 10) / 24))
    bp_sd = (0.02 + 0.006 * v80) * np.exp(0.2 * rng.standard_normal(n))
    out.update(zip(_cols("BP_2m"), _stats(rng, bp, bp_sd, 2.5, 2.5, 2)))
    batt = (12.62 + 0.06 * _ar1(rng, n, 288) + 1.1 * sun
            - 0.004 * np.clip(10 - temp, 0, None) - 0.02 * np.abs(rng.standard_normal(n)))
    out["BattV_Min"] = np.round(np.clip(batt, 12.4, 13.8), 2)
    return out


def _apply_faults(st: DemoStation, ts: np.ndarray, data: dict[str, np.ndarray],
                  rng: np.random.Generator, fault_list: tuple[Fault, ...] = FAULTS) -> None:
    """Overwrite the columns of every sensor fault of ``st`` in place."""
    for f in fault_list:
        if f.station != st.name or f.kind == "gap":
            continue
        m = _mask(f, ts)
        if not m.any():
            continue
        first = int(np.argmax(m))
        for base in dict.fromkeys(c.rsplit("_", 1)[0] for c in f.columns):
            if f.kind == "dead":
                for c in _cols(base):
                    data[c][m] = np.nan
            elif f.kind == "stuck":
                value = np.round(data[f"{base}_Avg"][first], 2)
                for c in _cols(base):
                    data[c][m] = 0.0 if c.endswith("Std") else value
            elif base.startswith("WD"):
                data[f"{base}_Avg"][m] = data[f"{base}_Avg"][first]
                data[f"{base}_Std"][m] = 0.0
            else:  # iced cups
                k = int(m.sum())
                a = np.round(np.clip(0.12 + 0.07 * rng.standard_normal(k), 0.0, 0.3), 3)
                s = np.round(np.abs(0.004 * rng.standard_normal(k)), 3)
                data[f"{base}_Avg"][m], data[f"{base}_Std"][m] = a, s
                data[f"{base}_Min"][m] = np.floor(np.maximum(a - 2 * s, 0) * 100) / 100
                data[f"{base}_Max"][m] = np.ceil((a + 2 * s) * 100) / 100


def _bytes(values: np.ndarray) -> np.ndarray:
    """Shortest-repr ASCII of ``values`` ("NAN" quoted) as a zero-padded uint8 matrix."""
    x = values + 0.0  # turns -0.0 into 0.0
    nan = np.isnan(x)
    s = np.where(nan, 0.0, x).astype("S24")
    whole = np.flatnonzero(~nan & (x == np.trunc(x)))
    s[whole] = x[whole].astype(np.int64).astype("S24")
    s[nan] = b'"NAN"'
    width = max(int(np.strings.str_len(s).max()), 1)
    return s.astype(f"S{width}").view(np.uint8).reshape(x.size, width)


def _render(st: DemoStation, ts: np.ndarray, data: dict[str, np.ndarray]
            ) -> tuple[bytes, bytes, np.ndarray]:
    """Return (header, body, row byte offsets) of the station's whole data table."""
    specs = _column_specs()
    lines = [
        ["TOA5", st.name, st.logger_model, st.logger_serial, st.os_version, st.program,
         st.program_signature, st.table],
        list(COLUMNS), ["TS", "RN"] + [s[1] for s in specs], ["", ""] + [s[2] for s in specs],
    ]
    header = "".join(",".join(f'"{f}"' for f in line) + "\r\n" for line in lines).encode()
    n = ts.size
    stamp = np.datetime_as_string(ts, unit="s").astype("S19").view(np.uint8).reshape(n, 19).copy()
    stamp[:, 10] = ord(" ")

    def const(text: bytes) -> np.ndarray:
        return np.tile(np.frombuffer(text, np.uint8), (n, 1))

    comma = const(b",")
    record = _bytes(np.arange(n, dtype=float))  # RECORD: 0 at the first row of ``start``
    pieces = [const(b'"'), stamp, const(b'"'), comma, record]
    for name, _, _, dec in specs:
        pieces += [comma, _bytes(np.round(data[name], dec))]
    pieces.append(const(b"\r\n"))
    matrix = np.concatenate(pieces, axis=1)
    keep = matrix != 0
    offsets = np.concatenate(([0], np.cumsum(keep.sum(axis=1))))
    return header, matrix[keep].tobytes(), offsets


def _day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _floor_step(t: datetime) -> datetime:
    """``t`` (naive = UTC) rounded down to a 10-minute step.

    >>> _floor_step(datetime(2026, 3, 4, 12, 37, 5, tzinfo=UTC)).isoformat()
    '2026-03-04T12:30:00+00:00'
    """
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    return t.replace(minute=t.minute - t.minute % 10, second=0, microsecond=0)


def _timeline(origin: date, end: datetime) -> np.ndarray:
    """The stamps of every record from ``origin`` 00:10 to ``end`` (a 10-minute step)."""
    n = int((end - _day_start(origin)) / timedelta(minutes=10))
    return np.datetime64(origin, "m") + (np.arange(n) + 1) * _STEP


def _station_table(st: DemoStation, ts: np.ndarray, seed: int, fault_list: tuple[Fault, ...]
                   ) -> tuple[bytes, bytes, np.ndarray]:
    """(header, body, row byte offsets) of a station's records stamped ``ts``, faults applied."""
    data = _simulate(st, ts, seed, fault_list)
    _apply_faults(st, ts, data, np.random.default_rng([seed, st.seed_offset, 99]), fault_list)
    return _render(st, ts, data)


def generate(out_dir: Path, *, start: date | None = None, days: int = 365, end: datetime | None = None,
             origin: date | None = None, year_start: date | None = None, seed: int = 7,
             progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write one TOA5 file per station and day, ``out_dir/<slug>/<slug>_Met10min_YYYYMMDD.dat``.

    Parameters
    ----------
    out_dir : target folder.
    start, days, end : the days written. Without ``end``: ``days`` whole days from ``start``
        (default 2025-01-01). With ``end`` (rounded down to 10 minutes; the last record is
        stamped ``end``, so the last day's file may be partial): the ``days`` days ending
        then, or from ``start`` if given.
    origin : the day the simulated series begin (RECORD is 0 at ``origin`` 00:10; default
        ``start``). Every record depends only on ``origin``, ``year_start`` and ``seed``, not
        on ``end``: a later ``end`` writes the same earlier records, and new days.
    year_start : the day the demo year of :func:`faults` begins (default 2025-01-01, the
        dates of :data:`FAULTS`); Curlew Point logs from ``year_start + CURLEW_INSTALLED``,
        and its data stops ``LATE_BY`` before ``end``.
    seed : the output is byte-identical for equal arguments.
    progress : called as ``progress(done, total)`` after each file (written or unchanged).

    Returns
    -------
    list[Path]
        The files, sorted by station then day. Days inside a communication gap get no
        file; an existing identical file is left untouched (not rewritten).
    """
    if end is None:
        start = start or date(2025, 1, 1)
        end = _day_start(start) + timedelta(days=days)
    else:
        end = _floor_step(end)
        start = start or ((end - timedelta(minutes=10)).date() - timedelta(days=days - 1))
    origin = min(origin or start, start)
    year_start = year_start or date(2025, 1, 1)
    fault_list = faults(year_start, end)
    ts = _timeline(origin, end)
    n = ts.size
    first_day = (start - origin).days
    n_days = -(-n // ROWS_PER_DAY)

    def rows_of(st: DemoStation) -> np.ndarray:
        """Whether the station logged (and delivered) each record."""
        present = np.ones(n, dtype=bool)
        for f in (f for f in fault_list if f.station == st.name and f.kind == "gap"):
            present &= ~_mask(f, ts)
        if st.name == "Curlew Point":
            present &= ts > _np(_day_start(year_start) + CURLEW_INSTALLED)
            present &= ts <= _np(end - LATE_BY)
        return present

    jobs = [(st, rows_of(st)) for st in STATIONS]

    def day_rows(present: np.ndarray, d: int) -> tuple[int, int] | None:
        lo, hi = d * ROWS_PER_DAY, min((d + 1) * ROWS_PER_DAY, n)
        idx = np.flatnonzero(present[lo:hi])
        if idx.size == 0:
            return None
        assert idx.size == idx[-1] - idx[0] + 1  # gaps and cut-offs are whole spans
        return lo + int(idx[0]), lo + int(idx[-1]) + 1

    plan = [(st, present, [(d, r) for d in range(first_day, n_days) if (r := day_rows(present, d))])
            for st, present in jobs]
    paths: list[Path] = []
    total, done, written = sum(len(d) for *_, d in plan), 0, 0
    for st, present, day_list in plan:
        if not day_list:
            continue
        # a station installed later (Curlew Point) is simulated from its first day on
        first = int(np.argmax(present)) // ROWS_PER_DAY * ROWS_PER_DAY
        header, body, offsets = _station_table(st, ts[first:], seed, fault_list)
        folder = Path(out_dir) / st.slug
        folder.mkdir(parents=True, exist_ok=True)
        for d, (lo, hi) in day_list:
            day = np.datetime64(origin, "D") + d
            path = folder / f"{st.slug}_{st.table}_{str(day).replace('-', '')}.dat"
            content = header + body[offsets[lo - first]:offsets[hi - first]]
            if not (path.is_file() and path.read_bytes() == content):
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(content)
                os.replace(tmp, path)
                written += 1
            paths.append(path)
            done += 1
            if progress is not None:
                progress(done, total)
    logger.info("Demo site: %d files (%d written, %d unchanged) under %s",
                total, written, total - written, out_dir)
    return paths


# --- loading the demo into a database --------------------------------------------------


def demo_origin(out: Path, end: datetime, days: int) -> date:
    """The day the demo site under ``out`` begins: the one saved by its first run (so a later
    run extends the same site), else ``days`` days before ``end`` (then saved)."""
    saved = out / "demo.json"
    if saved.is_file():
        return date.fromisoformat(json.loads(saved.read_text())["origin"])
    origin = (_floor_step(end) - timedelta(minutes=10)).date() - timedelta(days=days - 1)
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"origin": origin.isoformat()}) + "\n")
    return origin


def load_demo(
    *, days: int = 365, progress: Callable[[str], None] | None = None,
    stop: threading.Event | None = None, end: datetime | None = None,
) -> dict:
    """Generate the demo site under ``HOME/demo``, ending ``end`` (default now), and queue
    its files for the worker.

    The first run makes ``days`` days; a later run extends the same site up to ``end``.
    Files already known (same content) are not queued again, so a second run is quick and
    queues only the new days (and the last day's file, which has grown).
    Returns ``{"stations", "queued", "known", "file_ids", "start", "end"}``.
    """
    from core import db, ingest, jobs, schema
    from core.settings import get_settings

    say = progress or (lambda _msg: None)
    settings = get_settings()
    url = db.database_url(settings)
    schema.upgrade(url, settings)
    out = settings.home.resolve() / "demo"
    end = _floor_step(end or datetime.now(UTC))
    origin = demo_origin(out, end, days)
    span = ((end - timedelta(minutes=10)).date() - origin).days + 1
    say(f"demo: generating {span} days of 10-minute data for {len(STATIONS)} stations, "
        f"{origin} to {end:%Y-%m-%d %H:%M} UTC, in {out}")
    paths = generate(out, start=origin, end=end, origin=origin, year_start=origin)
    by_slug = {st.slug: st for st in STATIONS}
    file_ids: list[int] = []
    known = 0
    with db.connect(url) as conn, db.translate():
        with conn.transaction():
            for st in STATIONS:
                _ensure_demo_station(conn, st)
        for i, path in enumerate(paths, start=1):
            if stop is not None and stop.is_set():
                break
            if db.fetch_one(conn, "live_file_by_sha", sha256=ingest.sha256_of(path)):
                known += 1
                continue
            with conn.transaction():
                rec = ingest.receive(
                    conn, path, station=by_slug[path.parent.name].name, origin="demo", actor="demo",
                    settings=settings,
                )
            file_ids.append(rec.id)
            if i % 100 == 0:
                say(f"demo: received {i}/{len(paths)} files")
    jobs.queue_imports(url, file_ids)
    say(f"demo: {len(file_ids)} files queued for import, {known} already imported")
    return {"stations": [s.name for s in STATIONS], "queued": len(file_ids), "known": known,
            "file_ids": file_ids, "start": origin, "end": end}


def _ensure_demo_station(conn, st: DemoStation) -> None:
    from core import db, ingest

    row = ingest.ensure_station(
        conn, st.name, "demo", latitude=st.latitude, longitude=st.longitude,
        elevation_m=st.elevation_m, notes="synthetic demo mast",
    )
    if not conn.execute("SELECT 1 FROM logger WHERE station_id = %s AND serial = %s",
                        (row["id"], st.logger_serial)).fetchone():
        db.fetch_one(conn, "insert_logger", station_id=row["id"], oem="Campbell Scientific",
                     model=st.logger_model, serial=st.logger_serial, utc_offset_minutes=0,
                     timestamp_is_end=True, interval_s=600)


def wait_for_import(file_ids: list[int], stop: threading.Event,
                    report: Callable[[str], None], every_s: float = 5.0) -> None:
    """Report the import progress of ``file_ids`` until done (or ``stop`` is set)."""
    from core import db

    with db.connect(autocommit=True) as conn:
        while not stop.is_set():
            counts = {r["status"]: r["n"] for r in db.fetch_all(conn, "file_status_counts", ids=file_ids)}
            done = counts.get("imported", 0) + counts.get("failed", 0)
            report(f"demo import: {done}/{len(file_ids)} files done"
                   + (f", {counts['failed']} failed" if counts.get("failed") else ""))
            if done >= len(file_ids):
                return
            stop.wait(every_s)


# --- the demo's sources: a live logger, and one that fails ------------------------------

#: The station whose logger keeps writing while ``up --demo`` runs, the folder under HOME it
#: writes into, and the folder source that fetches from there.
LIVE_STATION = "Ballymore Hill"
LOGGER_FOLDER = "demo-logger"
LIVE_SOURCE = "Ballymore Hill logger"
#: A telemetry server that refuses connections (nothing listens on port 1): its runs fail at once
#: with ``host unreachable``, and the Overview says so for Curlew Point.
FAILING_SOURCE = "Curlew Point telemetry"
FAILING_URL = "sftp://127.0.0.1:1/curlew-point"


def demo_sources(home_dir: Path) -> list[dict]:
    """The definitions of the demo's two sources in the home ``home_dir``."""
    return [
        {"name": LIVE_SOURCE, "kind": "folder", "url": str(home_dir / LOGGER_FOLDER), "station": LIVE_STATION,
         "include": ["*.dat"], "every_minutes": 2},
        {"name": FAILING_SOURCE, "kind": "sftp", "url": FAILING_URL, "station": "Curlew Point",
         "every_minutes": 15, "timeout_s": 5},
    ]


def ensure_demo_sources() -> list[str]:
    """Define the demo's sources in the current home unless they exist (an admin's changes to
    them stay); returns the names of those added."""
    from core import db, sources
    from core.settings import get_settings

    home_dir = get_settings().home.resolve()
    (home_dir / LOGGER_FOLDER).mkdir(parents=True, exist_ok=True)
    added = []
    with db.connect() as conn, db.translate():
        for fields in demo_sources(home_dir):
            with conn.transaction():
                if sources.get_source(conn, fields["name"], missing_ok=True) is None:
                    sources.add_source(conn, "demo", **fields)
                    added.append(fields["name"])
    return added


def write_logger_file(folder: Path, origin: date, since: datetime, end: datetime, seed: int = 7) -> Path | None:
    """Write the records of :data:`LIVE_STATION` stamped after ``since`` up to ``end`` (10-minute
    steps) as one TOA5 file ``<slug>_Met10min_YYYYMMDD_HHMM.dat`` (the last stamp) in ``folder``,
    as its logger would. The records are those of :func:`generate` for the demo site that
    begins on ``origin`` (same RECORD numbers, same values), so they continue its files. None
    when there is no record in that span."""
    since, end = _floor_step(since), _floor_step(end)
    if end <= since:
        return None
    st = next(s for s in STATIONS if s.name == LIVE_STATION)  # logs all year: no gap to leave out
    ts = _timeline(origin, end)
    header, body, offsets = _station_table(st, ts, seed, faults(origin, end))
    lo = int(np.searchsorted(ts, _np(since), side="right"))
    path = Path(folder) / f"{st.slug}_{st.table}_{end:%Y%m%d_%H%M}.dat"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")  # a source never fetches a .tmp file
    tmp.write_bytes(header + body[offsets[lo]:])
    os.replace(tmp, path)
    return path


def run_logger(folder: Path, origin: date, since: datetime, stop: threading.Event, every_s: float = 20.0,
               clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """The demo logger: until ``stop`` is set, write each new 10-minute record after ``since``
    into ``folder`` (:func:`write_logger_file`) as soon as its period has ended."""
    last = _floor_step(since)
    while not stop.is_set():
        step = _floor_step(clock())
        if step > last:
            try:
                path = write_logger_file(folder, origin, last, step)
                logger.info("demo logger: wrote %s", path)
                last = step
            except OSError:  # a full disk, say: try again next time
                logger.exception("demo logger: could not write into %s", folder)
        stop.wait(every_s)
