"""Exports: every format and option on a real sample mast, reuse, clean-up and round trips.

The mast is brightwind's Windographer sample (29 channels, 2016-01-09 15:30 .. 01-10 23:50,
10-minute steps with gaps). Builds run in the test process (``build_export``), through a
real procrastinate worker, or through the CLI.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core import calibrations, cli, exports, flags, ingest
from core.exports import ExportError, ExportRequest
from core.formats.generic import GenericMapping

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE = DATA / "windographer" / "windographer_demo_data1.txt"
STATION = "Sample Mast"
FIRST, LAST = datetime(2016, 1, 9, 15, 30, tzinfo=UTC), datetime(2016, 1, 10, 23, 50, tzinfo=UTC)
STEPS = int((LAST - FIRST) / timedelta(minutes=10)) + 1  # 195 time steps, 188 of them with data


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def import_file(conn, settings, path: Path, station: str) -> dict:
    with conn.transaction():
        rec = ingest.receive(conn, path, station=station, settings=settings)
    row = ingest.import_file(rec.id)
    assert row["status"] == "imported", row["error"]
    return row


@pytest.fixture
def mast(conn, settings):
    import_file(conn, settings, SAMPLE, STATION)
    conn.execute("UPDATE station SET latitude = 53.3049, longitude = -6.212, elevation_m = 12 WHERE name = %s",
                 (STATION,))
    return conn


def channel_ids(conn, station: str = STATION) -> dict[str, int]:
    rows = conn.execute("SELECT c.column_name, c.id FROM channel c JOIN station s ON s.id = c.station_id "
                        "WHERE s.name = %s", (station,)).fetchall()
    return {r["column_name"]: r["id"] for r in rows}


def readings(conn, station: str = STATION) -> pd.DataFrame:
    """The station's readings, wide: one column per logger column name."""
    rows = conn.execute(
        "SELECT c.column_name, r.time, r.value FROM reading r JOIN channel c ON c.id = r.channel_id "
        "JOIN station s ON s.id = c.station_id WHERE s.name = %s", (station,)).fetchall()
    return pd.DataFrame(rows).pivot(index="time", columns="column_name", values="value").sort_index()


def build(conn, actor: str = "ana", **kw) -> dict:
    """Request an export and build it here; the finished row."""
    row = exports.request_export(conn, ExportRequest(station=kw.pop("station", STATION), **kw), actor)
    if row["status"] == "queued":
        row = exports.build_export(row["id"])
    assert row["status"] == "done", row["error"]
    return row


def text_table(path: Path, sep: str) -> tuple[list[str], pd.DataFrame]:
    """(lines before the table, the table) of a Windographer or CSV export."""
    raw = path.read_bytes().decode("utf-8")
    lines = raw.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith(("Date/Time", "Timestamp")))
    table = pd.read_csv(io.StringIO("\n".join(lines[head:])), sep=sep, dtype={0: str})
    return lines[:head], table


def label_of(row: dict, column_name: str) -> str:
    return next(c["header"] for c in row["provenance"]["columns"] if c["column_name"] == column_name)


# --- formats ------------------------------------------------------------------------------------


def test_windographer_export_has_windographer_header_every_step_and_crlf(mast, settings):
    row = build(mast, format="windographer", calibrated=False, exclude_categories=())
    path = exports.export_file(row)
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n")  # CRLF line ends, as Windographer writes
    head, table = text_table(path, "\t")
    assert head[0].startswith("Created ") and "StationManager" in head[0]
    assert "Site = Sample Mast" in head
    assert "Latitude = N 53.304900" in head and "Longitude = W 6.212000" in head and "Elevation = 12 m" in head
    assert "Time stamps indicate the beginning of the time step." in head
    assert table.columns[0] == "Date/Time"
    assert {"Speed 80 m N Avg", "Speed 80 m N SD", "Direction 78 m S SD", "Temperature 2 m Avg"} <= set(table.columns)
    assert len(table) == STEPS == row["n_rows"]
    assert table["Date/Time"].iloc[0] == "2016-01-09 15:30" and table["Date/Time"].iloc[-1] == "2016-01-10 23:50"
    # 15:40 is followed by 17:00 in the file: the 7 steps between are present and blank
    gap = table[(table["Date/Time"] > "2016-01-09 15:40") & (table["Date/Time"] < "2016-01-09 17:00")]
    assert len(gap) == 7 and gap.iloc[:, 1:].isna().all().all()
    prov = json.loads(exports.provenance_file(row).read_text())
    assert prov["software"]["name"] == "StationManager" and prov["counts"]["rows"] == STEPS
    assert set(prov["inputs"]) == {"software", "data", "flags", "calibrations", "metadata"}


