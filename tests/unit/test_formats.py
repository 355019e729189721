"""NRG, Windographer, TOB1 and generic CSV readers: real samples, bad inputs, fuzzing.

The expected counts and times of the samples were checked independently with pandas
(``read_csv`` of the data table) and by counting lines.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, ParseError
from core.formats import generic, nrg, open_reader, tob1, toa5, windographer
from core.formats.generic import GenericMapping, GenericReader
from tests.unit.tob1_writer import encode_fp2, header_bytes, write_tob1

DATA = Path(__file__).resolve().parent.parent / "data"
SYMPRO = DATA / "nrg_symphoniepro" / "004310_2022-03-17_00.00_000835_meas.txt"
LOGR = DATA / "nrg_logr" / "20240111_1339_000304_002995_statistical.dat"
WINDO = DATA / "windographer" / "windographer_demo_data1.txt"
DEMO_XZ = DATA / "generic" / "demo_data.csv.xz"

READERS = {
    "nrg_symphoniepro": nrg.SymphonieProReader,
    "nrg_logr": nrg.LogrReader,
    "windographer": windographer.WindographerReader,
    "tob1": tob1.Tob1Reader,
    "generic": GenericReader,
}
#: The order open_reader sniffs in (TOA5 first, generic last).
SNIFFERS = [
    ("toa5", toa5.sniff), ("tob1", tob1.sniff), ("nrg_symphoniepro", nrg.sniff_symphoniepro),
    ("nrg_logr", nrg.sniff_logr), ("windographer", windographer.sniff), ("generic", generic.sniff),
]


def detect(path: Path) -> str | None:
    """The format open_reader picks for ``path`` (None when it refuses the file)."""
    try:
        return open_reader(path).format
    except ParseError:
        return None


def read_all(reader, rows: int = 20_000):
    header = reader.header
    batches = list(reader.batches(rows))
    times = np.concatenate([b.times for b in batches])
    values = np.vstack([b.values for b in batches])
    return header, times, values


def column(header, name):
    return next(c for c in header.columns if c.name == name)


@pytest.fixture(scope="module")
def demo_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("generic") / "demo_data.csv"
    path.write_bytes(lzma.decompress(DEMO_XZ.read_bytes()))
    return path


# --- the real samples -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "path", "n_columns", "n_rows", "first", "last"),
    [
        ("nrg_symphoniepro", SYMPRO, 63, 370, "2022-03-17T00:00", "2022-03-17T06:09"),
        ("nrg_logr", LOGR, 139, 2, "2024-01-11T13:39", "2024-01-11T13:40"),
        ("windographer", WINDO, 29, 188, "2016-01-09T15:30", "2016-01-10T23:50"),
        ("generic", None, 29, 95_629, "2016-01-09T15:30", "2017-11-23T10:50"),
    ],
)
def test_samples_are_detected_and_read_completely(demo_csv, fmt, path, n_columns, n_rows, first, last):
    path = path or demo_csv
    assert detect(path) == fmt
    header, times, values = read_all(READERS[fmt](path))
    assert header.format == fmt
    assert len(header.columns) == n_columns and values.shape == (n_rows, n_columns)
    assert times[0] == np.datetime64(first) and times[-1] == np.datetime64(last)


def test_symphoniepro_header_and_sensor_history():
    header, _, values = read_all(nrg.SymphonieProReader(SYMPRO))
    assert (header.logger_oem, header.logger_model, header.logger_serial) == (
        "NRG Systems", "SymphoniePRO Logger (8206)", "820604310")
    assert (header.station_name, header.latitude, header.longitude, header.elevation_m) == (
        "Tech Services test", 44.5, -73.2, 123.0)
    assert header.utc_offset_minutes == -300 and header.timestamp_is_end is False
    assert header.extra["site_number"] == "004310" and header.extra["ipack_serial"] == "716900805"
    ws = column(header, "Ch2_Anem_85.00m_S_Avg_m/s")
    assert (ws.measurement_type, ws.statistic, ws.unit, ws.height_m, ws.orientation_deg) == (
        "wind_speed", "avg", "m/s", 85.0, 189.0)
    assert (ws.logger_slope, ws.logger_offset, ws.sensor) == (0.0935, 0.139, "NRG S1, SN 2020-02-09")
    assert ws.extra["effective_date"] == "2022-03-17 00:00:00" and "sensor_history" not in ws.extra
    t = column(header, "Ch13_Analog_40.00m_N_SD_C")
    assert (t.measurement_type, t.statistic, t.unit, t.height_m, t.logger_slope, t.logger_offset) == (
        "air_temperature", "sd", "C", 40.0, 44.7436, -40.8555)
    gust_dir = column(header, "Ch15_Vane_10.00m_SSE_GustDir_Deg")
    assert (gust_dir.measurement_type, gust_dir.statistic, gust_dir.orientation_deg) == (
        "wind_direction", "gust", 165.0)
    assert gust_dir.extra["Vane Mounting Angle"] == "180.00"
    assert column(header, "Ch3_Anem_10.00m__Gust_m/s").orientation_deg is None  # "Bearing:" left empty
    assert column(header, "Ch14_Analog_0.00m_N_Avg_hPa").measurement_type == "air_pressure"
    # -1000 (NRG's bad-data code) is missing: Ch32 Avg/Min/Max on all 370 rows
    assert int(np.isnan(values).sum()) == 3 * 370
    names = [c.name for c in header.columns]
    assert np.isnan(values[:, names.index("Ch32_ModbusRTU_2.00m_S_Avg_W/m^2")]).all()


def test_symphoniepro_uses_the_latest_effective_date_and_keeps_the_others(tmp_path):
    text = SYMPRO.read_text()
    older = ("Channel:\t2\nEffective Date:\t2021-06-01 12:00:00\nType:\tAnemometer\nDescription:\tNRG 40C\n"
             "Height:\t80.00\nBearing:\t180.00\nScale Factor:\t0.76500\nOffset:\t0.35000\nUnits:\tm/s\n\n")
    at = text.index("Channel:\t3\n")
    path = tmp_path / "history.txt"
    path.write_text(text[:at] + older + text[at:])  # the older block comes later in the file
    ws = column(nrg.SymphonieProReader(path).header, "Ch2_Anem_85.00m_S_Avg_m/s")
    assert (ws.height_m, ws.logger_slope, ws.extra["effective_date"]) == (85.0, 0.0935, "2022-03-17 00:00:00")
    history = json.loads(ws.extra["sensor_history"])
    assert [(h["Effective Date"], h["Height"], h["Description"]) for h in history] == [
        ("2021-06-01 12:00:00", "80.00", "NRG 40C")]


def test_logr_header_and_channels():
    header, times, _ = read_all(nrg.LogrReader(LOGR))
    assert (header.logger_model, header.logger_serial, header.station_name) == (
        "9432", "304", "Crows Nest Counters")
    assert (header.latitude, header.longitude, header.elevation_m, header.interval_s) == (
        44.33889, -73.11202, 136.0, 60)
    # stamps end in "Z": read as UTC; the site's zone (UTC-5) is kept for information
    assert header.utc_offset_minutes == 0 and header.extra["site_time_zone"] == "-5"
    assert header.timestamp_is_end is False
    assert len(header.extra["ignored_columns"].split(", ")) == 21  # the ChN_NotUsed placeholders
    gust = column(header, "Ch401_Gust_m/s")
    assert (gust.statistic, gust.measurement_type, gust.logger_slope, gust.logger_offset) == (
        "gust", "wind_speed", 0.0935, 0.139)
    vane = column(header, "Ch12_Gust_Dir_Deg")
    assert (vane.statistic, vane.measurement_type, vane.unit) == ("gust", "wind_direction", "Deg")
    assert column(header, "Ch3_Avg_deg_C").unit == "deg_C"
    assert column(header, "Ch3_Avg_deg_C").measurement_type is None  # a PV panel temperature
    assert column(header, "Ch405_Total_mm").statistic == "sum"
    assert column(header, "Ch105_Avg_%").measurement_type == "relative_humidity"


def test_windographer_header_metadata():
    header, _, values = read_all(windographer.WindographerReader(WINDO))
    assert (header.latitude, header.longitude, header.elevation_m) == (0.0, 0.0, 0.0)
    assert header.timestamp_is_end is False and header.utc_offset_minutes == 0  # "+00:00" stamps
    assert header.extra["created_by"] == "Created 10-05-2019 14:36 by Windographer 4.1.14"
    stats = {c.name: c.statistic for c in header.columns}
    assert [stats[n] for n in ("Spd80mN", "Spd80mNStd", "Spd80mNMax", "Dir78mS")] == ["avg", "sd", "max", "avg"]
    assert (stats["BattMin"], stats["PrcpTot"]) == ("min", "sum")
    assert all(c.measurement_type is None for c in header.columns)
    assert values[0, 0] == pytest.approx(8.37)


def test_windographer_comma_crlf_units_and_end_of_step(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(
        b"Created 01-02-2024 10:00 by Windographer 5.0\r\n\r\nLatitude = S 33.500000\r\n"
        b"Longitude = W 70.250000\r\nElevation = 1200 m\r\n\r\n"
        b"Time stamps indicate the end of the time step.\r\n\r\n"
        b"Date/Time,Speed 80 m [m/s],Speed 80 m SD [m/s],Temp 2 m (\xc2\xb0C)\r\n"
        b"2024-01-01 00:10,5.5,0.5,-3.2\r\n2024-01-01 00:20,6.5,0.7,-3.0\r\n"
    )
    assert detect(path) == "windographer"
    header, times, values = read_all(windographer.WindographerReader(path))
    assert (header.latitude, header.longitude, header.elevation_m) == (-33.5, -70.25, 1200.0)
    assert header.timestamp_is_end is True and header.utc_offset_minutes is None
    assert [(c.name, c.unit, c.statistic) for c in header.columns] == [
        ("Speed 80 m", "m/s", "avg"), ("Speed 80 m SD", "m/s", "sd"), ("Temp 2 m", "°C", "avg")]
    assert len(times) == 2 and values[1, 2] == pytest.approx(-3.0)


# --- generic delimited text ---------------------------------------------------------------


def test_generic_mapping_with_semicolons_decimal_comma_and_date_time_pair(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "Logger export, site X\nDatum;Zeit;WS [m/s];WD;Kommentar\n;;;°;\n"
        "09.01.2016;15:30;5,5;180;ok\n09.01.2016;15:40;-9999;190,5;ok\n", encoding="latin-1",
    )
    mapping = GenericMapping(
        header_row=1, units_row=2, delimiter=";", timestamp=("Datum", "Zeit"), time_format="%d.%m.%Y %H:%M",
        utc_offset_minutes=60, timestamp_is_end=True, missing=["-9999"], decimal=",",
        skip_columns=["Kommentar"], encoding="latin-1",
    )
    assert GenericMapping.from_json(mapping.to_json()) == mapping
    header, times, values = read_all(GenericReader(path, mapping=mapping))
    assert [(c.name, c.unit) for c in header.columns] == [("WS [m/s]", "m/s"), ("WD", "°")]
    assert (header.utc_offset_minutes, header.timestamp_is_end) == (60, True)
    assert str(times[1]) == "2016-01-09T15:40:00.000000"
    assert values[0].tolist() == [5.5, 180.0] and np.isnan(values[1, 0]) and values[1, 1] == 190.5


def test_generic_detects_tabs_and_decimal_comma_without_mapping(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("Date\tTime\tWS_Avg\tWS_Std\n2025-01-01\t00:10\t5,5\t0,4\n2025-01-01\t00:20\t6,0\t0,5\n")
    assert detect(path) == "generic"
    header, times, values = read_all(GenericReader(path))
    assert [(c.name, c.statistic) for c in header.columns] == [("WS_Avg", "avg"), ("WS_Std", "sd")]
    assert values.tolist() == [[5.5, 0.4], [6.0, 0.5]] and len(times) == 2


def test_generic_finds_the_header_below_free_text_and_reads_a_units_row(tmp_path):
    path = tmp_path / "export.txt"
    path.write_text(
        "Site: Hill Top\nLogger serial: 0815\nDate,2026-01-05\n\n"
        "Date/Time\tWS80_Avg\tWS80_SD\tT2_Avg\n\tm/s\tm/s\tdeg C\n"
        "2025-01-01 00:00\t5.5\t0.4\t3.1\n2025-01-01 00:10\t6.0\t0.5\t3.0\n"
    )
    assert detect(path) == "generic"
    reader = GenericReader(path)
    header, times, values = read_all(reader)
    assert (reader.mapping.header_row, reader.mapping.units_row) == (4, 5)
    assert [(c.name, c.unit, c.statistic) for c in header.columns] == [
        ("WS80_Avg", "m/s", "avg"), ("WS80_SD", "m/s", "sd"), ("T2_Avg", "deg C", "avg")]
    assert [str(t) for t in times] == ["2025-01-01T00:00:00.000000", "2025-01-01T00:10:00.000000"]
    assert values.tolist() == [[5.5, 0.4, 3.1], [6.0, 0.5, 3.0]]


def test_generic_below_free_text_with_semicolons_and_decimal_comma(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "Export;Mast 3\nDatum;01.01.2025\n"
        "Datum;Zeit;WS [m/s];WD [°]\n01.01.2025;00:10;5,5;180\n01.01.2025;00:20;6,25;190,5\n",
        encoding="latin-1",
    )
    assert detect(path) == "generic"
    reader = GenericReader(path)
    header, times, values = read_all(reader)
    assert (reader.mapping.header_row, reader.mapping.units_row, reader.mapping.decimal) == (2, None, ",")
    assert [(c.name, c.unit) for c in header.columns] == [("WS [m/s]", "m/s"), ("WD [°]", "°")]
    assert len(times) == 2 and values.tolist() == [[5.5, 180.0], [6.25, 190.5]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "expected a JSON object"),
        ("{", "not valid JSON"),
        ('{"header_row": 0, "colour": "red"}', "unknown keys colour"),
        ('{"decimal": ",", "delimiter": ","}', "a decimal comma needs another delimiter"),
        ('{"timestamp": ["Date"]}', "timestamp must be"),
        ('{"utc_offset_minutes": "60"}', "utc_offset_minutes must be"),
    ],
)
def test_generic_mapping_rejects_bad_json(text, message):
    with pytest.raises(ConfigError, match=message):
        GenericMapping.from_json(text)


def test_generic_without_timestamp_column_needs_a_mapping(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    assert detect(path) is None
    with pytest.raises(ParseError) as err:
        read_all(GenericReader(path))
    assert "set up a file mapping" in err.value.reason and err.value.line == 1
    with pytest.raises(ParseError, match="'Stamp' is not in the header"):
        read_all(GenericReader(path, mapping=GenericMapping(timestamp="Stamp")))


# --- bad text inputs: each paired with its reason and line --------------------------------

GENERIC_TEXT = (
    "Timestamp,WS,WD\n"
    + "".join(f"2025-01-01 {h:02d}:{m:02d}:00,{5 + m / 10},{180 + m}\n"
              for h in range(2) for m in range(0, 60, 10))
)
TEXT_SAMPLES = {  # format -> (sample text, delimiter, line of the column names)
    "nrg_symphoniepro": (lambda: SYMPRO.read_text(), "\t", 241),
    "nrg_logr": (lambda: LOGR.read_text(), "\t", 263),
    "windographer": (lambda: WINDO.read_text(), "\t", 13),
    "generic": (lambda: GENERIC_TEXT, ",", 1),
}


def _edit(text: str, line: int, field: int, new: str | None, delim: str) -> str:
    lines = text.split("\n")
    parts = lines[line - 1].split(delim)
    if new is None:
        del parts[field]
    else:
        parts[field] = new
    lines[line - 1] = delim.join(parts)
    return "\n".join(lines)


@pytest.mark.parametrize("fmt", list(TEXT_SAMPLES))
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("short_row", "columns but this row has"),
        ("long_row", "columns but this row has"),
        ("not_a_number", "'abc' is not a number"),
        ("bad_timestamp", "is not a valid timestamp"),
        ("repeated_timestamp", "repeats the previous row"),
        ("truncated_last_row", "columns but this row has"),
        ("no_data_rows", "no data rows"),
        ("empty", "the file is empty"),
    ],
)
def test_bad_text_inputs_fail_with_reason_and_line(tmp_path, fmt, case, reason):
    load, delim, names_line = TEXT_SAMPLES[fmt]
    text = load()
    row = names_line + 2  # the second data row
    n_lines = text.rstrip("\n").count("\n") + 1
    expected_line = row
    if case == "short_row":
        text = _edit(text, row, 2, None, delim)
    elif case == "long_row":
        text = _edit(text, row, 2, "1" + delim + "2", delim)
    elif case == "not_a_number":
        text = _edit(text, row, 2, "abc", delim)
    elif case == "bad_timestamp":
        text = _edit(text, row, 0, "2025-13-45 10:00:00", delim)
    elif case == "repeated_timestamp":
        text = _edit(text, row, 0, text.split("\n")[row - 2].split(delim)[0], delim)
    elif case == "truncated_last_row":
        text = text.rstrip("\n")
        text, expected_line = text[: text.rindex(delim) - 1], n_lines
    elif case == "no_data_rows":
        text, expected_line = "\n".join(text.split("\n")[:names_line]) + "\n", names_line + 1
    else:
        text, expected_line = "", None
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ParseError) as err:
        read_all(READERS[fmt](path))
    assert reason in err.value.reason, err.value
    assert err.value.line == expected_line, err.value
    assert path.name in str(err.value)


@pytest.mark.parametrize(
    ("fmt", "old", "new", "line", "reason"),
    [
        ("nrg_symphoniepro", "\nData\n", "\nDaten\n", 611, "no 'Data' line"),
        ("nrg_logr", "Timestamp\t", "Zeit\t", 263, "no Timestamp column"),
        ("windographer", "Date/Time\t", "When\t", 201, "no header row starting with Date/Time"),
        ("windographer", "\tSpd80mS\t", "\tSpd80mN\t", 13, "duplicate column names: Spd80mN"),
    ],
)
def test_bad_headers_fail_with_reason_and_line(tmp_path, fmt, old, new, line, reason):
    text = TEXT_SAMPLES[fmt][0]()
    assert old in text
    path = tmp_path / "bad.txt"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ParseError) as err:
        read_all(READERS[fmt](path))
    assert reason in err.value.reason and err.value.line == line, err.value


# --- TOB1 ----------------------------------------------------------------------------------

EVERY_TYPE = {
    "SECONDS": ("ULONG", [1_000_000_000, 1_000_000_600, 1_000_001_200, 1_000_001_800, 1_000_002_400]),
    "NANOSECONDS": ("ULONG", [0, 500_000_000, 0, 0, 0]),
    "RECORD": ("ULONG", [7, 8, 9, 10, 11]),
    "WS_Avg": ("FP2", [0.0, 1.5, -12.34, 7999.0, float("nan")]),
    "T_Smp": ("IEEE4", [1.25, -40.5, 3.0e5, float("inf"), float("nan")]),
    "T_B": ("IEEE4B", [2.5, 0.0, -1.0, 1e-3, 7.0]),
    "P_Avg": ("IEEE8", [1013.25, 990.125, 0.1, -0.1, 1e300]),
    "P_B": ("IEEE8B", [1.0, 2.0, 3.0, 4.0, 5.0]),
    "Count_Tot": ("ULONG", [0, 1, 4_000_000_000, 3, 4]),
    "Delta": ("LONG", [-2_000_000_000, -1, 0, 1, 2]),
    "Small": ("SHORT", [-300, 0, 300, 1, 2]),
    "USmall": ("USHORT", [0, 65535, 1, 2, 3]),
    "BigU2": ("UINT2", [1, 2, 3, 4, 65000]),
    "BigI2": ("INT2", [-1, -2, 3, 4, 5]),
    "BigU4": ("UINT4", [1, 2, 3, 4, 4_000_000_000]),
    "BigI4": ("INT4", [-5, 2, 3, 4, 5]),
    "Door": ("BOOL", [True, False, True, False, True]),
    "Door2": ("BOOL2", [False, True, True, False, False]),
    "Door4": ("BOOL4", [True, True, False, False, True]),
    "Site": ("ASCII(6)", ["north", "south", "east", "west", "mast"]),
    "SampleTime": ("SecNano", [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]),
}
UNITS = {"WS_Avg": "m/s", "T_Smp": "Deg C"}
PROCESSING = {"WS_Avg": "Avg", "T_Smp": "Smp", "P_Avg": "Avg", "Count_Tot": "Tot"}


def test_fp2_encoding_of_several_values():
    assert [encode_fp2(v).hex() for v in (0.0, 1.5, -12.34, 7999.0, float("nan"), float("inf"), -float("inf"))] == [
        "0000", "65dc", "c4d2", "1f3f", "9ffe", "1fff", "9fff"]
    raw = np.frombuffer(b"".join(encode_fp2(v) for v in (0.0, 1.5, -12.34, 7999.0, 0.001, -7.999)), dtype=">u2")
    assert tob1.fp2_to_float(raw).tolist() == [0.0, 1.5, -12.34, 7999.0, 0.001, -7.999]


def test_tob1_round_trip_of_every_type(tmp_path):
    path = write_tob1(tmp_path / "all.dat", EVERY_TYPE, UNITS, PROCESSING)
    assert detect(path) == "tob1"
    header, times, values = read_all(tob1.Tob1Reader(path))
    expected = [n for n in EVERY_TYPE if n not in ("SECONDS", "NANOSECONDS", "RECORD", "Site", "SampleTime")]
    assert [c.name for c in header.columns] == expected
    assert header.extra["ignored_text_columns"] == "Site, SampleTime"
    assert (header.station_name, header.logger_model, header.logger_serial, header.table_name) == (
        "TestStation", "CR1000X", "4242", "Ten_Min")
    assert [(c.unit, c.statistic) for c in header.columns[:2]] == [("m/s", "avg"), ("Deg C", "sample")]
    assert column(header, "Count_Tot").statistic == "sum"
    assert str(times[0]) == "2021-09-09T01:46:40.000000" and str(times[1]) == "2021-09-09T01:56:40.500000"
    for j, name in enumerate(expected):
        want = np.array([float(v) for v in EVERY_TYPE[name][1]])
        want[~np.isfinite(want)] = np.nan  # infinities are missing
        if EVERY_TYPE[name][0] == "IEEE4" or name == "T_B":
            want = want.astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(values[:, j], want, err_msg=name)


def test_tob1_secnano_timestamp(tmp_path):
    path = write_tob1(tmp_path / "sn.dat", {"TIMESTAMP": ("SecNano", [(100, 0), (100, 100_000_000)]),
                                             "WS": ("IEEE4", [1.0, 2.0])})
    header, times, _ = read_all(tob1.Tob1Reader(path))
    assert [c.name for c in header.columns] == ["WS"]
    assert times.tolist()[1].isoformat() == "1990-01-01T00:01:40.100000"


def _tob1_bytes(types=("ULONG", "ULONG", "FP2"), names=("SECONDS", "NANOSECONDS", "WS"), units=None) -> bytes:
    units = units if units is not None else ["", "", "m/s"]
    head = header_bytes(list(names), units, ["", "", "Avg"][: len(units)], list(types))
    return head + b"".join(
        (1000 + 600 * i).to_bytes(4, "little") + b"\0\0\0\0" + encode_fp2(i / 2) for i in range(3)
    )


@pytest.mark.parametrize(
    ("data", "line", "reason"),
    [
        (lambda: _tob1_bytes()[:-1], None, "record 3 is truncated: 9 of 10 bytes"),
        (lambda: _tob1_bytes()[:-30], None, "no data records"),
        (lambda: _tob1_bytes(types=("ULONG", "ULONG", "FLOAT3")), 5, "unknown data type 'FLOAT3' of field 'WS'"),
        (lambda: _tob1_bytes(units=["", "m/s"]), 3, "header line 3 has 2 fields but line 2 has 3"),
        (lambda: _tob1_bytes(types=("ULONG", "ULONG")), 5, "header line 5 has 2 fields but line 2 has 3"),
        (lambda: _tob1_bytes(names=("SEC", "NANOSECONDS", "WS")), 2, "no timestamp"),
        (lambda: _tob1_bytes(types=("IEEE4", "ULONG", "FP2")), 5, "the SECONDS field must have an integer type"),
        (lambda: _tob1_bytes().replace(b'"TOB1"', b'"TOB2"', 1), 1, "not a TOB1 file"),
        (lambda: _tob1_bytes().replace(b'"TOB1",', b'"TOB1","x",', 1), 1, "the environment line has 9 fields"),
        (lambda: _tob1_bytes().split(b"\r\n")[0] + b"\r\n", 2, "the header is incomplete: 1 of 5 lines"),
        (lambda: b"", None, "the file is empty"),
    ],
)
def test_bad_tob1_files(tmp_path, data, line, reason):
    path = tmp_path / "bad.dat"
    path.write_bytes(data())
    with pytest.raises(ParseError) as err:
        read_all(tob1.Tob1Reader(path))
    assert reason in err.value.reason and err.value.line == line, err.value


def test_tob1_time_going_back_names_the_record(tmp_path):
    path = write_tob1(tmp_path / "back.dat", {
        "SECONDS": ("ULONG", [10, 20, 15]), "NANOSECONDS": ("ULONG", [0, 0, 0]), "WS": ("FP2", [1, 2, 3])})
    with pytest.raises(ParseError, match="record 3: the time .* goes back in time"):
        read_all(tob1.Tob1Reader(path))


def test_tob1_100k_records_in_batches(tmp_path):
    n = 100_000
    path = write_tob1(tmp_path / "big.dat", {
        "SECONDS": ("ULONG", range(1_000_000_000, 1_000_000_000 + 600 * n, 600)),
        "NANOSECONDS": ("ULONG", [0] * n), "RECORD": ("ULONG", range(n)),
        "WS": ("FP2", [(i % 7000) / 100 for i in range(n)]), "T": ("IEEE4", [i / 4 for i in range(n)]),
    })
    batches = list(tob1.Tob1Reader(path).batches(rows=30_000))
    assert [len(b.times) for b in batches] == [30_000, 30_000, 30_000, 10_000]
    assert [b.first_line for b in batches] == [1, 30_001, 60_001, 90_001]
    last = batches[-1]
    assert last.values[-1].tolist() == [((n - 1) % 7000) / 100, (n - 1) / 4]
    assert last.times[-1] - batches[0].times[0] == np.timedelta64(600 * (n - 1), "s")


# --- fuzzing: only ParseError, never anything else ---------------------------------------


def _read_or_parse_error(reader) -> None:
    try:
        read_all(reader, rows=97)
    except ParseError:
        pass


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def samples(fuzz_dir: Path) -> dict[str, bytes]:
    tob = write_tob1(fuzz_dir / "sample.tob1", EVERY_TYPE, UNITS, PROCESSING).read_bytes()
    return {
        "nrg_symphoniepro": SYMPRO.read_bytes(), "nrg_logr": LOGR.read_bytes(), "windographer": WINDO.read_bytes(),
        "generic": b"".join(lzma.decompress(DEMO_XZ.read_bytes()).splitlines(keepends=True)[:200]), "tob1": tob,
    }


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_parse_errors(fuzz_dir, data):
    path = fuzz_dir / "arbitrary.bin"
    path.write_bytes(data)
    for name, sniff in SNIFFERS:
        assert sniff(data[:4096]) in (True, False)
    for cls in READERS.values():
        _read_or_parse_error(cls(path))
    try:
        _read_or_parse_error(open_reader(path))
    except ParseError:
        pass  # refused at detection: fine


@FUZZ
@given(
    fmt=st.sampled_from(sorted(READERS)),
    flips=st.lists(st.tuples(st.integers(0, 8191) | st.floats(0, 1), st.integers(1, 255)), max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_mutated_samples_raise_only_parse_errors(fuzz_dir, samples, fmt, flips, cut):
    data = bytearray(samples[fmt])
    for where, xor in flips:  # an integer: a byte of the header; a fraction: anywhere
        i = min(where, len(data) - 1) if isinstance(where, int) else int(where * (len(data) - 1))
        data[i] ^= xor
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = fuzz_dir / f"mutated.{fmt}"
    path.write_bytes(bytes(data))
    _read_or_parse_error(READERS[fmt](path))


# --- previews of a mapping (the Files page) ---------------------------------------------------


def test_preview_reads_the_first_rows_with_a_mapping_from_the_head_only(tmp_path):
    path = tmp_path / "mast.csv"
    rows = "".join(f"0{d}.01.2025;12:{m:02d};{m},5;{d}\n" for d in range(1, 4) for m in range(0, 60, 10))
    path.write_text("Mast 7 export\nTag;Uhrzeit;v80;T2\n" + rows * 400, encoding="latin-1")
    assert detect(path) is None  # no known timestamp name: a mapping is needed
    lines, encoding = generic.head_lines(path, 3)
    assert lines == ["Mast 7 export", "Tag;Uhrzeit;v80;T2", "01.01.2025;12:00;0,5;1"] and encoding == "utf8"
    mapping = GenericMapping(header_row=1, delimiter=";", decimal=",", timestamp=["Tag", "Uhrzeit"],
                             time_format="%d.%m.%Y %H:%M")
    assert generic.header_names(lines, mapping) == ["Tag", "Uhrzeit", "v80", "T2"]
    header, batch = generic.preview(path, mapping, rows=5, head_bytes=4096)
    assert [c.name for c in header.columns] == ["v80", "T2"]
    assert [str(t) for t in batch.times[:2]] == ["2025-01-01T12:00:00.000000", "2025-01-01T12:10:00.000000"]
    assert batch.values[:2].tolist() == [[0.5, 1.0], [10.5, 1.0]] and batch.first_line == 3
    with pytest.raises(ParseError, match="'Zeit' is not in the header"):
        generic.preview(path, GenericMapping(header_row=1, delimiter=";", timestamp=["Tag", "Zeit"]))
