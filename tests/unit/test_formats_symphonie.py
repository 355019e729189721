"""Classic NRG Symphonie text exports (Symphonie Data Retriever), tab- and comma-delimited.

The two files in ``tests/data/nrg_symphonie`` are written by hand from the published layout
(NRG's nrgpy reads the same sections, fields and ``CHnAvg/SD/Max/Min`` columns)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ParseError
from core.formats import open_reader
from tests.unit.test_formats import DATA, column, read_all

SDR = DATA / "nrg_symphonie" / "0123_20110716_sdr.txt"
DR = DATA / "nrg_symphonie" / "0456_20110716_dr.csv"


@pytest.mark.parametrize(
    ("path", "station", "serial", "lat", "lon", "elevation", "offset"),
    [
        (SDR, "Hill Top Mast", "01234", 37.674167, -104.801117, 1870.0, -420),
        (DR, "Coastal Ridge", "02345", 44.50123, -73.20456, 95.098, -300),
    ],
    ids=["tab", "comma"],
)
def test_symphonie_exports_are_detected_and_read(path, station, serial, lat, lon, elevation, offset):
    reader = open_reader(path)
    assert reader.format == "nrg_symphonie"
    header, times, values = read_all(reader)
    assert (header.station_name, header.logger_serial, header.logger_oem) == (station, serial, "NRG Systems")
    assert (header.latitude, header.longitude, header.elevation_m) == (lat, lon, elevation)
    assert header.utc_offset_minutes == offset and header.timestamp_is_end is False
    assert header.warnings == []
    # 7 channel blocks, one without a sensor: 6 × avg, sd, max, min
    assert len(header.columns) == 24 and header.extra["ignored_columns"] == "CH4Avg, CH4SD, CH4Max, CH4Min"
    assert len(times) == 36 and str(times[0]) == "2011-07-16T13:00:00.000000"
    assert np.isnan(values[5, 1]) and np.isfinite(values).sum() == 36 * 24 - 1  # one blank cell
    ws = column(header, "CH1SD")
    assert (ws.measurement_type, ws.statistic, ws.height_m, ws.unit) == ("wind_speed", "sd", 60.0, "m/s")
    assert (ws.logger_slope, ws.logger_offset) == (0.758, 0.35) and ws.sensor.endswith("SN 179500012345")
    assert column(header, "CH7Avg").measurement_type == "wind_direction"
    assert column(header, "CH9Max").measurement_type == "air_temperature"
    t = column(header, "CH9Avg")
    assert (t.logger_slope, t.logger_offset, t.height_m) == (0.136, -86.383, 2.5)
    p = column(header, "CH10Min")
    assert (p.measurement_type, p.unit, p.height_m) == ("air_pressure", "kPa", 8.0)


def test_the_boom_bearing_comes_from_details():
    header = open_reader(SDR).header
    assert column(header, "CH1Avg").orientation_deg == 270 and column(header, "CH2Avg").orientation_deg == 90


def test_unreadable_channel_fields_are_warnings(tmp_path):
    text = SDR.read_bytes().decode("latin-1").replace("Height\t40 m", "Height\t40 m?", 1)
    text = text.replace("Scale Factor\t0.136", "Scale Factor\t0,136", 1).replace("Latitude\tN 037", "Latitude\tX 037", 1)
    path = tmp_path / SDR.name
    path.write_bytes(text.encode("latin-1"))
    header, times, _ = read_all(open_reader(path))
    assert len(times) == 36
    assert sorted(header.warnings) == [
        "line 15: cannot read the latitude \"X 037° 40.450'\"",
        "line 46: Height '40 m?' of channel 3 is not a length",
        "line 77: Scale Factor '0,136' is not a number",
    ]
    assert column(header, "CH3Avg").height_m is None and column(header, "CH9Avg").logger_slope is None


def test_a_bad_value_in_the_table_names_its_line(tmp_path):
    lines = DR.read_bytes().decode("latin-1").split("\r\n")
    at = next(i for i, ln in enumerate(lines) if ln.startswith("2011-07-16 14:00"))
    lines[at] = lines[at].replace(",", ",x", 1)
    path = tmp_path / DR.name
    path.write_bytes("\r\n".join(lines).encode("latin-1"))
    with pytest.raises(ParseError) as err:
        read_all(open_reader(path))
    assert err.value.line == at + 1 and "is not a number" in err.value.reason
