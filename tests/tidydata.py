"""Tidy snapshots of a small, known met mast, written the way the worker writes them.

:func:`write_snapshot` writes one Parquet file per station in the tidy layout (one row per
value: ``time``, ``station``, ``channel``, ``measurement_type``, ``height_m``,
``orientation_deg``, ``statistic``, ``unit``, ``value``, ``flag``): anemometers at 80, 60 and
40 m on two booms (the SW cup reads ``ratio`` × the NE cup), vanes at 80 and 60 m, a
temperature, and a power-law profile with a known shear exponent, so that each example query
has an answer to check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.export_writers import TIDY_SCHEMA

START = datetime(2025, 1, 1, tzinfo=UTC)
HEIGHTS = (80.0, 60.0, 40.0)
SHEAR = 0.2  # the power-law exponent of the profile
RATIO = 1.02  # SW cup / NE cup


def mast_table(station: str, days: int, *, seed: int = 1, gap: tuple[int, int] | None = None) -> pa.Table:
    """``days`` of 10-minute values of one station; ``gap``: steps [a, b) missing everywhere."""
    rng = np.random.default_rng(seed)
    n = days * 144
    times = np.datetime64(START.replace(tzinfo=None), "us") + np.arange(n) * np.timedelta64(10, "m")
    keep = np.ones(n, bool)
    if gap:
        keep[gap[0]:gap[1]] = False
    v80 = 4.0 + 6.0 * rng.random(n)  # 4..10 m/s at 80 m: every value above 3 m/s at each height
    direction = rng.random(n) * 360.0
    columns: list[tuple[str, str, float | None, float | None, str, str, np.ndarray]] = []
    for h in HEIGHTS:
        ne = v80 * (h / 80.0) ** SHEAR
        columns.append((f"WS_{h:g}m_NE_Avg", "wind_speed", h, 45.0, "avg", "m/s", ne))
        columns.append((f"WS_{h:g}m_SW_Avg", "wind_speed", h, 225.0, "avg", "m/s", ne * RATIO))
        columns.append((f"WS_{h:g}m_NE_Std", "wind_speed", h, 45.0, "sd", "m/s", ne * 0.1))
    for h in HEIGHTS[:2]:
        columns.append((f"WD_{h:g}m_Avg", "wind_direction", h, 45.0, "avg", "deg", direction))
    columns.append(("T_2m_Avg", "air_temperature", 2.0, None, "avg", "C", 5.0 + rng.normal(0, 1, n)))
    parts = []
    for name, kind, h, o, stat, unit, values in columns:
        m = int(keep.sum())
        parts.append(pa.table({
            "time": pa.array(times[keep], pa.timestamp("us", tz="UTC")),
            "station": pa.array([station] * m), "channel": pa.array([name] * m),
            "measurement_type": pa.array([kind] * m), "height_m": pa.array([h] * m, pa.float64()),
            "orientation_deg": pa.array([o] * m, pa.float64()), "statistic": pa.array([stat] * m),
            "unit": pa.array([unit] * m), "value": pa.array(values[keep], pa.float64()),
            "flag": pa.array([None] * m, pa.string()),
        }))
    table = pa.concat_tables(parts).sort_by([("time", "ascending")])
    return table.cast(TIDY_SCHEMA)


def write_snapshot(folder: Path, stations: dict[str, int], **kw) -> list[Path]:
    """One tidy Parquet file per station (name -> days); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (station, days) in enumerate(stations.items()):
        path = folder / f"{station.replace(' ', '_')}.parquet"
        pq.write_table(mast_table(station, days, seed=i + 1, **kw), path)
        paths.append(path)
    return paths
