"""Column-name conventions and Task 43 validation, without a database."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from core import demo, iea43
from core.metadata import MetadataError, compass_of, parse_column_name, point_name

IEA43 = Path(__file__).resolve().parent.parent / "data" / "iea43"
DEMO_DOC = IEA43 / "demo_data_iea43_wra_data_model.json"
MM1_DOC = IEA43 / "iea43_wra_data_model.json"

#: The header of brightwind's demo_data.csv (the mast DEMO_DOC describes), after Timestamp.
DEMO_DATA_COLUMNS = (
    "Spd80mN,Spd80mS,Spd60mN,Spd60mS,Spd40mN,Spd40mS,Spd80mNStd,Spd80mSStd,Spd60mNStd,Spd60mSStd,"
    "Spd40mNStd,Spd40mSStd,Spd80mNMax,Spd80mSMax,Spd60mNMax,Spd60mSMax,Spd40mNMax,Spd40mSMax,Dir78mS,"
    "Dir78mSStd,Dir58mS,Dir58mSStd,Dir38mS,Dir38mSStd,T2m,RH2m,P2m,PrcpTot,BattMin"
).split(",")

WS, WD, T, RH, P = "wind_speed", "wind_direction", "air_temperature", "relative_humidity", "air_pressure"
U = "unknown"

# name, unit -> measurement_type, height_m, orientation, statistic, mapped
CASES = [
    # NRG SymphoniePRO: Ch<n>_<sensor>_<height>m_<bearing>_<statistic>_<unit>
    ("Ch2_Anem_85.00m_S_Avg_m/s", "", WS, 85.0, "S", "avg", True),
    ("Ch2_Anem_85.00m_S_SD_m/s", "", WS, 85.0, "S", "sd", True),
    ("Ch2_Anem_85.00m_S_Gust_m/s", "", WS, 85.0, "S", "gust", True),
    ("Ch3_Anem_10.00m__Max_m/s", "", WS, 10.0, None, "max", True),
    ("Ch4_Anem___Min_m/s", "", WS, None, None, "min", True),
    ("Ch13_Vane_83.00m_SE_Avg_deg", "", WD, 83.0, "SE", "avg", True),
    ("Ch15_Vane_10.00m_SSE_GustDir_Deg", "", WD, 10.0, "SSE", "gust", True),
    ("Ch20_Analog_5.00m_N/A_Avg_C", "", T, 5.0, None, "avg", True),
    ("Ch14_Analog_0.00m_N_Avg_hPa", "", P, 0.0, "N", "avg", True),
    ("Ch20_Analog_0.00m_N_Max_W/sqm", "", "solar_radiation", 0.0, "N", "max", True),
    ("Ch42_ModbusRTU_1.00m_S_Avg_", "", U, 1.0, "S", "avg", False),
    # NRG LOGR: Ch<n>_<statistic>_<unit>
    ("Ch3_SD_deg_C", "", T, None, None, "sd", True),
    ("Ch7_Min_V", "", "battery_voltage", None, None, "min", True),
    ("Ch1_NotUsed", "", U, None, None, "unknown", False),
    # brightwind / Windographer: no statistic word means the average
    ("Spd80mN", "", WS, 80.0, "N", "avg", True),
    ("Spd80mNStd", "", WS, 80.0, "N", "sd", True),  # the sd of Spd80mN, not bearing "NS"
    ("Spd80mSMax", "", WS, 80.0, "S", "max", True),
    ("Spd40mSStd", "", WS, 40.0, "S", "sd", True),
    ("Dir78mS", "", WD, 78.0, "S", "avg", True),
    ("Dir78mSStd", "", WD, 78.0, "S", "sd", True),
    ("T2m", "", T, 2.0, None, "avg", True),  # temperature at 2 m, not T + "2m…"
    ("RH2m", "", RH, 2.0, None, "avg", True),
    ("P2m", "", P, 2.0, None, "avg", True),
    ("PrcpTot", "", "precipitation", None, None, "sum", True),  # "Tot", not T
    ("BattMin", "", "battery_voltage", None, None, "min", True),
    ("Spd80mSSEStd", "", WS, 80.0, "SSE", "sd", True),
    ("Anem80mN", "", WS, 80.0, "N", "avg", True),
    # Campbell Scientific
    ("WS_80m_Avg", "", WS, 80.0, None, "avg", True),
    ("WS_80m_NE_Std", "", WS, 80.0, "NE", "sd", True),
    ("WS_60m_SW_Max", "", WS, 60.0, "SW", "max", True),
    ("WD_78m_Avg", "", WD, 78.0, None, "avg", True),
    ("AirT_2m_Avg", "", T, 2.0, None, "avg", True),
    ("AirTC_Avg", "", T, None, None, "avg", True),
    ("RH_2m_Max", "", RH, 2.0, None, "max", True),
    ("BP_2m_Avg", "", P, 2.0, None, "avg", True),
    ("BattV_Min", "", "battery_voltage", None, None, "min", True),
    ("PTemp_C_Max", "", "other", None, None, "max", True),  # the logger's panel, not the air
    ("AirT_C(42)", "", T, None, None, "avg", True),  # TOA5 array element
    ("RelHumid_Avg(3)", "", RH, None, None, "avg", True),
    ("WS2_80m_Avg", "", WS, 80.0, None, "avg", True),  # sensor 2, not 2 m
    # common words
    ("WindSpeed_80m_Avg", "", WS, 80.0, None, "avg", True),
    ("Wind_Dir_78m", "", WD, 78.0, None, "avg", True),
    ("Speed 80 m N Mean", "", WS, 80.0, "N", "avg", True),
    ("Direction_58m_SD", "", WD, 58.0, None, "sd", True),
    ("Temp_2m", "", T, 2.0, None, "avg", True),
    ("Humid_2m", "", RH, 2.0, None, "avg", True),
    ("Baro_2m", "", P, 2.0, None, "avg", True),
    ("Press_Avg", "", P, None, None, "avg", True),
    ("Rain_mm_Tot", "", "precipitation", None, None, "sum", True),
    ("GHI_Avg", "", "solar_radiation", None, None, "avg", True),
    ("Pyr_Avg", "", "solar_radiation", None, None, "avg", True),
    ("Solar_Avg", "", "solar_radiation", None, None, "avg", True),
    ("VertSpd_80m_Avg", "", "vertical_wind_speed", 80.0, None, "avg", True),
    # Task 43 point names: height and boom bearing as bare numbers
    ("Spd_80.1_315", "", WS, 80.1, "NW", "avg", True),
    ("Dir_76mNW", "", WD, 76.0, "NW", "avg", True),
    ("Tmp_78m", "", T, 78.0, None, "avg", True),
    ("Prs_76m", "", P, 76.0, None, "avg", True),
    # the unit decides when the name only numbers a channel
    ("CH1Avg", "", U, None, None, "avg", False),
    ("CH1Avg", "m/s", WS, None, None, "avg", True),
    ("CH1Ti30sec", "", U, None, None, "ti30sec", False),
    # never understood, never dropped
    ("RECORD", "", U, None, None, "unknown", False),
    ("TSoil_Avg", "", U, None, None, "avg", False),
    ("Logger_V", "", U, None, None, "unknown", False),
    ("Dirt_2m", "", U, 2.0, None, "unknown", False),
    ("", "", U, None, None, "unknown", False),
]


@pytest.mark.parametrize("name, unit, mtype, height, orient, stat, mapped", CASES,
                         ids=[f"{c[0]}|{c[1]}" for c in CASES])
def test_parse_column_name(name, unit, mtype, height, orient, stat, mapped):
    m = parse_column_name(name, unit)
    assert (m.measurement_type, m.height_m, m.orientation, m.statistic, m.mapped) == (
        mtype, height, orient, stat, mapped
    )
    if orient:
        assert m.orientation_deg == {"N": 0, "NE": 45, "SE": 135, "S": 180, "SSE": 157.5, "SW": 225,
                                     "NW": 315}[orient]


def test_enough_cases():
    assert len(CASES) >= 40


def test_statistic_variants_share_a_base_name_and_point():
    names = ["Spd80mN", "Spd80mNStd", "Spd80mNMax"]
    assert {parse_column_name(n).base_name for n in names} == {"Spd80mN"}
    assert {parse_column_name(n).point_name for n in names} == {"wind_speed 80m N"}
    assert parse_column_name("WS_80m_NE_Std").base_name == "WS_80m_NE"
    assert parse_column_name("Ch2_Anem_85.00m_S_Gust_m/s").base_name == "Ch2_Anem_85.00m_S"


def test_every_demo_data_column_is_recognised():
    for name in DEMO_DATA_COLUMNS:
        assert parse_column_name(name).mapped, name


def test_every_demo_site_column_is_recognised():
    for name in demo.COLUMNS[2:]:  # after TIMESTAMP, RECORD
        assert parse_column_name(name).mapped, name
    assert not parse_column_name("RECORD").mapped


def test_point_names_and_compass():
    assert point_name("wind_speed", 80, "N") == "wind_speed 80m N"
    assert point_name("air_temperature", 2.0, None) == "air_temperature 2m"
    assert point_name("wind_speed", 59.9, None) == "wind_speed 59.9m"
    assert [compass_of(d) for d in (0, 11, 12, 180, 348.75, 359)] == ["N", "N", "NNE", "S", "N", "N"]


# --- Task 43 validation ---------------------------------------------------------------------


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_both_sample_documents_are_valid_each_against_its_own_version():
    assert iea43.validate(load(DEMO_DOC)) == ("1.0", [])
    assert iea43.validate(load(MM1_DOC)) == ("1.3", [])


def test_a_1_3_property_is_refused_in_a_1_0_document_and_accepted_in_a_1_3_one():
    doc = load(DEMO_DOC)
    doc["measurement_location"][0]["measurement_point"][0]["logger_measurement_config"][0][
        "logger_stated_boom_orientation_deg"] = 0
    with pytest.raises(MetadataError) as err:
        iea43.validate(doc)
    assert err.value.errors == [
        "$.measurement_location[0].measurement_point[0].logger_measurement_config[0]: Additional properties "
        "are not allowed ('logger_stated_boom_orientation_deg' was unexpected)"
    ]
    doc["version"] = "1.3.0-2024.03"
    assert iea43.validate(doc) == ("1.3", [])


def test_a_1_1_document_is_checked_against_1_2_with_a_note():
    doc = load(DEMO_DOC)
    doc["version"] = "1.1.0-2022.06"
    schema, notes = iea43.validate(doc)
    assert schema == "1.2" and "1.1" in notes[0]


def test_broken_document_reports_every_error_with_its_json_path():
    doc = load(DEMO_DOC)
    loc = doc["measurement_location"][0]
    del doc["author"]
    del loc["name"]
    loc["latitude_ddeg"] = "north"
    loc["measurement_point"][3]["height_m"] = "x"
    loc["measurement_point"][5]["logger_measurement_config"][1]["column_name"][0]["statistic_type_id"] = "average"
    loc["measurement_point"][6]["logger_measurement_config"][0]["date_from"] = "yesterday"
    del loc["measurement_point"][7]["measurement_type_id"]
    loc["logger_main_config"][0]["offset_from_utc_hrs"] = "+1"
    with pytest.raises(MetadataError) as err:
        iea43.validate(doc)
    mp = "$.measurement_location[0].measurement_point"
    assert err.value.errors == [
        "$: 'author' is a required property",
        "$.measurement_location[0]: 'name' is a required property",
        "$.measurement_location[0].latitude_ddeg: 'north' is not of type 'number'",
        "$.measurement_location[0].logger_main_config[0].offset_from_utc_hrs: '+1' is not of type 'number', 'null'",
        f"{mp}[3].height_m: 'x' is not of type 'number', 'null'",
        f"{mp}[5].logger_measurement_config[1].column_name[0].statistic_type_id: 'average' is not one of the "
        "allowed values ('avg', 'sd', 'max', 'min', 'count', 'availability', 'quality', 'sum', …)",
        f"{mp}[6].logger_measurement_config[0].date_from: 'yesterday' is not a 'date-time'",
        f"{mp}[7]: 'measurement_type_id' is a required property",
    ]
    assert str(err.value).startswith("8 problems in the metadata:\n  - $: 'author' is a required property")


def test_problems_the_schema_cannot_state_are_reported_with_paths_too():
    doc = load(DEMO_DOC)
    points = doc["measurement_location"][0]["measurement_point"]
    points[1]["name"] = "Spd80mN"  # a second point of that name
    points[2]["logger_measurement_config"][0]["date_to"] = "2015-01-01T00:00:00"  # before date_from
    points[3]["logger_measurement_config"][0]["column_name"].append(  # Spd80mN's column, at the same time
        {"column_name": "Spd80mN", "statistic_type_id": "avg"})
    points[5]["logger_measurement_config"][1]["date_from"] = "2017-01-01T00:00:00"  # overlaps the first
    with pytest.raises(MetadataError) as err:
        iea43.validate(doc)
    mp = "$.measurement_location[0].measurement_point"
    assert err.value.errors == [
        f"{mp}[1].name: 'Spd80mN' is already the name of {mp}[0]",
        f"{mp}[2].logger_measurement_config[0].date_to: 2015-01-01T00:00 UTC is not after date_from "
        "2016-01-09T15:30 UTC",
        f"{mp}[3].logger_measurement_config[0].column_name[3]: column 'Spd80mN' is also mapped by "
        f"{mp}[0].logger_measurement_config[0].column_name[1] over an overlapping period",
        f"{mp}[5].logger_measurement_config[1]: its period overlaps that of {mp}[5].logger_measurement_config[0] "
        "(one logger configuration at a time)",
        f"{mp}[5].logger_measurement_config[1].column_name[0]: column 'Spd40mS' is also mapped by "
        f"{mp}[5].logger_measurement_config[0].column_name[0] over an overlapping period",
        f"{mp}[5].logger_measurement_config[1].column_name[1]: column 'Spd40mSStd' is also mapped by "
        f"{mp}[5].logger_measurement_config[0].column_name[1] over an overlapping period",
        f"{mp}[5].logger_measurement_config[1].column_name[2]: column 'Spd40mSMax' is also mapped by "
        f"{mp}[5].logger_measurement_config[0].column_name[2] over an overlapping period",
    ]


def test_unsupported_version_and_bad_json(tmp_path):
    doc = load(DEMO_DOC)
    doc["version"] = "0.2.0-2021.08"
    with pytest.raises(MetadataError, match=r"\$\.version: StationManager reads versions 1\.0 to 1\.3"):
        iea43.validate(doc)
    with pytest.raises(MetadataError, match=r"\$: a Task 43 document is a JSON object"):
        iea43.validate([doc])
    bad = tmp_path / "bad.json"
    bad.write_text('{"author": "x",\n  "version": }')
    with pytest.raises(MetadataError) as err:
        iea43.load_document(bad)
    assert err.value.errors == ["$: not valid JSON: Expecting value (line 2, column 14)"]
    assert str(err.value).startswith("bad.json: 1 problem in the metadata")


def test_validation_does_not_change_the_document():
    doc = load(MM1_DOC)
    before = copy.deepcopy(doc)
    iea43.validate(doc)
    assert doc == before