def test_csv_export_has_iso_stamps_with_offset_and_gap_rows(mast):
    row = build(mast, format="csv", calibrated=False, exclude_categories=())
    head, table = text_table(exports.export_file(row), ",")
    assert head == []  # nothing before the header: any CSV reader finds it
    assert table.columns[0] == "Timestamp"
    assert table["Timestamp"].iloc[0] == "2016-01-09T15:30:00+00:00"
    assert len(table) == STEPS
    assert table.iloc[:, 1:].isna().all(axis=1).sum() == STEPS - 188


def test_zip_export_holds_one_csv_per_measurement_type(mast):
    row = build(mast, format="zip", calibrated=False, exclude_categories=())
    with zipfile.ZipFile(exports.export_file(row)) as zf:
        names = zf.namelist()
        types = {n.rsplit("_", 1)[-1] for n in names if n.endswith(".csv")}
        speed = pd.read_csv(zf.open(next(n for n in names if n.endswith("wind_speed.csv"))))
        assert any(n.endswith(".provenance.json") for n in names)
    assert {"speed.csv", "direction.csv", "temperature.csv"} <= types
    assert len(speed) == STEPS and all(c.startswith("Speed") for c in speed.columns[1:])


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_parquet_export_wide_and_long(mast, layout):
    row = build(mast, format="parquet", parquet_layout=layout, calibrated=False, exclude_categories=())
    table = pq.read_table(exports.export_file(row))
    ids = channel_ids(mast)
    original = readings(mast)
    label = label_of(row, "Spd80mN")
    if layout == "wide":
        df = table.to_pandas().set_index("time")
        assert len(df) == STEPS
        got = df[label].dropna()
    else:
        df = table.to_pandas()
        assert len(df) == STEPS * len(row["provenance"]["columns"])
        got = df[df["channel_id"] == ids["Spd80mN"]].set_index("time")["value"].dropna()
    pd.testing.assert_series_equal(got, original["Spd80mN"].dropna(), check_names=False, check_index_type=False,
                                   check_freq=False)
    assert b"stationmanager.provenance" in pq.read_metadata(exports.export_file(row)).metadata


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["windographer", "csv"])
def test_export_reimported_through_our_parsers_gives_the_same_values(mast, settings, tmp_path, fmt):
    row = build(mast, format=fmt, calibrated=False, exclude_categories=())
    copy = tmp_path / exports.export_file(row).name
    copy.write_bytes(exports.export_file(row).read_bytes())
    if fmt == "csv":  # a CSV cannot say its stamps start the period (Windographer's header does)
        with mast.transaction():
            ingest.set_file_mapping(mast, "Round Trip", GenericMapping(timestamp_is_end=False), "ana")
    back = import_file(mast, settings, copy, "Round Trip")
    assert back["format"] == ("windographer" if fmt == "windographer" else "generic")
    before, after = readings(mast), readings(mast, "Round Trip")
    after = after.rename(columns={split(h): c["column_name"] for c in row["provenance"]["columns"]
                                  for h in [c["header"]]})
    assert sorted(after.columns) == sorted(before.columns)
    pd.testing.assert_frame_equal(after[before.columns], before, check_freq=False)  # exactly equal


def split(header: str) -> str:
    from core.formats.generic import split_unit

    return split_unit(header)[0]


# --- options -------------------------------------------------------------------------------------


