"""Bounds on typed values and safe JSON (core.limits), and the bad Task 43 documents that the
CLI and the Metadata page must refuse with a clear message (shared with those tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core import iea43, limits
from core.errors import ConfigError, InvalidValue
from core.formats.generic import GenericMapping
from core.metadata import MetadataError
from tests.unit.test_metadata import DEMO_DOC

LOC = "$.measurement_location[0]"
POINT = f"{LOC}.measurement_point[0]"


def _doc(change) -> bytes:
    doc = json.loads(DEMO_DOC.read_text())
    change(doc["measurement_location"][0])
    return json.dumps(doc).encode()  # NaN and Infinity become the literals Python's json writes


def _set(path: list, value):
    def change(loc: dict) -> None:
        obj = loc
        for p in path[:-1]:
            obj = obj[p]
        obj[path[-1]] = value
    return change


#: (file name, document bytes, the first problem reported). Each would have been imported
#: or crashed (RecursionError, a database error, OverflowError) before it was checked.
BAD_DOCUMENTS = [
    ("deep.json", b'{"version": "1.3.0-2024.03", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "$: nested more than 64 levels deep (at line 1, column 98)"),
    ("deep_objects.json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
     "$: nested more than 64 levels deep (at line 1, column 321)"),
    ("nan.json", _doc(_set(["latitude_ddeg"], float("nan"))),
     f"{LOC}.latitude_ddeg: NaN is not a number JSON allows (no NaN or Infinity)"),
    ("infinity.json", _doc(_set(["measurement_point", 0, "logger_measurement_config", 0, "slope"], float("-inf"))),
     f"{POINT}.logger_measurement_config[0].slope: -Infinity is not a number JSON allows (no NaN or Infinity)"),
    ("overflow.json", _doc(_set(["measurement_point", 0, "height_m"], 1)).replace(b'"height_m": 1,',
                                                                                  b'"height_m": 1e999,'),
     f"{POINT}.height_m: 1e999 is not a number JSON allows (no NaN or Infinity)"),
    ("offset.json", _doc(_set(["logger_main_config", 0, "offset_from_utc_hrs"], 99999)),
     f"{LOC}.logger_main_config[0].offset_from_utc_hrs: UTC offset (hours) 99999 is outside -12 … 14"),
    ("height.json", _doc(_set(["measurement_point", 0, "height_m"], 1e300)),
     f"{POINT}.height_m: height (m) 1e+300 is outside -1000 … 9000"),
    ("slope.json", _doc(_set(["measurement_point", 0, "sensor", 0, "calibration", 0, "slope"], 1e300)),
     f"{POINT}.sensor[0].calibration[0].slope: certificate slope 1e+300 is outside -1e+06 … 1e+06"),
    ("averaging.json", _doc(_set(["logger_main_config", 0, "averaging_period_minutes"], 1e300)),
     f"{LOC}.logger_main_config[0].averaging_period_minutes: 1e+300 minutes is longer than a day"),
    ("year1.json", _doc(_set(["logger_main_config", 0, "date_from"], "0001-01-01T00:00:00+05:00")),
     f"{LOC}.logger_main_config[0].date_from: '0001-01-01T00:00:00+05:00' is not a date-time: "
     "0001-01-01 is before 1970-01-01"),
    ("name.json", _doc(_set(["name"], "M" * 300)),
     f"{LOC}.name: name: 300 characters, more than the 200 allowed"),
    ("notes.json", _doc(_set(["notes"], "n" * 20_000)),
     f"{LOC}.notes: a text of 20,000 characters, more than the 10,000 allowed"),
]


@pytest.mark.parametrize(("name", "data", "first"), BAD_DOCUMENTS, ids=[b[0] for b in BAD_DOCUMENTS])
def test_each_bad_document_is_one_clear_problem(name, data, first):
    with pytest.raises(MetadataError) as err:
        iea43.validate(iea43.parse_document(data, name))
    assert err.value.errors[0] == first


def test_a_document_larger_than_the_setting_is_refused(monkeypatch):
    from core import settings

    monkeypatch.setattr(settings, "_current", settings.Settings(max_metadata_bytes=1000))
    with pytest.raises(MetadataError) as err:
        iea43.parse_document(b" " * 1001 + b"{}", "big.json")
    assert err.value.errors == ["$: 1,003 bytes, more than the 1,000 allowed (STATIONMANAGER_MAX_METADATA_BYTES)"]


def test_a_python_dict_with_nan_or_deep_nesting_is_refused_too():
    doc = json.loads(DEMO_DOC.read_text())
    doc["measurement_location"][0]["longitude_ddeg"] = float("inf")
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    doc["x"] = deep
    with pytest.raises(MetadataError) as err:
        iea43.validate(doc)
    assert err.value.errors == [f"{LOC}.longitude_ddeg: inf is not a number JSON allows (no NaN or Infinity)",
                                "$.x" + "[0]" * 63 + ": nested more than 64 levels deep"]


def test_a_far_open_end_with_a_utc_offset_is_still_in_force():  # it overflowed datetime before
    doc = json.loads(DEMO_DOC.read_text())
    doc["measurement_location"][0]["logger_main_config"][0]["date_to"] = "9999-12-31T23:00:00-05:00"
    iea43.validate(doc)
    assert iea43._plan(doc)[0].loggers[0]["valid_to"] is None


def test_the_good_documents_still_pass():
    for path in DEMO_DOC.parent.glob("*iea43_wra_data_model.json"):
        iea43.validate(iea43.parse_document(path.read_bytes(), path.name))


def test_a_huge_integer_is_refused_not_parsed():  # int() of 5000 digits raises ValueError in Python 3.11
    with pytest.raises(InvalidValue) as err:
        limits.load_json("[" + "9" * 5000 + "]")
    assert str(err.value) == "$[0]: a whole number of 5000 digits is too large"


def test_json_path_of_odd_keys():
    with pytest.raises(InvalidValue) as err:
        limits.load_json('{"a b": {"c": NaN}}')
    assert err.value.path == '$["a b"].c'


@pytest.mark.parametrize(("value", "ok"), [(-720, True), (840, True), (-721, False), (841, False), (True, False),
                                           (1.5, False), (99999 * 60, False)])
def test_utc_offset_minutes(value, ok):
    if ok:
        assert limits.check_utc_offset_minutes(value) == value
    else:
        with pytest.raises(InvalidValue):
            limits.check_utc_offset_minutes(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "1", None, True])
def test_range_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(InvalidValue):
        limits.check_range(value, "latitude", *limits.LATITUDE)


def test_times_between_1970_and_2100():
    assert limits.check_time(datetime(1970, 1, 1, tzinfo=UTC), "start")
    assert limits.check_time(datetime(2100, 1, 1), "end")
    for bad in (datetime(1969, 12, 31, 23, 59), datetime(2100, 1, 1, 0, 1), datetime.max,
                datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))):
        with pytest.raises(InvalidValue):
            limits.check_time(bad, "start")


def test_texts_have_bounded_length_and_no_control_characters():
    assert limits.check_text("Spd 80 m\tN", "name") == "Spd 80 m\tN"
    for bad in ("x" * 201, "a\x00b", "a\x1b[31mred"):
        with pytest.raises(InvalidValue):
            limits.check_text(bad, "name")


@pytest.mark.parametrize("name", ["Nowhere/Else", "../../../etc/passwd", "/etc/localtime", "", "x" * 100, "UTC\x00"])
def test_unknown_time_zones(name):
    with pytest.raises(InvalidValue, match="is unknown"):
        limits.check_timezone(name)


@pytest.mark.parametrize(("text", "message"), [
    ('{"utc_offset_minutes": 99999}', "utc_offset_minutes must be a whole number between -720 and 840"),
    ('{"utc_offset_minutes": 900}', "utc_offset_minutes must be a whole number between -720 and 840"),
    ('{"utc_offset_minutes": true}', "utc_offset_minutes must be a whole number between -720 and 840"),
    ('{"utc_offset_minutes": NaN}', "$.utc_offset_minutes: NaN is not a number JSON allows"),
    ('{"missing": ' + "[" * 100_000 + "]" * 100_000 + "}", "$: nested more than 64 levels deep"),
    ('{"header_row": true}', "header_row must be a whole number ≥ 0"),
])
def test_file_mappings_refuse_bad_values(text, message):
    with pytest.raises(ConfigError) as err:
        GenericMapping.from_json(text)
    assert message in str(err.value)


def test_file_mapping_offsets_at_the_bounds():
    assert GenericMapping(utc_offset_minutes=-720).utc_offset_minutes == -720
    assert GenericMapping(utc_offset_minutes=840).utc_offset_minutes == 840
