"""Values typed on the command line that are outside what StationManager accepts: a clear
message and exit code 2, never a traceback, nothing written."""

from __future__ import annotations

import pytest

from core import cli, iea43
from tests.unit.test_metadata import DEMO_DOC

pytestmark = pytest.mark.integration

CAL = ["calibration", "add", "--station", "Demo Mast", "--point", "Spd40mS", "--from", "2015-01-01",
       "--to", "2016-01-01", "--logger-slope", "1", "--logger-offset", "0", "--offset", "0"]
FLAG = ["flag", "add", "--station", "Demo Mast", "--station-wide", "--category", "other"]


@pytest.fixture
def demo(conn):
    iea43.import_metadata(conn, DEMO_DOC, "ana")
    return conn


def rows(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"]  # noqa: S608
            for t in ("calibration", "flag", "logger", "audit", "export")}


@pytest.mark.parametrize(("args", "message"), [
    (CAL + ["--slope", "1e300"], "certificate slope 1e+300 is outside -1e+06 … 1e+06"),
    (CAL + ["--slope", "nan"], "certificate slope must be a finite number, not nan"),
    ([*CAL[:7], "0001-01-01T00:00+05:00", *CAL[8:], "--slope", "1"],
     "valid from 0001-01-01 00:00 is outside 1970-01-01 … 2100-01-01"),
    (CAL + ["--slope", "1", "--certificate", "c" * 300], "certificate: 300 characters, more than the 200 allowed"),
    (FLAG + ["--start", "0001-01-01T00:00+05:00", "--end", "2017-01-01"],
     "start 0001-01-01T00:00:00+05:00 is outside 1970-01-01 … 2100-01-01"),
    (FLAG + ["--start", "2017-01-01", "--end", "9999-12-31"], "end 9999-12-31 00:00 is outside 1970-01-01 … 2100-01-01"),
    (FLAG + ["--start", "2017-01-01", "--end", "2017-01-02", "--note", "\x1b[2J"], "note: contains a control character"),
    (FLAG + ["--start", "2017-01-01", "--end", "2017-01-02", "--note", "n" * 10_001],
     "note: 10001 characters, more than the 10000 allowed"),
    (["logger", "set", "--station", "Demo Mast", "--serial", "s" * 201, "--timestamp-is-end", "true"],
     "logger serial: 201 characters, more than the 200 allowed"),
])
def test_out_of_bounds_values_are_refused_clearly(demo, capsys, args, message):
    before = rows(demo)
    assert cli.main([*args, "--actor", "ana"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"
    assert rows(demo) == before


@pytest.mark.parametrize("zone", ["Europe", "x" * 300, "../../etc/passwd"])
def test_an_unknown_export_time_zone_is_refused(demo, capsys, zone):
    assert cli.main(["export", "--station", "Demo Mast", "--format", "csv", "--timezone", zone]) == 2
    assert capsys.readouterr().err == (f"error: time zone {zone!r} is unknown; use an IANA name such as UTC, "
                                       "Europe/Berlin or Etc/GMT-1\n")
    assert rows(demo)["export"] == 0


@pytest.mark.parametrize(("text", "message"), [
    ('{"utc_offset_minutes": 99999}', "utc_offset_minutes must be a whole number between -720 and 840"),
    ('{"missing": ' + "[" * 100_000 + "]" * 100_000 + "}", "$: nested more than 64 levels deep"),
    ('{"utc_offset_minutes": Infinity}', "$.utc_offset_minutes: Infinity is not a number JSON allows"),
])
def test_mapping_set_refuses_bad_mappings(demo, capsys, tmp_path, text, message):
    path = tmp_path / "mapping.json"
    path.write_text(text)
    assert cli.main(["mapping", "set", str(path), "--station", "Demo Mast"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid file mapping: ") and message in err


# --- the database's own guard (migration 0013) ------------------------------------------------

BOUNDS = (("station", "station_latitude_range"), ("station", "station_longitude_range"),
          ("calibration", "calibration_values_bounded"))


def test_what_stationmanager_writes_passes_the_database_bounds(demo, settings):
    from core import ingest
    from tests.unit.test_metadata import MM1_DOC

    iea43.import_metadata(demo, MM1_DOC, "ana")
    path = DEMO_DOC.parents[1] / "toa5" / "TestLogger_Hourly_1.dat"
    with demo.transaction():
        rec = ingest.receive(demo, path, station="Test Logger", origin="test", settings=settings)
    assert ingest.import_file(rec.id, settings=settings)["status"] == "imported"
    for table, constraint in BOUNDS:  # NOT VALID in the migration: check every row now
        demo.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}")  # noqa: S608
    validated = demo.execute("SELECT conname FROM pg_constraint WHERE conname = ANY(%s) AND convalidated",
                             ([c for _, c in BOUNDS],)).fetchall()
    assert len(validated) == len(BOUNDS)


@pytest.mark.parametrize(("statement", "constraint"), [
    ("UPDATE station SET latitude = 'NaN'", "station_latitude_range"),
    ("UPDATE station SET longitude = 181", "station_longitude_range"),
    ("UPDATE calibration SET cal_slope = 'Infinity'", "calibration_values_bounded"),
    ("UPDATE calibration SET logger_offset = 1e300", "calibration_values_bounded"),
])
def test_the_database_refuses_values_out_of_bounds_from_any_writer(demo, statement, constraint):
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        demo.execute(statement)


def test_a_channel_mapping_out_of_bounds_is_refused(demo):
    from core import metadata
    from core.metadata import MetadataError

    channel = demo.execute("SELECT id FROM channel ORDER BY id LIMIT 1").fetchone()["id"]
    before = demo.execute("SELECT * FROM channel WHERE id = %s", (channel,)).fetchone()
    with pytest.raises(MetadataError) as err:
        metadata.set_channel_mapping(demo, channel, "wind_speed", 1e6, 400.0, "avg", "m/s\x00", "ana")
    assert err.value.errors == ["height (m) 1e+06 is outside -1000 … 9000", "orientation 400 is outside 0 … 360",
                                "unit: contains a control character"]
    assert demo.execute("SELECT * FROM channel WHERE id = %s", (channel,)).fetchone() == before


def test_editing_a_flag_keeps_its_period_and_note_within_bounds(demo):
    from datetime import UTC, datetime, timedelta, timezone

    from core import flags
    from core.flags import FlagError

    flag = flags.add_flag(demo, "Demo Mast", "station", datetime(2017, 1, 1, tzinfo=UTC),
                          datetime(2017, 1, 2, tzinfo=UTC), "other", "ok", author="ana")
    with pytest.raises(FlagError, match="start 0001-01-01T00:00:00\\+05:00 is outside 1970-01-01"):
        flags.update_flag(demo, flag, "ana", start=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    with pytest.raises(FlagError, match="end 2150-01-01 00:00 is outside"):
        flags.update_flag(demo, flag, "ana", end=datetime(2150, 1, 1, tzinfo=UTC))
    with pytest.raises(FlagError, match="note: contains a control character"):
        flags.update_flag(demo, flag, "ana", note="\x07")
    assert flags.get_flag(demo, flag)["note"] == "ok"
