"""Station metadata on a real PostgreSQL: Task 43 imports and column-name conventions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from core import cli, demo, iea43, metadata
from core.errors import NotFound
from core.ingest import ensure_station
from core.metadata import MetadataError, parse_column_name
from tests.unit.test_limits import BAD_DOCUMENTS
from tests.unit.test_metadata import DEMO_DATA_COLUMNS, DEMO_DOC, MM1_DOC

pytestmark = pytest.mark.integration

TABLES = ("station", "logger", "measurement_point", "sensor", "calibration", "channel", "channel_mapping")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def snapshot(conn) -> dict[str, list]:
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in TABLES}  # noqa: S608


def count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]  # noqa: S608


def channel(conn, station: str, column: str) -> dict:
    return conn.execute(
        "SELECT c.*, mp.name AS point, mp.measurement_type, mp.height_m, mp.orientation_deg "
        "FROM channel c JOIN station s ON s.id = c.station_id "
        "LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id "
        "WHERE s.name = %s AND c.column_name = %s", (station, column),
    ).fetchone()


def calibrations(conn, point: str) -> list[tuple]:
    return [tuple(r.values()) for r in conn.execute(
        "SELECT cal.valid_from, cal.valid_to, logger_slope, logger_offset, cal_slope, cal_offset, "
        "s.serial_number FROM calibration cal JOIN measurement_point mp ON mp.id = cal.measurement_point_id "
        "LEFT JOIN sensor s ON s.id = cal.sensor_id WHERE mp.name = %s ORDER BY cal.valid_from", (point,),
    ).fetchall()]


def mappings(conn, column: str) -> list[tuple]:
    return [tuple(r.values()) for r in conn.execute(
        "SELECT mp.name, m.statistic, m.valid_from, m.valid_to FROM channel_mapping m "
        "JOIN channel c ON c.id = m.channel_id JOIN measurement_point mp ON mp.id = m.measurement_point_id "
        "WHERE c.column_name = %s ORDER BY m.valid_from", (column,),
    ).fetchall()]


# --- Task 43 --------------------------------------------------------------------------------


def test_demo_document_maps_every_column_of_demo_data(conn):
    report = iea43.import_metadata(conn, DEMO_DOC, "ana")
    assert (report.version, report.schema_version, report.stations) == ("1.0.0-2022.01", "1.0", ["Demo Mast"])
    assert report.created == {"station": 1, "logger": 1, "measurement_point": 14, "sensor": 15,
                              "calibration": 16, "channel": 29, "channel_mapping": 34}
    station = conn.execute("SELECT * FROM station").fetchone()
    assert (station["latitude"], station["longitude"], station["kind"]) == (53.3049, -6.212, "met mast")
    for column in DEMO_DATA_COLUMNS:
        ch = channel(conn, "Demo Mast", column)
        conventions = parse_column_name(column)
        assert ch["mapped"] and column.startswith(ch["point"]), column
        assert (ch["height_m"], ch["measurement_type"], ch["statistic"]) == (
            conventions.height_m, conventions.measurement_type, conventions.statistic), column
    assert channel(conn, "Demo Mast", "Spd80mS")["orientation_deg"] == 180
    logger = conn.execute("SELECT * FROM logger").fetchone()
    want = {
        "oem": "Campbell Scientific", "model": "CR1000", "serial": "1234567", "utc_offset_minutes": 0,
        "timestamp_is_end": None,  # not stated: each file decides "interval_s": 600, "valid_from": utc(2016, 1, 9, 15, 30), "valid_to": None,
        "source": "iea43",
    }
    assert {k: logger[k] for k in want} == want
    # every change is audited, by whom and from which file
    audited = conn.execute("SELECT DISTINCT actor, details->>'file' AS file FROM audit").fetchall()
    assert audited == [{"actor": "ana", "file": DEMO_DOC.name}]


def test_logger_slope_change_gives_two_calibration_periods(conn):
    iea43.import_metadata(conn, DEMO_DOC, "ana")
    change_to, change_from = utc(2017, 1, 4, 17, 59), utc(2017, 1, 4, 18, 0)  # as the document says
    assert calibrations(conn, "Spd40mS") == [
        (utc(2016, 1, 9, 15, 30), change_to, 0.0459, 0.2554, 0.04591, 0.25539, "013456"),
        (change_from, None, 0.04591, 0.25539, 0.04591, 0.25539, "013456"),
    ]
    # a vane without certificate: the logger's own values, so recalibration changes nothing
    assert calibrations(conn, "Dir58mS") == [
        (utc(2016, 1, 9, 15, 30), change_to, 0.351, 0.0, 0.351, 0.0, None),
        (change_from, None, 0.351, 0.0, 0.351, 0.0, None),
    ]
    sensors = conn.execute("SELECT serial_number, valid_from, valid_to FROM sensor s JOIN measurement_point mp "
                           "ON mp.id = s.measurement_point_id WHERE mp.name = 'Dir58mS' ORDER BY 2").fetchall()
    assert [tuple(s.values()) for s in sensors] == [
        ("0587654", utc(2016, 1, 9, 15, 30), change_to), ("0587655", change_from, None)]
    assert mappings(conn, "Spd40mSStd") == [
        ("Spd40mS", "sd", utc(2016, 1, 9, 15, 30), change_to), ("Spd40mS", "sd", change_from, None)]
    assert calibrations(conn, "Spd80mN") == [(utc(2016, 1, 9, 15, 30), None, 0.046, 0.243, 0.046, 0.243, "0654321")]


def test_importing_twice_changes_nothing(conn):
    first = iea43.import_metadata(conn, DEMO_DOC, "ana")
    iea43.import_metadata(conn, MM1_DOC, "ana")
    before, audits = snapshot(conn), count(conn, "audit")
    again = iea43.import_metadata(conn, DEMO_DOC, "bob")
    assert first.changed and not again.changed
    assert again.created == again.updated == again.deleted == {} and again.unchanged == 81
    assert iea43.import_metadata(conn, MM1_DOC, "bob").changed is False
    assert snapshot(conn) == before and count(conn, "audit") == audits
    assert "created nothing; updated nothing; deleted nothing" in again.summary()


def test_v1_3_document_with_utc_offset_rewiring_and_sensor_swap(conn):
    report = iea43.import_metadata(conn, MM1_DOC, "ana")
    assert (report.schema_version, report.stations) == ("1.3", ["Test_MM1"])
    logger = conn.execute("SELECT * FROM logger").fetchone()
    # offset_from_utc_hrs -5: the logger's 2020-04-12T12:00 is 17:00 UTC
    assert (logger["utc_offset_minutes"], logger["timestamp_is_end"], logger["interval_s"], logger["valid_from"]) == (
        -300, False, 600, utc(2020, 4, 12, 17))
    assert (logger["oem"], logger["model"], logger["serial"]) == ("NRG Systems", "Symphonie Plus3", "01002")
    # the logger offset of Spd_80.1_315 changes on 2020-04-15T00:00 local
    assert calibrations(conn, "Spd_80.1_315") == [
        (utc(2020, 4, 12, 17), utc(2020, 4, 15, 5), 0.04573, 0.2419, 0.04573, 0.2419, "09183000"),
        (utc(2020, 4, 15, 5), None, 0.04573, 0.2491, 0.04573, 0.2419, "09183000"),
    ]
    # a new anemometer with its own certificate from 2020-04-18
    assert calibrations(conn, "Spd_80mSE") == [
        (utc(2020, 4, 12, 17), utc(2020, 4, 18, 5), 0.04568, 0.2487, 0.04568, 0.2487, "09183001"),
        (utc(2020, 4, 18, 5), None, 0.04575, 0.2497, 0.04575, 0.2497, "09183023"),
    ]
    # the 40 m NW anemometer moves from logger column CH5 to CH14
    assert mappings(conn, "CH5Avg") == [("Spd_40mNW", "avg", utc(2020, 4, 12, 17), utc(2020, 4, 18, 5))]
    assert mappings(conn, "CH14Avg") == [("Spd_40mNW", "avg", utc(2020, 4, 18, 5), None)]
    assert mappings(conn, "CH1Ti30sec") == [("Spd_80.1_315", "ti30sec", utc(2020, 4, 12, 17), utc(2020, 4, 15, 5))]
    assert channel(conn, "Test_MM1", "CH1Ti30sec")["statistic"] == "ti30sec"
    point = conn.execute("SELECT * FROM measurement_point WHERE name = 'Logger_V'").fetchone()
    assert (point["measurement_type"], point["iea43_type"], point["height_m"]) == ("battery_voltage", "voltage", None)
    point = conn.execute("SELECT * FROM measurement_point WHERE name = 'Spd_80.1_315'").fetchone()
    assert (point["height_m"], point["orientation_deg"], point["orientation_reference"], point["unit"]) == (
        80.1, 315, "magnetic_north", "m/s")
    assert point["sensor"] == "Thies 4.3351.10.000 s/n 09183000"


def test_broken_document_writes_nothing(conn):
    doc = json.loads(DEMO_DOC.read_text())
    doc["measurement_location"][0]["measurement_point"][3]["height_m"] = "x"
    del doc["measurement_location"][0]["measurement_point"][4]["name"]
    with pytest.raises(MetadataError) as err:
        iea43.import_metadata(conn, doc, "ana", name="broken.json")
    assert err.value.errors == [
        "$.measurement_location[0].measurement_point[3].height_m: 'x' is not of type 'number', 'null'",
        "$.measurement_location[0].measurement_point[4]: 'name' is a required property",
    ]
    assert err.value.file == "broken.json" and str(err.value).startswith("broken.json: 2 problems")
    assert all(count(conn, t) == 0 for t in (*TABLES, "audit"))


def test_an_edited_document_updates_and_deletes_its_own_rows(conn):
    iea43.import_metadata(conn, DEMO_DOC, "ana")
    doc = json.loads(DEMO_DOC.read_text())
    points = doc["measurement_location"][0]["measurement_point"]
    points[0]["logger_measurement_config"][0]["slope"] = 0.0461
    del points[-1]  # PrcpTot
    report = iea43.import_metadata(conn, doc, "bob", name="edited.json")
    assert report.updated == {"calibration": 1, "channel": 1}
    assert report.deleted == {"measurement_point": 1, "channel_mapping": 1, "calibration": 1, "sensor": 1}
    assert calibrations(conn, "Spd80mN")[0][2] == 0.0461
    change = conn.execute("SELECT * FROM audit WHERE actor = 'bob' AND entity = 'calibration'").fetchone()
    assert (change["action"], change["details"]["old"], change["details"]["new"]) == (
        "update", {"logger_slope": 0.046}, {"logger_slope": 0.0461})
    prcp = channel(conn, "Demo Mast", "PrcpTot")  # kept, as an unmapped channel
    assert prcp["measurement_point_id"] is None and not prcp["mapped"]


def test_import_metadata_file_uses_the_pool_and_commits(db_url):
    report = iea43.import_metadata_file(DEMO_DOC, "cli", url=db_url)
    assert report.stations == ["Demo Mast"]
    as_json = json.loads(json.dumps(report.as_dict()))  # what `import-metadata --json` prints
    assert as_json["changed"] is True and as_json["created"]["channel"] == 29
    from core import db

    with db.connect(db_url) as conn:
        assert count(conn, "channel") == 29


# --- column-name conventions ----------------------------------------------------------------


def add_channels(conn, station: str, columns, units: dict | None = None) -> int:
    station_id = ensure_station(conn, station, "test")["id"]
    for name in columns:
        metadata.fetch_one(conn, "insert_channel", station_id=station_id, column_name=name,
                           statistic="unknown", unit=(units or {}).get(name, ""))
    return station_id


def test_conventions_map_the_demo_site_columns(conn):
    station_id = add_channels(conn, "Mast A", [*demo.COLUMNS[2:], "RECORD_Flag"])
    counts = metadata.apply_conventions(conn, station_id, "ingest")
    assert counts == {"mapped": 41, "unmapped": 1, "points_created": 12}
    ch = channel(conn, "Mast A", "WS_80m_NE_Std")
    assert (ch["point"], ch["statistic"], ch["height_m"], ch["orientation_deg"]) == ("wind_speed 80m NE", "sd", 80, 45)
    assert channel(conn, "Mast A", "BattV_Min")["point"] == "battery_voltage"
    assert channel(conn, "Mast A", "AirT_2m_Max")["point"] == "air_temperature 2m"
    unknown = channel(conn, "Mast A", "RECORD_Flag")
    assert unknown["point"] is None and not unknown["mapped"]
    assert conn.execute("SELECT count(*) AS n FROM audit WHERE action = 'map'").fetchone()["n"] == 41
    # again: nothing left to map, nothing changes
    assert metadata.apply_conventions(conn, station_id, "ingest") == {"mapped": 0, "unmapped": 1, "points_created": 0}


def test_conventions_keep_the_file_statistic_and_separate_twin_sensors(conn):
    station_id = add_channels(conn, "Mast B", ["Spd80mN", "Anem_80m_N_Avg", "Spd80mNStd"])
    conn.execute("UPDATE channel SET statistic = 'sample' WHERE column_name = 'Spd80mN'")
    metadata.apply_conventions(conn, station_id, "ingest")
    assert channel(conn, "Mast B", "Spd80mN")["statistic"] == "sample"
    assert channel(conn, "Mast B", "Spd80mNStd")["point"] == "wind_speed 80m N"
    assert channel(conn, "Mast B", "Anem_80m_N_Avg")["point"] == "wind_speed 80m N"
    station_id = add_channels(conn, "Mast C", ["Spd80mN", "Anem_80m_N_Avg"])
    metadata.apply_conventions(conn, station_id, "ingest")
    assert channel(conn, "Mast C", "Anem_80m_N_Avg")["point"] == "wind_speed 80m N (Anem_80m_N)"


def test_task43_import_replaces_convention_points(conn):
    station_id = add_channels(conn, "Demo Mast", DEMO_DATA_COLUMNS)
    metadata.apply_conventions(conn, station_id, "ingest")
    assert channel(conn, "Demo Mast", "Spd80mNStd")["point"] == "wind_speed 80m N"
    report = iea43.import_metadata(conn, DEMO_DOC, "ana")
    assert report.deleted == {"measurement_point": 14}  # the guessed points, now unused
    assert "channel" not in report.created
    assert channel(conn, "Demo Mast", "Spd80mNStd")["point"] == "Spd80mN"
    assert conn.execute("SELECT DISTINCT source FROM measurement_point").fetchall() == [{"source": "iea43"}]
    # new columns the document does not list are still mapped by the conventions
    add_channels(conn, "Demo Mast", ["Spd80mNGust"])
    metadata.apply_conventions(conn, station_id, "ingest")
    assert channel(conn, "Demo Mast", "Spd80mNGust")["point"] == "wind_speed 80m N"


def test_an_analyst_corrects_a_mapping(conn):
    station_id = add_channels(conn, "Mast A", ["Ch42_ModbusRTU_1.00m_S_Avg_"])
    metadata.apply_conventions(conn, station_id, "ingest")
    ch = channel(conn, "Mast A", "Ch42_ModbusRTU_1.00m_S_Avg_")
    assert not ch["mapped"]
    new = metadata.set_channel_mapping(conn, ch["id"], "air_temperature", 1.0, 180.0, "avg", "deg_C", "ana")
    assert (new["point_name"], new["mapped"], new["unit"]) == ("air_temperature 1m S", True, "deg_C")
    entry = conn.execute("SELECT * FROM audit WHERE entity = 'channel' AND actor = 'ana'").fetchone()
    assert entry["details"]["old"]["point_name"] is None
    assert entry["details"]["new"]["point_name"] == "air_temperature 1m S"
    back = metadata.set_channel_mapping(conn, ch["id"], "unknown", None, None, "avg", "", "ana")
    assert back["measurement_point_id"] is None and not back["mapped"]
    with pytest.raises(MetadataError, match="measurement_type: 'speed' is not one of"):
        metadata.set_channel_mapping(conn, ch["id"], "speed", None, None, "avg", "", "ana")
    with pytest.raises(NotFound):
        metadata.set_channel_mapping(conn, 999_999, "wind_speed", None, None, "avg", "", "ana")


def test_station_metadata_for_the_metadata_page(conn):
    iea43.import_metadata(conn, DEMO_DOC, "ana")
    station_id = conn.execute("SELECT id FROM station").fetchone()["id"]
    page = metadata.station_metadata(conn, station_id)
    assert page["station"]["name"] == "Demo Mast" and len(page["loggers"]) == 1
    points = {p["name"]: p for p in page["measurement_points"]}
    assert len(points) == 14 and points["Spd40mS"]["channels"] == 3
    assert len(points["Spd40mS"]["calibrations"]) == 2 and points["Dir58mS"]["sensors"][1]["serial_number"] == "0587655"
    by_column = {c["column_name"]: c for c in page["channels"]}
    assert by_column["T2m"]["point_name"] == "T2m" and by_column["T2m"]["height_m"] == 2
    assert [m["column_name"] for m in page["channel_mappings"]].count("Spd40mS") == 2
    with pytest.raises(NotFound):
        metadata.station_metadata(conn, 999_999)


# --- bad documents through the CLI -------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "first"), BAD_DOCUMENTS, ids=[b[0] for b in BAD_DOCUMENTS])
def test_cli_refuses_each_bad_document_clearly_and_imports_nothing(name, data, first, conn, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(data)
    assert cli.main(["import-metadata", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "Traceback" not in out.err
    assert out.err.startswith(f"error: {name}: ") and f"  - {first}\n" in out.err
    assert all(count(conn, t) == 0 for t in (*TABLES, "audit"))


def test_the_program_refuses_a_deeply_nested_document_without_a_traceback(db_url, tmp_path):
    name, data, first = BAD_DOCUMENTS[0]
    path = tmp_path / name
    path.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_DATABASE_URL=db_url, STATIONMANAGER_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "core.cli", "import-metadata", str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == f"error: {name}: 1 problem in the metadata:\n  - {first}\n"
