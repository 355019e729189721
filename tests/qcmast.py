"""A faulty 10-minute met mast for scoring the quality checks, independent of core.demo.

:func:`make_mast` simulates ``days`` of 10-minute statistics of a 100 m mast: paired cup
anemometers (booms N and S) at 100, 80 and 60 m with turbulence, stability-dependent shear
and tower shadow; vanes at 98 and 58 m; air temperature at 98 and 2 m with a diurnal
cycle; relative humidity from a dew point; barometric pressure with weather systems and the
semi-diurnal tide. It then injects the faults of :data:`FAULT_KINDS` at known periods
(:class:`Fault`, period-start convention). Everything is seeded.

:func:`write_toa5` writes the mast as Campbell TOA5 files (stamps at period end), the way a
logger would, for tests that import it; :func:`score` compares suggestions with the faults.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

STEP = np.timedelta64(10, "m")
CUP_HEIGHTS = (100, 80, 60)
BOOMS = {"N": 0.0, "S": 180.0}
VANE_HEIGHTS = (98, 58)
STATS = ("Avg", "Std", "Min", "Max")
FAULT_KINDS = ("stuck", "icing", "spike", "humidity_range", "dead_barometer", "gap", "drift")


@dataclass(frozen=True)
class Fault:
    """An injected fault over ``[start, end)`` (naive UTC period starts) in ``columns``
    (``()``: the whole record, a gap)."""

    kind: str
    columns: tuple[str, ...]
    start: datetime
    end: datetime


@dataclass
class Mast:
    times: np.ndarray  # datetime64[us], period starts, gap removed
    columns: dict[str, np.ndarray]
    units: dict[str, str]
    faults: list[Fault]


def cols(base: str, stats: tuple[str, ...] = STATS) -> tuple[str, ...]:
    return tuple(f"{base}_{s}" for s in stats)


def _ar(rng: np.random.Generator, n: int, tau: float, smooth: int = 1) -> np.ndarray:
    """Unit-variance red noise with e-folding time ``tau`` steps (FFT convolution); ``smooth``
    > 1 also box-averages it (smooth steps, as air pressure has)."""
    k = np.convolve(np.exp(-np.arange(int(6 * tau) + 1) / tau), np.ones(smooth))
    k /= np.sqrt(np.sum(k ** 2))
    noise = rng.standard_normal(n + k.size - 1)
    size = 1 << int(np.ceil(np.log2(noise.size + k.size)))
    y = np.fft.irfft(np.fft.rfft(noise, size) * np.fft.rfft(k, size), size)
    return y[k.size - 1:k.size - 1 + n]


def _angdiff(a: np.ndarray, b: float) -> np.ndarray:
    return (a - b + 180.0) % 360.0 - 180.0


def make_mast(days: int = 60, seed: int = 3, start: datetime = datetime(2024, 12, 2)) -> Mast:
    """Simulate the mast and inject the faults (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = days * 144
    t0 = np.datetime64(start, "us")
    t = t0 + np.arange(n) * STEP
    hour = ((t - t.astype("datetime64[D]")) / np.timedelta64(1, "h")) + 1 / 12
    day = np.arange(n) / 144
    night = np.cos(2 * np.pi * (hour - 2) / 24)  # +1 at 02:00, -1 at 14:00
    # wind at 100 m: a mean flow plus weather-scale and hour-scale wander, from the WSW mostly
    u = 4.5 + 4.0 * _ar(rng, n, 250) + 1.6 * _ar(rng, n, 20)
    v = 2.0 + 3.5 * _ar(rng, n, 300) + 1.4 * _ar(rng, n, 15)
    speed = np.hypot(u, v) + 0.3
    direction = (np.degrees(np.arctan2(u, v)) + 180.0) % 360.0  # where the wind comes from
    alpha = np.clip(0.14 + 0.09 * night * np.exp(-speed / 12) + 0.03 * _ar(rng, n, 18), 0.02, 0.4)
    ti = np.clip((0.08 + 0.5 / (speed + 3)) * (1 - 0.25 * night) * np.exp(0.15 * rng.standard_normal(n)),
                 0.03, 0.5)
    out: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}

    def put(base: str, avg: np.ndarray, sd: np.ndarray, unit: str, lo: float = -np.inf, hi: float = np.inf,
            dec: int = 3) -> None:
        g1 = np.clip(2.5 + 0.5 * rng.standard_normal(n), 1.0, 5.0)
        g2 = np.clip(2.9 + 0.6 * rng.standard_normal(n), 1.0, 5.5)
        a = np.round(np.clip(avg, lo, hi), dec)
        for name, x in zip(cols(base), (a, np.round(sd, dec), np.minimum(np.clip(avg - g1 * sd, lo, hi), a),
                                        np.maximum(np.clip(avg + g2 * sd, lo, hi), a))):
            out[name] = np.round(x, dec)
            units[name] = unit

    for h in CUP_HEIGHTS:
        vh = speed * (h / 100) ** alpha
        common = 1 + 0.004 * _ar(rng, n, 2)  # what both cups see alike
        for boom, orient in BOOMS.items():
            lee = _angdiff(direction, orient + 180.0)  # 0: the cup is behind the mast
            side = _angdiff(direction, orient)
            factor = (1 - 0.08 * np.exp(-0.5 * (lee / 20) ** 2)
                      + 0.012 * np.exp(-0.5 * ((np.abs(side) - 90) / 25) ** 2))
            gain = 1 + 0.003 * rng.standard_normal()
            own = 1 + 0.15 * ti * rng.standard_normal(n) * np.sqrt(20 / 600)  # sampling noise of the mean
            cup = np.maximum(vh * factor * gain * common * own, 0.2)
            put(f"WS_{h}m_{boom}", cup, cup * ti * (100 / h) ** 0.2, "m/s", lo=0.0)
    for h in VANE_HEIGHTS:
        veer = (100 - h) / 40 * (4 + 8 * np.maximum(night, 0))
        d = (direction - veer + 1.5 * rng.standard_normal(n)) % 360.0
        sd = np.clip(40 * ti * (1 + 2.0 / speed), 1.0, 100.0)
        out[f"WD_{h}m_Avg"], out[f"WD_{h}m_Std"] = np.round(d, 1) % 360.0, np.round(sd, 2)
        units[f"WD_{h}m_Avg"] = units[f"WD_{h}m_Std"] = "Deg"
    # temperature: winter, diurnal cycle, weather; a cold spell for the icing event
    ice0, ice1 = 14 * 144 + 60, 15 * 144 + 132  # day 14 10:00 .. day 15 22:00 (36 h)
    cold = np.clip(np.minimum((np.arange(n) - ice0 + 72) / 72, (ice1 + 72 - np.arange(n)) / 72), 0, 1)
    synoptic = 3.0 + 3.5 * _ar(rng, n, 400, 36)
    temp2 = synoptic + 2.8 * np.cos(2 * np.pi * (hour - 15) / 24) + 0.2 * _ar(rng, n, 3)
    temp2 = temp2 + cold * (np.minimum(temp2, -3.0 + 0.6 * np.sin(2 * np.pi * hour / 24)) - temp2)
    temp98 = temp2 - 0.6 + 1.8 * np.maximum(night, 0) * np.exp(-speed / 8)
    for h, x in ((98, temp98), (2, temp2)):
        put(f"AirT_{h}m", x, 0.05 + 0.15 * (1 - night) / 2 + 0.02 * rng.random(n), "Deg C", dec=2)
    dew = synoptic - 2.5 - 1.5 * np.exp(0.4 * _ar(rng, n, 100))
    dew = dew + cold * (temp2 - 0.2 - dew)

    def esat(x: np.ndarray) -> np.ndarray:
        return 6.112 * np.exp(17.62 * x / (243.12 + x))

    rh = np.clip(100 * esat(np.minimum(dew, temp2)) / esat(temp2), 5, 100)
    put("RH_2m", rh, 0.2 + 0.01 * (100 - rh), "%", lo=0.0, hi=100.0, dec=2)
    windy = np.convolve(speed, np.ones(36) / 36, "same")  # lows bring wind (6-hour mean)
    bp = 1006 + 9 * _ar(rng, n, 430, 72) - 0.3 * (windy - 8) + 0.6 * np.cos(4 * np.pi * (hour - 10) / 24)
    put("BP_2m", bp, 0.03 + 0.005 * speed, "hPa", dec=2)

    def span(d0: float, d1: float) -> tuple[slice, datetime, datetime]:
        a, b = int(round(d0 * 144)), int(round(d1 * 144))
        return slice(a, b), _dt(t[a]), _dt(t0 + b * STEP)

    faults: list[Fault] = []
    # stuck cup: 60 m S seizes for 30 h
    sl, a, b = span(8 + 5 / 24, 9 + 11 / 24)
    value = out["WS_60m_S_Avg"][sl.start]
    for c in cols("WS_60m_S"):
        out[c][sl] = 0.0 if c.endswith("Std") else value
    faults.append(Fault("stuck", cols("WS_60m_S"), a, b))
    # icing at 100 and 80 m: cups nearly stopped, the 98 m vane frozen (36 h)
    sl, a, b = slice(ice0, ice1), _dt(t[ice0]), _dt(t[ice1])
    iced = []
    for h in (100, 80):
        for boom in BOOMS:
            k = ice1 - ice0
            avg = np.round(np.clip(0.15 + 0.08 * rng.standard_normal(k), 0, 0.4), 3)
            sd = np.round(np.abs(0.005 * rng.standard_normal(k)), 3)
            base = f"WS_{h}m_{boom}"
            out[f"{base}_Avg"][sl], out[f"{base}_Std"][sl] = avg, sd
            out[f"{base}_Min"][sl], out[f"{base}_Max"][sl] = np.maximum(avg - 2 * sd, 0), avg + 2 * sd
            iced += cols(base)
    out["WD_98m_Avg"][sl], out["WD_98m_Std"][sl] = out["WD_98m_Avg"][ice0], 0.0
    faults.append(Fault("icing", tuple(iced) + cols("WD_98m", ("Avg", "Std")), a, b))
    # a single spike on the 80 m N cup
    i = 20 * 144 + 82
    out["WS_80m_N_Avg"][i] += 14.0
    out["WS_80m_N_Max"][i] += 20.0
    faults.append(Fault("spike", cols("WS_80m_N"), _dt(t[i]), _dt(t[i] + STEP)))
    # hygrometer reads far above 100 % for 5 h
    sl, a, b = span(24 + 3 / 24, 24 + 8 / 24)
    bad = 108 + 10 * rng.random(sl.stop - sl.start)
    out["RH_2m_Avg"][sl], out["RH_2m_Min"][sl], out["RH_2m_Max"][sl] = bad, bad - 1, bad + 1
    faults.append(Fault("humidity_range", cols("RH_2m"), a, b))
    # dead barometer: one constant value for 3 days
    sl, a, b = span(28.5, 31.5)
    for c in cols("BP_2m"):
        out[c][sl] = 0.0 if c.endswith("Std") else 1013.25
    faults.append(Fault("dead_barometer", cols("BP_2m"), a, b))
    # slow drift: the 100 m S cup loses 5 % over a day and stays so for 10 days
    sl, a, b = span(42, 52)
    ramp = np.clip(np.arange(sl.stop - sl.start) / 144, 0, 1)
    for c in cols("WS_100m_S"):
        out[c][sl] = np.round(out[c][sl] * (1 - 0.05 * ramp), 3)
    faults.append(Fault("drift", cols("WS_100m_S"), a, b))
    # two days without records
    sl, a, b = span(36 + 7 / 24, 38 + 7 / 24)
    keep = np.ones(n, dtype=bool)
    keep[sl] = False
    faults.append(Fault("gap", (), a, b))
    return Mast(t[keep], {k: v[keep] for k, v in out.items()}, units, faults)