def test_channels_and_measurement_types_choose_the_columns(mast):
    ids = channel_ids(mast)
    row = build(mast, format="csv", channel_ids=(ids["T2m"], ids["Spd40mS"]))
    assert [c["column_name"] for c in row["provenance"]["columns"]] == ["Spd40mS", "T2m"]
    row = build(mast, format="csv", measurement_types=("wind_direction",))
    assert {c["measurement_type"] for c in row["provenance"]["columns"]} == {"wind_direction"}
    assert len(row["provenance"]["columns"]) == 6


def test_period_is_clipped_and_every_step_written(mast):
    row = build(mast, format="csv", start=utc(2016, 1, 9, 16), end=utc(2016, 1, 9, 18))
    _, table = text_table(exports.export_file(row), ",")
    assert list(table["Timestamp"]) == [f"2016-01-09T{h}:{m}0:00+00:00" for h in (16, 17) for m in range(6)]
    assert table.iloc[:6, 1:].isna().all().all() and table.iloc[6:, 1:].notna().any(axis=1).all()


def test_flagged_values_become_missing(mast):
    ids = channel_ids(mast)
    flags.add_flag(mast, STATION, [ids["Spd80mN"]], utc(2016, 1, 10, 0), utc(2016, 1, 10, 1), "icing",
                   author="ana")
    flags.add_flag(mast, STATION, "station", utc(2016, 1, 10, 2), utc(2016, 1, 10, 2, 20), "maintenance",
                   author="ana")
    label = None

    def column(**kw) -> pd.Series:
        nonlocal label
        row = build(mast, format="csv", calibrated=False, **kw)
        label = label_of(row, "Spd80mN")
        _, t = text_table(exports.export_file(row), ",")
        return t.set_index("Timestamp")[label]

    every = column()  # default: every flag category removed
    assert every["2016-01-10T00:00:00+00:00":"2016-01-10T00:50:00+00:00"].isna().all()
    assert every["2016-01-10T02:00:00+00:00":"2016-01-10T02:10:00+00:00"].isna().all()
    assert every.notna().sum() == 188 - 6 - 2
    kept = column(exclude_categories=())
    assert kept.notna().sum() == 188
    only_maintenance = column(exclude_categories=("maintenance",))
    assert only_maintenance.notna().sum() == 188 - 2
    assert only_maintenance["2016-01-10T00:00:00+00:00"] == kept["2016-01-10T00:00:00+00:00"]


def add_calibration(conn, column: str, valid_from, valid_to, slopes=(0.765, 0.35, 0.8, 0.2)) -> int:
    point = conn.execute("SELECT measurement_point_id AS p FROM channel WHERE column_name = %s",
                         (column,)).fetchone()["p"]
    made = calibrations.add_calibration(conn, point, valid_from, valid_to, *slopes, "cert 1", "ana")
    return made["id"] if isinstance(made, dict) else made


def test_calibrated_export_recalibrates_and_says_which_spans_were_not(mast):
    cut = utc(2016, 1, 10)
    add_calibration(mast, "Spd80mN", cut, None)
    raw = build(mast, format="parquet", calibrated=False, exclude_categories=())
    cal = build(mast, format="parquet", exclude_categories=())
    r = pq.read_table(exports.export_file(raw)).to_pandas().set_index("time")
    c = pq.read_table(exports.export_file(cal)).to_pandas().set_index("time")
    avg, sd = label_of(cal, "Spd80mN"), label_of(cal, "Spd80mNStd")
    before, after = c.index < pd.Timestamp(cut), c.index >= pd.Timestamp(cut)
    pd.testing.assert_series_equal(c.loc[before, avg], r.loc[before, avg])  # no calibration: as logged
    expected = (r.loc[after, avg] - 0.35) / 0.765 * 0.8 + 0.2
    np.testing.assert_allclose(c.loc[after, avg], expected, rtol=1e-12)
    np.testing.assert_allclose(c.loc[after, sd], r.loc[after, sd] * 0.8 / 0.765, rtol=1e-12)
    other = label_of(cal, "Spd60mN")
    pd.testing.assert_series_equal(c[other], r[other])
    unc = {u["column_name"]: u["spans"] for u in cal["provenance"]["calibration"]["uncalibrated"]}
    assert unc["Spd80mN"] == [[FIRST.isoformat(), cut.isoformat()]]
    assert "Spd60mN" in unc and "Spd80mNStd" in unc


