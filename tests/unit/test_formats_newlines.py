"""Line ends: every text format reads files with LF, CRLF, bare CR (old Mac, as older
Windographer and NRG software wrote them) or a mix, of any size, with exact error lines.

The samples are grown past 1 MiB with more rows (each sample's last rows repeated at later
times), so that a reader that takes a CR file for one giant line cannot pass.
"""

from __future__ import annotations

import itertools
import lzma
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.errors import ParseError
from core.formats import generic, open_reader
from tests.unit.test_formats import DATA, DEMO_XZ, LOGR, SYMPRO, WINDO, read_all

TOA5 = DATA / "toa5" / "TestLogger_Hourly_1.dat"
SIZE = 1_300_000  # bytes: more than the 1 MiB longest header line

# format -> (text, lines before the first data row, delimiter, strptime format of the stamp, step)
def _toaci1() -> str:
    lines = TOA5.read_text().splitlines()
    return "\n".join(['"TOACI1","TestLogger","Hourly"', lines[1], *lines[4:]]) + "\n"


def _generic() -> str:
    lines = lzma.decompress(DEMO_XZ.read_bytes()).decode("utf-8-sig").splitlines()
    return "\n".join(lines[:200]) + "\n"


SAMPLES = {
    "toa5": (lambda: TOA5.read_text(), 4, ",", '"%Y-%m-%d %H:%M:%S"', timedelta(hours=1)),
    "toaci1": (_toaci1, 2, ",", '"%Y-%m-%d %H:%M:%S"', timedelta(hours=1)),
    "nrg_symphoniepro": (lambda: SYMPRO.read_text(), 241, "\t", "%Y-%m-%d %H:%M:%S", timedelta(minutes=1)),
    "nrg_logr": (lambda: LOGR.read_text(), 263, "\t", "%Y-%m-%dT%H:%M:%SZ", timedelta(minutes=1)),
    "windographer": (lambda: WINDO.read_text(), 13, "\t", "%d/%m/%Y %H:%M:%S+00:00", timedelta(minutes=10)),
    "generic": (_generic, 1, ",", "%Y-%m-%d %H:%M:%S", timedelta(minutes=10)),
}
ENDINGS = {
    "cr": lambda i: "\r",
    "crlf": lambda i: "\r\n",
    "mixed": lambda i: ("\r", "\r\n", "\n")[i % 3],
}


def grown(fmt: str) -> tuple[list[str], int]:
    """The sample's lines (no line ends) grown past :data:`SIZE` bytes, and its header length."""
    make, head, delim, time_format, step = SAMPLES[fmt]
    lines = [ln for ln in make().splitlines()]
    while not lines[-1].strip():
        lines.pop()
    data = lines[head:]
    last = datetime.strptime(data[-1].split(delim, 1)[0], time_format)
    size = sum(len(ln) + 1 for ln in lines)
    for row in itertools.cycle(data[-5:]):
        if size > SIZE:
            break
        last += step
        line = last.strftime(time_format) + delim + row.split(delim, 1)[1]
        lines.append(line)
        size += len(line) + 1
    return lines, head


def write(path: Path, lines: list[str], ending) -> Path:
    path.write_bytes("".join(ln + ending(i) for i, ln in enumerate(lines)).encode("utf-8"))
    return path


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_every_text_format_reads_any_line_ends(tmp_path, fmt, ending):
    lines, head = grown(fmt)
    lf = open_reader(write(tmp_path / "lf.txt", lines, lambda i: "\n"))
    path = write(tmp_path / f"{ending}.txt", lines, ENDINGS[ending])
    assert path.stat().st_size > SIZE
    reader = open_reader(path)
    assert reader.format == fmt
    header, times, values = read_all(reader)
    lf_header, lf_times, lf_values = read_all(lf)
    assert len(times) == len(lines) - head
    assert [c.name for c in header.columns] == [c.name for c in lf_header.columns]
    assert (times == lf_times).all() and (values.shape == lf_values.shape)


@pytest.mark.parametrize("problem", ["not_a_number", "short_row"])
@pytest.mark.parametrize("ending", ["cr", "mixed"])
@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_error_lines_are_exact_with_any_line_ends(tmp_path, fmt, ending, problem):
    lines, head = grown(fmt)
    delim = SAMPLES[fmt][2]
    at = len(lines) - 7  # 0-based: far past the first MiB
    fields = lines[at].split(delim)
    if problem == "short_row":  # found by the csv module's second pass, not by pyarrow
        fields, reason = fields[:-2], "columns but this row has"
    else:
        fields[-1], reason = "abc", "'abc' is not a number"
    lines[at] = delim.join(fields)
    path = write(tmp_path / "bad.txt", lines, ENDINGS[ending])
    with pytest.raises(ParseError) as err:
        read_all(open_reader(path))
    assert reason in err.value.reason and err.value.line == at + 1, err.value


def test_head_lines_are_read_in_bounded_chunks_from_a_cr_file(tmp_path):
    """Only the head is read: a header line is found without reading the rest of the file."""
    path = tmp_path / "big.txt"
    path.write_bytes(b"Timestamp,WS\r" + b"2025-01-01 00:00:00,1.0\r" * 200_000)

    class Reader:
        name = "big.txt"

        def __init__(self, path):
            self.path = path

        def error(self, reason, line=None):
            return ParseError(reason, file=self.name, line=line)

    lines, encoding = generic.read_head_lines(Reader(path), None, 3)
    assert lines == ["Timestamp,WS", "2025-01-01 00:00:00,1.0", "2025-01-01 00:00:00,1.0"]


def test_a_cr_text_file_is_offered_a_mapping_and_its_preview_cuts_whole_lines(tmp_path):
    path = tmp_path / "mast.txt"
    path.write_bytes(b"Zeit;v\r" + b"".join(b"01.01.2025 00:%02d;5,5\r" % m for m in range(60)))
    assert generic.looks_like_text(path)
    mapping = generic.GenericMapping(delimiter=";", decimal=",", timestamp="Zeit", time_format="%d.%m.%Y %H:%M")
    header, batch = generic.preview(path, mapping, rows=100, head_bytes=100)
    assert batch is not None and len(batch.times) == 4  # whole lines of the first 100 bytes