def _dt(x: np.datetime64) -> datetime:
    return x.astype("datetime64[us]").item()


def write_toa5(mast: Mast, folder: Path, station: str, days_per_file: int = 7) -> list[Path]:
    """The mast as TOA5 files of ``days_per_file`` days (stamps at period end, as Campbell
    loggers write them); returns the paths in time order."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(mast.columns)
    head = [["TOA5", station, "CR6", "7781", "CR6.Std.12.01", "CPU:Mast.CR6", "1234", "Ten_Min"],
            ["TIMESTAMP", "RECORD", *names], ["TS", "RN", *(mast.units[c] for c in names)],
            ["", "", *(c.rsplit("_", 1)[1] if c.rsplit("_", 1)[1] in STATS else "Smp" for c in names)]]
    header = "".join(",".join(f'"{x}"' for x in line) + "\r\n" for line in head)
    ends = mast.times + STEP
    first = mast.times[0].astype("datetime64[D]")
    chunk = ((mast.times.astype("datetime64[D]") - first) // np.timedelta64(days_per_file, "D")).astype(int)
    paths = []
    for k in np.unique(chunk):
        rows = np.flatnonzero(chunk == k)
        lines = [header]
        for i in rows:
            stamp = str(ends[i].astype("datetime64[s]")).replace("T", " ")
            vals = ",".join("NAN" if np.isnan(mast.columns[c][i]) else f"{mast.columns[c][i]:g}" for c in names)
            lines.append(f'"{stamp}",{i},{vals}\r\n')
        path = folder / f"{station.replace(' ', '_')}_{k:03d}.dat"
        path.write_text("".join(lines))
        paths.append(path)
    return paths


def score(suggestions: list[tuple[str, tuple[str, ...], datetime, datetime]], faults: list[Fault],
          n_columns: int) -> dict:
    """How well ``suggestions`` (rule, columns, start, end) match ``faults``.

    A fault is found when suggestions naming one of its columns (any, for a gap) cover at
    least 80 % of its period, none of them starting more than 2 h early and (a drift) the
    first starting within 3 days of the drift's start (other faults: within 2 h).
    The false share is the part of all suggested channel-hours (a time-axis suggestion
    counts for every column) that lies outside every fault's columns and period.
    """
    found = {}
    for f in faults:
        hits = [s for s in suggestions if s[2] < f.end and s[3] > f.start
                and (set(s[1]) & set(f.columns) if f.columns else not s[1])]
        covered = _union([(max(s[2], f.start), min(s[3], f.end)) for s in hits])
        length = (f.end - f.start).total_seconds()
        late = timedelta(days=3) if f.kind == "drift" else timedelta(hours=2)
        found[f.kind] = bool(hits) and covered >= 0.8 * length and min(s[2] for s in hits) >= f.start - timedelta(
            hours=2) and min(s[2] for s in hits) <= f.start + late
    total = outside = 0.0
    for rule, columns, a, b in suggestions:
        for c in columns or (None,):
            weight = 1 if c else n_columns
            hours = (b - a).total_seconds() / 3600
            inside = _union([(max(a, f.start), min(b, f.end)) for f in faults
                             if (c in f.columns if c else not f.columns)]) / 3600
            total += weight * hours
            outside += weight * (hours - inside)
    return {"found": found, "channel_hours": total, "outside": outside,
            "false_share": outside / total if total else 0.0}


def _union(spans: list[tuple[datetime, datetime]]) -> float:
    """Seconds covered by the union of ``spans`` (empty ones ignored)."""
    total, end = 0.0, None
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total