def test_hourly_and_daily_averaging(mast):
    row = build(mast, format="parquet", averaging="1h", calibrated=False, exclude_categories=())
    got = pq.read_table(exports.export_file(row)).to_pandas().set_index("time")
    raw = readings(mast)
    hour = raw.index.floor("1h")
    assert len(got) == 33  # 15:00 on the 9th .. 23:00 on the 10th
    lab = lambda name: label_of(row, name)  # noqa: E731
    np.testing.assert_allclose(got[lab("Spd80mN")].dropna(), raw["Spd80mN"].groupby(hour).mean(), rtol=1e-12)
    np.testing.assert_allclose(got[lab("Spd80mNMax")].dropna(), raw["Spd80mNMax"].groupby(hour).max())
    # sd: sqrt(mean(sd²) + population variance of the 10-minute means)
    g = pd.DataFrame({"s2": raw["Spd80mNStd"] ** 2, "m": raw["Spd80mN"]}).groupby(hour)
    expected = np.sqrt(g["s2"].mean() + g["m"].var(ddof=0))
    np.testing.assert_allclose(got[lab("Spd80mNStd")].dropna(), expected, rtol=1e-12)
    # direction: vector mean
    d = np.deg2rad(raw["Dir78mS"])
    vec = np.mod(np.rad2deg(np.arctan2(np.sin(d).groupby(hour).sum(), np.cos(d).groupby(hour).sum())), 360)
    np.testing.assert_allclose(got[lab("Dir78mS")].dropna(), vec, rtol=1e-12)
    daily = build(mast, format="csv", averaging="1d", calibrated=False, exclude_categories=())
    _, t = text_table(exports.export_file(daily), ",")
    assert list(t["Timestamp"]) == ["2016-01-09T00:00:00+00:00", "2016-01-10T00:00:00+00:00"]


def test_time_zone_of_the_stamps(mast):
    row = build(mast, format="csv", timezone="Europe/Berlin", calibrated=False, exclude_categories=())
    _, t = text_table(exports.export_file(row), ",")
    assert t["Timestamp"].iloc[0] == "2016-01-09T16:30:00+01:00"
    row = build(mast, format="windographer", timezone="Etc/GMT-1")
    head, t = text_table(exports.export_file(row), "\t")
    assert t["Date/Time"].iloc[0] == "2016-01-09 16:30" and any("UTC+01:00" in h for h in head)
    # local days: 00:00 in Berlin is 23:00 UTC
    row = build(mast, format="csv", timezone="Europe/Berlin", averaging="1d")
    _, t = text_table(exports.export_file(row), ",")
    assert list(t["Timestamp"]) == ["2016-01-09T00:00:00+01:00", "2016-01-10T00:00:00+01:00",
                                    "2016-01-11T00:00:00+01:00"]


