"""docs/notebooks/example.ipynb runs, every cell, against a test server through a reader role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from core import reader_roles

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "example.ipynb"


@pytest.fixture
def mast(conn):
    """Two anemometers (40 m and 80 m) over two months, a flag and a calibration period."""
    sid = conn.execute("INSERT INTO station (name) VALUES ('Notebook Hill') RETURNING id").fetchone()["id"]
    start, n = datetime(2024, 5, 20, tzinfo=UTC), 6 * 24 * 20
    times = [start + i * timedelta(minutes=10) for i in range(n)]
    base = np.random.default_rng(3).weibull(2.0, n) * 8
    ids = {}
    for h in (40.0, 80.0):
        point = conn.execute(
            "INSERT INTO measurement_point (station_id, name, measurement_type, height_m, unit) "
            "VALUES (%s, %s, 'wind_speed', %s, 'm/s') RETURNING id", (sid, f"WS{h:g}", h)).fetchone()["id"]
        ids[h] = conn.execute(
            "INSERT INTO channel (station_id, column_name, statistic, measurement_point_id, mapped) "
            "VALUES (%s, %s, 'avg', %s, true) RETURNING id", (sid, f"Spd{h:g}_Avg", point)).fetchone()["id"]
    with conn.cursor().copy("COPY reading (channel_id, time, value, source_file_id) FROM STDIN") as cp:
        for h, cid in ids.items():
            for t, v in zip(times, base * (h / 40) ** 0.2 + 0.3, strict=True):
                cp.write_row((cid, t, float(v), 1))
    conn.execute("INSERT INTO calibration (measurement_point_id, logger_slope, logger_offset, cal_slope, cal_offset) "
                 "SELECT id, 0.8, 0.2, 0.79, 0.25 FROM measurement_point WHERE name = 'WS80'")
    conn.execute("INSERT INTO flag (station_id, start_time, end_time, whole_station, category, author) "
                 "VALUES (%s, %s, %s, true, 'icing', 'ana')", (sid, start, start + timedelta(days=1)))


def test_example_notebook_runs_through_a_reader_role(conn, db_url, mast, monkeypatch, tmp_path):
    name = f"sm_nb_{uuid.uuid4().hex[:8]}"
    made = reader_roles.ensure(conn, name, connections=3)
    try:
        monkeypatch.setenv("STATIONMANAGER_READER_URL", reader_roles.reader_url(db_url, name, made["password"]))
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                       ).execute()  # raises CellExecutionError when a cell fails
    finally:
        reader_roles.drop(conn, name)
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Notebook Hill" in text and "mean shear exponent 40 m → 80 m" in text
    assert "refused: permission denied for view stations" in text
