"""A header field that cannot be read is a warning on the file, never a refusal, as long as
the readings themselves are readable (the sample files are edited in a copy)."""

from __future__ import annotations

import numpy as np
import pytest

from core.formats import open_reader
from tests.unit.test_formats import LOGR, SYMPRO, WINDO, column, read_all

SAMPLES = {"nrg_symphoniepro": (SYMPRO, 370), "nrg_logr": (LOGR, 2), "windographer": (WINDO, 188)}


@pytest.mark.parametrize(
    ("fmt", "old", "new", "warning"),
    [
        # one odd value in a SymphoniePRO sensor history: a date with a stray character
        ("nrg_symphoniepro", "Effective Date:\t2022-03-17 00:00:00", "Effective Date:\t2022-03-17 00:00:00?",
         "line 41: Effective Date '2022-03-17 00:00:00?' is not a date"),
        ("nrg_symphoniepro", "Effective Date:\t2022-03-17 00:00:00", "Effective Date:\tsoon",
         "line 41: Effective Date 'soon' is not a date"),
        ("nrg_symphoniepro", "Height:\t85.00", "Height:\t85.x", "line 46: Height '85.x' is not a number"),
        ("nrg_symphoniepro", "Scale Factor:\t0.09350", "Scale Factor:\t0,0935",
         "line 48: Scale Factor '0,0935' is not a number"),
        ("nrg_symphoniepro", "Time Zone:\tUTC-5:00", "Time Zone:\tsomewhere",
         "line 24: cannot read the time zone 'somewhere'"),
        ("nrg_symphoniepro", "Latitude:\t44.5000000", "Latitude:\t144.5", "line 21: Latitude 144.5 is out of range"),
        ("nrg_logr", "Latitude:\t44.33889", "Latitude:\t144.3", "line 11: Latitude 144.3 is out of range"),
        ("nrg_logr", "Statistical Interval (min):\t1", "Statistical Interval (min):\tone",
         "line 24: Statistical Interval (min) 'one' is not a number"),
        ("windographer", "Latitude = N 0.000000", "Latitude = X 0", "line 3: cannot read the latitude 'X 0'"),
        ("windographer", "Elevation = 0 m", "Elevation = zero", "line 5: cannot read the elevation 'zero'"),
    ],
)
def test_unreadable_header_field_is_a_warning_and_every_reading_imports(tmp_path, fmt, old, new, warning):
    path, rows = SAMPLES[fmt]
    text = path.read_text()
    assert old in text
    good_header, good_times, good_values = read_all(open_reader(path))
    bad = tmp_path / path.name
    bad.write_text(text.replace(old, new, 1))
    header, times, values = read_all(open_reader(bad))
    assert header.format == fmt and len(times) == rows
    assert any(w.startswith(warning) for w in header.warnings), header.warnings
    assert len(header.warnings) == 1, header.warnings  # one odd value, one warning
    assert (times == good_times).all() and np.array_equal(values, good_values, equal_nan=True)
    assert good_header.warnings == []


def test_two_spaces_between_date_and_time_are_read(tmp_path):
    """NRG's sensor history with "2022-03-17  00:00:00": the date is plain to read."""
    text = SYMPRO.read_text().replace("Effective Date:\t2022-03-17 00:00:00", "Effective Date:\t2022-03-17  00:00:00")
    path = tmp_path / SYMPRO.name
    path.write_text(text)
    header, times, _ = read_all(open_reader(path))
    assert header.warnings == [] and len(times) == 370
    assert column(header, "Ch2_Anem_85.00m_S_Avg_m/s").extra["effective_date"] == "2022-03-17  00:00:00"


def test_unreadable_height_leaves_the_column_without_a_height(tmp_path):
    path = tmp_path / SYMPRO.name
    path.write_text(SYMPRO.read_text().replace("Height:\t85.00", "Height:\t85.x", 1))
    header = open_reader(path).header
    col = column(header, "Ch2_Anem_85.00m_S_Avg_m/s")
    assert col.height_m is None and col.logger_slope == 0.0935 and col.measurement_type == "wind_speed"