# --- bad requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "message"), [
    ({"format": "xlsx"}, "format 'xlsx' is not one of"),
    ({"format": "csv", "averaging": "5min"}, "averaging '5min' is not one of"),
    ({"format": "csv", "timezone": "Mars/Olympus"}, "time zone 'Mars/Olympus' is unknown"),
    ({"format": "csv", "timezone": "Europe"}, "time zone 'Europe' is unknown"),  # a folder of zones
    ({"format": "windographer", "timezone": "Europe/Dublin"}, "has daylight saving time"),
    ({"format": "csv", "exclude_categories": ("rain",)}, "flag category 'rain' is not one of"),
    ({"format": "csv", "start": utc(2016, 2, 1), "end": utc(2016, 1, 1)}, "the end must come after the start"),
    ({"format": "csv", "channel_ids": ()}, "choose at least one channel"),
    ({"format": "csv", "channel_ids": (999999,)}, "has no channel with id 999999"),
    ({"format": "csv", "measurement_types": ("solar_radiation",)}, "has no channels of those measurement types"),
    ({"format": "csv", "station": "Nowhere"}, "there is no station 'Nowhere'"),
    ({"format": "csv", "start": utc(2020, 1, 1)}, "no readings from 2020-01-01 00:00 UTC on"),
    ({"format": "parquet", "parquet_layout": "tall"}, "parquet layout 'tall' is not one of"),
    ({"format": "csv", "start": utc(1, 1, 1), "end": utc(9999, 1, 1), "timezone": "Europe/Dublin"},
     r"about 525,\d{3},\d{3} time steps is more than STATIONMANAGER_EXPORT_MAX_ROWS"),
])
def test_bad_requests_are_refused_with_a_reason(mast, kw, message):
    req = ExportRequest(**{"station": STATION, **kw})
    with pytest.raises(ExportError, match=message):
        exports.request_export(mast, req, "ana")
    assert mast.execute("SELECT count(*) AS n FROM export").fetchone()["n"] == 0


def test_too_many_rows_is_refused(mast, monkeypatch):
    monkeypatch.setenv("STATIONMANAGER_EXPORT_MAX_ROWS", "100")
    import core.settings

    core.settings._current = None
    with pytest.raises(ExportError, match="195 time steps is more than STATIONMANAGER_EXPORT_MAX_ROWS"):
        exports.request_export(mast, ExportRequest(STATION, "csv"), "ana")


def test_station_without_readings_is_refused(conn):
    ingest.ensure_station(conn, "Empty Mast")
    with pytest.raises(ExportError, match="no channels mapped"):
        exports.request_export(conn, ExportRequest("Empty Mast", "csv"), "ana")


# --- reuse ---------------------------------------------------------------------------------------


def test_unchanged_export_is_reused_and_changes_rebuild(mast, settings, tmp_path):
    first = build(mast, format="windographer")
    again = exports.request_export(mast, ExportRequest(STATION, "windographer"), "bob")
    assert again["reused"] and again["status"] == "done" and again["reused_from"] == first["id"]
    assert again["requested_by"] == "bob" and exports.export_file(again) == exports.export_file(first)
    # a raw export does not depend on calibrations; a calibrated one does
    raw = build(mast, format="csv", calibrated=False)
    ids = channel_ids(mast)
    add_calibration(mast, "Spd80mN", None, None)
    assert exports.request_export(mast, ExportRequest(STATION, "csv", calibrated=False), "ana")["reused"]
    after_cal = build(mast, format="windographer")
    assert not after_cal["reused"] and after_cal["id"] != first["id"]
    # a new flag: rebuilt (but not an export that keeps flagged values)
    keep = build(mast, format="csv", calibrated=False, exclude_categories=())
    flags.add_flag(mast, STATION, [ids["T2m"]], utc(2016, 1, 10), utc(2016, 1, 10, 1), "suspect", author="ana")
    assert not exports.request_export(mast, ExportRequest(STATION, "windographer"), "ana")["reused"]
    assert exports.request_export(mast, ExportRequest(STATION, "csv", calibrated=False, exclude_categories=()),
                                  "ana")["reused_from"] == keep["id"]
    # a new file: rebuilt
    extra = tmp_path / "extra.csv"
    extra.write_text("Timestamp,Spd80mN\n2016-01-11 00:10:00,5.5\n")
    import_file(mast, settings, extra, STATION)
    assert not exports.request_export(mast, ExportRequest(STATION, "csv", calibrated=False), "ana")["reused"]
    assert raw["id"]


def test_same_request_while_queued_is_not_built_twice(mast):
    a = exports.request_export(mast, ExportRequest(STATION, "csv"), "ana")
    b = exports.request_export(mast, ExportRequest(STATION, "csv"), "bob")
    assert a["status"] == "queued" and b["id"] == a["id"]


# --- clean-up ------------------------------------------------------------------------------------


