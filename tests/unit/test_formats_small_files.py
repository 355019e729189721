"""Reading small delimited files cheaply must not change what they read: the time format is
guessed on the first rows, then checked against every row (a file that the first rows do not
settle is read as before); the numeric and text columns are found in one pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from core.errors import ParseError
from core.formats import open_reader
from core.formats.delimited import TIME_SAMPLE_ROWS, text_columns


def read_all(path: Path):
    reader = open_reader(path)
    batches = list(reader.batches())
    return reader.header, np.concatenate([b.times for b in batches]), np.concatenate([b.values for b in batches])


def _ten_minutes(start: np.datetime64, n: int) -> list[np.datetime64]:
    return [start + np.timedelta64(10 * i, "m") for i in range(n)]


def _write(path: Path, stamps: list[str]) -> Path:
    path.write_text("Timestamp,WS\n" + "".join(f"{s},{i / 10}\n" for i, s in enumerate(stamps)))
    return path


def test_month_first_stamps_that_look_day_first_in_the_first_rows(tmp_path):
    # the first rows (the 1st to the 12th of January) read either way; later ones only month-first
    times = [np.datetime64("2016-01-01T00:00") + np.timedelta64(6 * i, "h") for i in range(4 * 20)]
    assert np.datetime64("2016-01-12") - times[0] > np.timedelta64(TIME_SAMPLE_ROWS * 6, "h")
    stamps = [t.astype(object).strftime("%m/%d/%Y %H:%M") for t in times]
    _, got, values = read_all(_write(tmp_path / "m.csv", stamps))
    assert got.tolist() == np.array(times, dtype="datetime64[us]").tolist()
    assert values[:, 0].tolist() == [i / 10 for i in range(len(times))]


def test_files_in_other_formats_one_after_the_other_each_read_right(tmp_path):
    start = np.datetime64("2016-03-13T00:00")  # the 13th: day-first and month-first read one way only
    times = np.array(_ten_minutes(start, 3 * TIME_SAMPLE_ROWS), dtype="datetime64[us]")
    day_first = [t.astype(object).strftime("%d/%m/%Y %H:%M") for t in times]
    iso = [t.astype(object).strftime("%Y-%m-%d %H:%M:%S") for t in times]
    month_first = [t.astype(object).strftime("%m/%d/%Y %H:%M:%S") for t in times]
    for name, stamps in (("d.csv", day_first), ("i.csv", iso), ("m.csv", month_first), ("d2.csv", day_first)):
        _, got, _ = read_all(_write(tmp_path / name, stamps))
        assert got.tolist() == times.tolist(), name


@pytest.mark.parametrize("bad", ["31/02/2016 10:00", "garbage", ""])
def test_a_bad_stamp_after_the_first_rows_fails_with_its_line(tmp_path, bad):
    times = _ten_minutes(np.datetime64("2016-03-01T00:00"), 3 * TIME_SAMPLE_ROWS)
    stamps = [t.astype(object).strftime("%d/%m/%Y %H:%M") for t in times]
    k = 2 * TIME_SAMPLE_ROWS
    stamps[k] = bad
    with pytest.raises(ParseError) as err:
        read_all(_write(tmp_path / "bad.csv", stamps))
    assert err.value.line == k + 2  # the header line, then row k
    assert "timestamp" in err.value.reason


def test_an_iso_file_whose_times_go_back_after_the_first_rows_fails_with_its_line(tmp_path):
    times = _ten_minutes(np.datetime64("2016-03-01T00:00"), 3 * TIME_SAMPLE_ROWS)
    stamps = [t.astype(object).strftime("%Y-%m-%d %H:%M:%S") for t in times]
    k = 2 * TIME_SAMPLE_ROWS
    stamps[k] = stamps[k - 2]
    with pytest.raises(ParseError) as err:
        read_all(_write(tmp_path / "back.csv", stamps))
    assert (err.value.line, err.value.reason) == (k + 2, f"timestamp {stamps[k]} goes back in time after the previous row")


def test_text_columns_are_those_with_no_number_at_all():
    table = pa.table({
        "site": ["Hill", "Hill", None],
        "empty": pa.array([None, None, None], pa.string()),
        "mixed": ["1.5", "oops", None],
        "num": [" 2", "-3e2", "+.5"],
        "words_and_nan": [None, "abc", "def"],
        "ignored": ["x", "y", "z"],
    })
    assert text_columns(table, ["site", "empty", "mixed", "num", "words_and_nan"]) == {"site", "words_and_nan"}
    assert text_columns(table, []) == set()


def test_iso_stamps_pandas_reads_but_pyarrow_does_not_read_as_before(tmp_path):
    stamps = ["2016-3-1 0:10:00", "2016-03-01T00:20", "2016-03-01 00:30:00.5", "20160301T004000"]
    _, got, _ = read_all(_write(tmp_path / "loose.csv", stamps))
    assert [str(t) for t in got] == ["2016-03-01T00:10:00.000000", "2016-03-01T00:20:00.000000",
                                     "2016-03-01T00:30:00.500000", "2016-03-01T00:40:00.000000"]


@pytest.mark.parametrize(("stamp", "reason"), [
    ("1601-01-01 00:00:00", "timestamp 1601-01-01 00:00:00 goes back in time after the previous row"),
    ("2016-02-30 00:10:00", "'2016-02-30 00:10:00' is not a valid timestamp"),
    ("2016-03-01 00:00:00", "timestamp 2016-03-01 00:00:00 goes back in time after the previous row"),
])
def test_iso_stamps_that_do_not_read_fail_as_before(tmp_path, stamp, reason):
    stamps = ["2016-03-01 00:10:00", "2016-03-01 00:20:00", stamp, "2016-03-01 00:40:00"]
    with pytest.raises(ParseError) as err:
        read_all(_write(tmp_path / "bad.csv", stamps))
    assert (err.value.line, err.value.reason) == (4, reason)
