"""TOA5 parsing: real files, and each bad file paired with its expected error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ParseError
from core.formats import open_reader

DATA = Path(__file__).resolve().parent.parent / "data" / "toa5"


def read_all(path: Path):
    reader = open_reader(path)
    batches = list(reader.batches())
    times = np.concatenate([b.times for b in batches])
    values = np.vstack([b.values for b in batches])
    return reader.header, times, values


def test_hourly_sample_columns_rows_and_statistics():
    header, times, values = read_all(DATA / "TestLogger_Hourly_1.dat")
    assert header.logger_model == "CR1000X" and header.logger_serial == "12342"
    assert header.table_name == "Hourly"
    assert [c.name for c in header.columns] == ["BattV", "PTemp_C_Min", "PTemp_C_Max", "AirT_C(42)", "RelHumid_Avg(3)"]
    assert [c.statistic for c in header.columns] == ["avg", "min", "max", "sample", "avg"]
    assert len(times) == 3 and str(times[0]) == "2021-06-18T21:00:00.000000"
    assert values[0, 0] == pytest.approx(13.23)


def test_timestamp_columns_inside_data_are_not_channels():
    header, times, _ = read_all(DATA / "TestLogger_Daily_1.dat")
    assert "BattV_TMn" not in [c.name for c in header.columns]
    assert "BattV_TMn" in header.extra["ignored_text_columns"]
    assert len(times) == 2


@pytest.mark.parametrize(
    ("name", "line", "reason"),
    [
        ("Bad01", None, "the file is empty"),
        ("Bad02", 1, "the environment line has 5 fields, expected 8"),
        ("Bad03", None, "the file is empty"),
        ("Bad04", 1, "unrecognised file format"),
        ("Bad05", 1, "the environment line has 9 fields, expected 8"),
        ("Bad06", 3, "the header is incomplete: 2 of 4 lines"),
    ],
)
def test_bad_samples_fail_with_line_and_reason(name, line, reason):
    path = DATA / f"TestLogger_Hourly_{name}.dat"
    with pytest.raises(ParseError) as err:
        read_all(path)
    assert err.value.line == line
    assert reason in err.value.reason
    assert path.name in str(err.value)


TOA5_HEAD = (
    '"TOA5","St","CR1000X","1","os","prog","sig","T10"\n'
    '"TIMESTAMP","RECORD","WS_Avg","WS_Std"\n'
    '"TS","RN","m/s","m/s"\n'
    '"","","Avg","Std"\n'
)


def write(tmp_path: Path, body: str, head: str = TOA5_HEAD, encoding: str = "utf-8") -> Path:
    p = tmp_path / "f.dat"
    p.write_bytes((head + body).encode(encoding))
    return p


def test_nan_is_missing_and_bom_and_fraction_and_offset_are_accepted(tmp_path):
    body = (
        '"2025-01-01 01:10:00.0+01:00",1,5.5,"NAN"\n'
        '"2025-01-01 00:20:00+00:00",2,NAN,0.4\n'
    )
    p = tmp_path / "bom.dat"
    p.write_bytes(b"\xef\xbb\xbf" + (TOA5_HEAD + body).encode())
    header, times, values = read_all(p)
    assert [c.statistic for c in header.columns] == ["avg", "sd"]
    assert np.isnan(values[0, 1]) and np.isnan(values[1, 0])
    assert str(times[1]) == "2025-01-01T00:20:00.000000"


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ('"2025-01-01 00:10:00",1,5.5,0.4\n"2025-01-01 00:20:00",2,5.5\n', 6, "the header has 4 columns but this row has 3"),
        ('"2025-01-01 00:10:00",1,5.5,0.4\n"2025-01-01 00:20:00",2,5.5,0.4,9\n', 6, "this row has 5"),
        ('"2025-01-01 00:10:00",1,5.5,0.4\n"2025-01-01 00:10:00",2,5.6,0.4\n', 6, "repeats the previous row"),
        ('"2025-01-01 00:20:00",1,5.5,0.4\n"2025-01-01 00:10:00",2,5.6,0.4\n', 6, "goes back in time"),
        ('"2025-01-01 00:10:00",1,5.5,0.4\n"2025-02-30 00:20:00",2,5.6,0.4\n', 6, "is not a valid timestamp"),
        ('"2025-01-01 00:10:00",1,5.5,0.4\n"2025-01-01 00:20:00",2,abc,0.4\n', 6, "'abc' is not a number"),
        ('', 5, "no data rows"),
    ],
)
def test_bad_rows_fail_with_line_and_reason(tmp_path, body, line, reason):
    with pytest.raises(ParseError) as err:
        read_all(write(tmp_path, body))
    assert err.value.line == line, err.value
    assert reason in err.value.reason


def test_wrong_encoding_fails_clearly(tmp_path):
    body = '"2025-01-01 00:10:00",1,5.5,0.4\n'
    head = TOA5_HEAD.replace('"St"', '"Stätion"')
    with pytest.raises(ParseError) as err:
        read_all(write(tmp_path, body, head=head, encoding="latin-1"))
    assert "not UTF-8" in err.value.reason


def test_batches_bound_memory_and_keep_line_numbers(tmp_path):
    rows = "".join(f'"2025-01-01 {h:02d}:{m:02d}:00",{i},{i},0.1\n' for i, (h, m) in enumerate((h, m) for h in range(24) for m in range(0, 60, 10)))
    reader = open_reader(write(tmp_path, rows))
    batches = list(reader.batches(rows=50))
    assert sum(len(b.times) for b in batches) == 144
    assert len(batches) >= 2 and batches[1].first_line == 5 + len(batches[0].times)


def test_toaci1_files_of_older_loggernet_versions(tmp_path):
    """TOACI1: a short environment line (station, table), the field names, then the rows."""
    p = tmp_path / "old.dat"
    p.write_text(
        '"TOACI1","Hill_Top","Ten_Min"\n"TMSTAMP","RECNBR","WS_80m_Avg","WS_80m_Std","Temp_C"\n'
        '"2009-03-01 00:10:00",1,5.5,0.4,2.5\n"2009-03-01 00:20:00",2,6.0,"NAN",2.4\n'
    )
    header, times, values = read_all(p)
    assert header.format == "toaci1" and (header.station_name, header.table_name) == ("Hill_Top", "Ten_Min")
    assert [(c.name, c.statistic) for c in header.columns] == [
        ("WS_80m_Avg", "avg"), ("WS_80m_Std", "sd"), ("Temp_C", "unknown")]
    assert [str(t) for t in times] == ["2009-03-01T00:10:00.000000", "2009-03-01T00:20:00.000000"]
    assert values[0].tolist() == [5.5, 0.4, 2.5] and np.isnan(values[1, 1])


def test_toaci1_without_field_names_fails_clearly(tmp_path):
    p = tmp_path / "old.dat"
    p.write_text('"TOACI1","Hill_Top","Ten_Min"\n')
    with pytest.raises(ParseError) as err:
        read_all(p)
    assert (err.value.line, err.value.reason) == (2, "the header is incomplete: 1 of 2 lines")