def test_cleanup_deletes_old_files_and_keeps_the_rows(mast, settings):
    old = build(mast, format="csv")
    reused = exports.request_export(mast, ExportRequest(STATION, "csv"), "bob")
    new = build(mast, format="windographer")
    mast.execute("UPDATE export SET finished_at = now() - interval '31 days' WHERE id = ANY(%s)",
                 ([old["id"], reused["id"]],))
    path = exports.export_file(old)
    assert exports.cleanup(mast) == 1
    assert not path.exists() and not path.parent.exists()
    for i in (old["id"], reused["id"]):
        row = exports.get_export(mast, i)
        assert row["status"] == "expired"
        with pytest.raises(ExportError, match="cleaned up after the retention period"):
            exports.export_file(row)
    assert exports.export_file(exports.get_export(mast, new["id"])).is_file()
    assert exports.cleanup(mast) == 0
    # an expired export is not reused: the same request builds again
    assert exports.request_export(mast, ExportRequest(STATION, "csv"), "ana")["status"] == "queued"


# --- the worker and the CLI ------------------------------------------------------------------------


def test_a_real_worker_builds_the_export_and_reports_progress(mast, db_url, settings):
    row = exports.request_export(mast, ExportRequest(STATION, "windographer"), "ana")
    assert row["status"] == "queued" and row["message"] == "waiting for a worker"
    env = {**os.environ, "STATIONMANAGER_DATABASE_URL": db_url, "STATIONMANAGER_HOME": str(settings.home)}
    done = subprocess.run([sys.executable, "-m", "core.cli", "worker", "--once"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    row = exports.get_export(mast, row["id"])
    assert row["status"] == "done" and row["progress"] == 1.0 and row["n_rows"] == STEPS
    assert row["started_at"] <= row["finished_at"] and row["size_bytes"] == exports.export_file(row).stat().st_size
    assert [r["id"] for r in exports.list_exports(mast, STATION)] == [row["id"]]
    assert exports.list_exports(mast, "Other") == []


def test_cli_builds_the_export_itself_when_no_worker_runs(mast, tmp_path, capsys):
    out = tmp_path / "mast.txt"
    code = cli.main(["export", "--station", STATION, "--format", "windographer", "--channels", "Spd80mN,T2m",
                     "--raw", "--include-flagged", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == STEPS and Path(result["file"]) == out
    _, table = text_table(out, "\t")
    assert list(table.columns) == ["Date/Time", "Speed 80 m N Avg", "Temperature 2 m Avg"]
    assert out.with_name("mast.provenance.json").is_file()
    code = cli.main(["export", "--station", STATION, "--format", "csv", "--timezone", "Nowhere/Land"])
    assert code == 2 and "time zone 'Nowhere/Land' is unknown" in capsys.readouterr().err


def test_a_failed_build_says_why(mast):
    row = exports.request_export(mast, ExportRequest(STATION, "csv"), "ana")
    mast.execute("DELETE FROM reading")  # the data went away before the worker got to it
    row = exports.build_export(row["id"])
    assert row["status"] == "failed" and "have no readings" in row["error"]



# --- logger column names as headers ----------------------------------------------------------------

LOGGER_NAMES = ["Spd80mN", "Spd80mS", "Spd80mNStd", "T2m", "Dir78mS"]


def _mapping_checks(row: dict, choice: str) -> None:
    """The provenance maps every written header to its column name, descriptive header and channel."""
    prov = json.loads(exports.provenance_file(row).read_text())
    assert prov["headers"]["written"] == choice
    mapping = prov["headers"]["columns"]
    assert [m["channel_id"] for m in mapping] == [c["channel_id"] for c in prov["columns"]]
    for m, c in zip(mapping, prov["columns"], strict=True):
        assert m["column_name"] == c["column_name"] and m["descriptive"] == c["header"]
        assert m["header"] == (c["column_name"] if choice == "logger" else c["header"])
    assert "renamed" in prov["headers"]["rule"]


@pytest.mark.parametrize("fmt", ["windographer", "csv"])
def test_text_exports_with_logger_column_names(mast, fmt):
    row = build(mast, format=fmt, calibrated=False, exclude_categories=(), headers="logger")
    assert row["params"]["headers"] == "logger"
    head, table = text_table(exports.export_file(row), "\t" if fmt == "windographer" else ",")
    assert set(LOGGER_NAMES) <= set(table.columns)
    assert not any("[" in c or c.startswith(("Speed ", "Direction ")) for c in table.columns)
    assert table.columns.is_unique and len(table.columns) == 1 + len(row["provenance"]["columns"])
    if fmt == "windographer":
        assert "Column headers = logger column names (mapping in the provenance)" in head
    original = readings(mast)
    for name in LOGGER_NAMES:  # each column holds that logger column's readings, at the same steps
        got = table.set_index(table.columns[0])[name].dropna()
        assert got.tolist() == original[name].dropna().tolist()
    _mapping_checks(row, "logger")


def test_zip_export_with_logger_column_names(mast):
    row = build(mast, format="zip", calibrated=False, exclude_categories=(), headers="logger")
    with zipfile.ZipFile(exports.export_file(row)) as zf:
        names = zf.namelist()
        speed = pd.read_csv(zf.open(next(n for n in names if n.endswith("wind_speed.csv"))))
        prov = json.loads(zf.read(next(n for n in names if n.endswith(".provenance.json"))))
    assert list(speed.columns[:4]) == ["Timestamp", "Spd80mN", "Spd80mNStd", "Spd80mNMax"]
    assert prov["headers"]["written"] == "logger"


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_parquet_export_with_logger_column_names(mast, layout):
    row = build(mast, format="parquet", parquet_layout=layout, calibrated=False, exclude_categories=(),
                headers="logger")
    df = pq.read_table(exports.export_file(row)).to_pandas()
    original = readings(mast)
    if layout == "wide":
        assert set(LOGGER_NAMES) <= set(df.columns)
        got = df.set_index("time")["Spd80mN"].dropna()
        field = pq.read_schema(exports.export_file(row)).field("Spd80mN")
        assert field.metadata[b"header"] == label_of(row, "Spd80mN").encode()  # the descriptive one
    else:
        assert set(df["channel"]) == {c["column_name"] for c in row["provenance"]["columns"]}
        got = df[df["channel"] == "Spd80mN"].set_index("time")["value"].dropna()
    pd.testing.assert_series_equal(got, original["Spd80mN"].dropna(), check_names=False, check_index_type=False,
                                   check_freq=False)
    _mapping_checks(row, "logger")


def test_descriptive_headers_keep_the_mapping_too(mast):
    row = build(mast, format="csv", calibrated=False, exclude_categories=())
    assert row["params"]["headers"] == "descriptive"
    _, table = text_table(exports.export_file(row), ",")
    assert "Speed 80 m N Avg" in table.columns and "Spd80mN" not in table.columns
    _mapping_checks(row, "descriptive")


def test_header_choice_is_its_own_export(mast):
    descriptive = build(mast, format="csv")
    logger = exports.request_export(mast, ExportRequest(STATION, "csv", headers="logger"), "ana")
    assert not logger["reused"] and logger["params_hash"] != descriptive["params_hash"]
    assert ExportRequest(STATION, "csv").params()["headers"] == "descriptive"
    # an export recorded before the choice existed reads as descriptive
    old = {k: v for k, v in ExportRequest(STATION, "csv").params().items() if k != "headers"}
    assert ExportRequest.from_params(old).headers == "descriptive"
    with pytest.raises(ExportError, match="headers 'column' is not one of: descriptive, logger"):
        exports.request_export(mast, ExportRequest(STATION, "csv", headers="column"), "ana")


def test_logger_names_are_made_unique_where_a_reader_would_confuse_them(mast):
    """Windographer (like spreadsheets) matches headers regardless of case, and a column may be
    named like the time column: such names get a suffix, and the provenance says which."""
    sid = mast.execute("SELECT id FROM station WHERE name = %s", (STATION,)).fetchone()["id"]
    ids = channel_ids(mast)
    for name in ("spd80mn", "Date/Time"):
        cid = mast.execute("INSERT INTO channel (station_id, column_name, statistic) VALUES (%s, %s, 'avg') "
                           "RETURNING id", (sid, name)).fetchone()["id"]
        mast.execute("INSERT INTO reading (channel_id, time, value, source_file_id) "
                     "SELECT %s, %s, 1.5, min(id) FROM source_file", (cid, FIRST))
        ids[name] = cid
    chosen = (ids["Spd80mN"], ids["spd80mn"], ids["Date/Time"])
    row = build(mast, format="windographer", channel_ids=chosen, headers="logger", calibrated=False)
    _, table = text_table(exports.export_file(row), "\t")
    assert list(table.columns) == ["Date/Time", "Spd80mN", "Date/Time_2", "spd80mn_2"]
    prov = row["provenance"]["headers"]["columns"]
    assert {m["column_name"]: m["header"] for m in prov} == {
        "Spd80mN": "Spd80mN", "spd80mn": "spd80mn_2", "Date/Time": "Date/Time_2"}


def test_renamed_logger_column_keeps_each_name_over_its_period(mast):
    """A sensor whose logger column was renamed (column mapping over time) comes out as one
    column per name, each holding the readings logged under it; the provenance says so."""
    ids = channel_ids(mast)
    sid = mast.execute("SELECT id FROM station WHERE name = %s", (STATION,)).fetchone()["id"]
    point = mast.execute("SELECT measurement_point_id FROM channel WHERE id = %s", (ids["T2m"],)).fetchone()["measurement_point_id"]
    new = mast.execute("INSERT INTO channel (station_id, column_name, statistic, measurement_point_id, mapped) "
                       "VALUES (%s, 'AirTemp_Avg', 'avg', %s, true) RETURNING id", (sid, point)).fetchone()["id"]
    change = utc(2016, 1, 10, 12)
    mast.execute("INSERT INTO channel_mapping (channel_id, measurement_point_id, statistic, valid_to) "
                 "VALUES (%s, %s, 'avg', %s)", (ids["T2m"], point, change))
    mast.execute("INSERT INTO channel_mapping (channel_id, measurement_point_id, statistic, valid_from) "
                 "VALUES (%s, %s, 'avg', %s)", (new, point, change))
    mast.execute("INSERT INTO reading (channel_id, time, value, source_file_id) SELECT %s, time, value + 100, "
                 "source_file_id FROM reading "
                 "WHERE channel_id = %s AND time >= %s", (new, ids["T2m"], change))
    mast.execute("DELETE FROM reading WHERE channel_id = %s AND time >= %s", (ids["T2m"], change))
    row = build(mast, format="csv", measurement_types=("air_temperature",), headers="logger", calibrated=False)
    _, table = text_table(exports.export_file(row), ",")
    assert list(table.columns) == ["Timestamp", "AirTemp_Avg", "T2m"]
    before = table[table["Timestamp"] < "2016-01-10T12:00"]
    after = table[table["Timestamp"] >= "2016-01-10T12:00"]
    assert before["AirTemp_Avg"].isna().all() and before["T2m"].notna().any()
    assert after["T2m"].isna().all() and after["AirTemp_Avg"].notna().any()
    cols = {m["column_name"]: m for m in row["provenance"]["headers"]["columns"]}
    assert cols["T2m"]["mapping"] == [{"point": cols["T2m"]["mapping"][0]["point"], "statistic": "avg",
                                       "from": None, "to": change.isoformat()}]
    assert cols["AirTemp_Avg"]["mapping"][0]["from"] == change.isoformat()


def test_cli_export_with_logger_headers(mast, tmp_path, capsys):
    out = tmp_path / "mast.csv"
    code = cli.main(["export", "--station", STATION, "--format", "csv", "--channels", "Spd80mN,T2m",
                     "--headers", "logger", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    _, table = text_table(out, ",")
    assert list(table.columns) == ["Timestamp", "Spd80mN", "T2m"]
    prov = json.loads(out.with_name("mast.provenance.json").read_text())
    assert prov["parameters"]["headers"] == "logger"
