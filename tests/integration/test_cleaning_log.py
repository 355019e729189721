"""Cleaning logs on a real PostgreSQL: brightwind's and Windographer's sample logs imported into
the brightwind demo mast, idempotence, bad files (each paired with its error), export and
round trips, and the ``stationmanager flag import|export`` commands as a separate process."""

from __future__ import annotations

import json
import lzma
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import cleaning_log, db, flags, ingest, metadata
from core.cleaning_log import CleaningLogError
from core.errors import NotFound
from tests.integration.test_cli import env_for, run

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data"
BRIGHTWIND = (DATA / "cleaning" / "demo_cleaning_file.csv").read_text()
WINDOGRAPHER = (DATA / "cleaning" / "windographer_flagging_log.txt").read_text()


def _demo_columns() -> list[str]:
    """The 29 column names of the brightwind demo mast (tests/data/generic/demo_data.csv.xz)."""
    with lzma.open(DATA / "generic" / "demo_data.csv.xz", "rt", encoding="utf-8-sig") as f:
        return f.readline().strip().split(",")[1:]


COLUMNS = _demo_columns()
SPD = [c for c in COLUMNS if c.startswith("Spd")]
DIR = [c for c in COLUMNS if c.startswith("Dir")]
ICING = [  # the eight icing periods of both sample logs
    ("2016-03-09 06:20", "2016-03-09 10:30"), ("2016-03-29 23:50", "2016-03-30 07:10"),
    ("2016-11-08 02:30", "2016-11-08 10:50"), ("2016-11-18 15:50", "2016-11-19 10:30"),
    ("2016-11-20 16:40", "2016-11-21 12:40"), ("2017-01-21 00:00", "2017-01-21 07:10"),
    ("2017-01-28 14:10", "2017-01-28 17:30"), ("2017-10-30 01:40", "2017-10-30 07:00"),
]


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_mast(conn, name: str, columns: list[str] = COLUMNS, interval_s: int | None = None) -> dict:
    """A station with the demo mast's channels (no readings needed to flag them)."""
    with conn.transaction():
        st = ingest.ensure_station(conn, name, "test")
        for c in columns:
            db.fetch_one(conn, "upsert_channel", station_id=st["id"], column_name=c, statistic="unknown", unit="")
        metadata.apply_conventions(conn, st["id"], "test")
        if interval_s:
            conn.execute("INSERT INTO logger (station_id, interval_s) VALUES (%s, %s)", (st["id"], interval_s))
    return st


@pytest.fixture
def mast(conn) -> dict:
    assert len(COLUMNS) == 29
    return make_mast(conn, "Demo Mast")


def flag_set(conn, station: str) -> set[tuple]:
    """The station's live flags as comparable tuples: (channels, start, end, category, note)."""
    return {(frozenset(r["columns"]), r["start_time"], r["end_time"], r["category"], r["note"])
            for r in flags.list_flags(conn, station)}


def n_flags(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM flag").fetchone()["n"]


# --- the sample logs --------------------------------------------------------------------------


def test_brightwind_sample_gives_twelve_flags_on_prefix_matched_channels(conn, mast):
    result = cleaning_log.import_flags(conn, "Demo Mast", BRIGHTWIND, "brightwind", "ana")
    assert {k: result[k] for k in ("added", "unchanged", "unmatched")} == {"added": 12, "unchanged": 0,
                                                                            "unmatched": []}
    rows = flags.list_flags(conn, "Demo Mast")
    assert len(rows) == 12 and {r["source"] for r in rows} == {"manual"} and {r["author"] for r in rows} == {"ana"}
    install = rows[0]  # "All" is the whole station
    assert (install["start_time"], install["end_time"]) == (t("2016-01-09 15:30"), t("2016-01-09 17:10"))
    assert install["whole_station"] and len(install["columns"]) == 29
    assert (install["category"], install["note"]) == ("other", "Installation")
    icing = [r for r in rows if r["category"] == "icing"]
    assert [(r["start_time"], r["end_time"]) for r in icing] == [(t(a), t(b)) for a, b in ICING]
    for r in icing:  # "Spd" and "Dir" lines of one period: one flag on every Spd* and Dir* column
        assert sorted(r["columns"]) == sorted(SPD + DIR) and len(r["columns"]) == 24 and r["note"] == ""
    invalid = {r["start_time"]: r for r in rows if r["note"] == "Invalid"}
    assert {k: sorted(r["columns"]) for k, r in invalid.items()} == {
        t("2016-12-26 07:00"): ["Dir58mS", "Dir58mSStd"],  # a prefix: Std too
        t("2017-08-11 02:10"): ["Dir78mS", "Dir78mSStd"],
        t("2017-09-04 00:30"): ["Spd80mS", "Spd80mSMax", "Spd80mSStd"],
    }
    assert {r["end_time"] for r in invalid.values()} == {t("2018-02-09 21:30")}
    [audit] = conn.execute("SELECT * FROM audit WHERE action = 'import cleaning log'").fetchall()
    assert audit["actor"] == "ana" and audit["details"]["added"] == 12 and audit["details"]["format"] == "brightwind"


def test_windographer_sample_gives_thirteen_flags_and_reports_the_unknown_column(conn, mast):
    result = cleaning_log.import_flags(conn, "Demo Mast", WINDOGRAPHER, "windographer", "ben")
    assert {k: result[k] for k in ("added", "unchanged", "unmatched")} == {"added": 13, "unchanged": 0,
                                                                            "unmatched": ["Sp"]}
    rows = flags.list_flags(conn, "Demo Mast")
    install = rows[0]
    assert not install["whole_station"] and sorted(install["columns"]) == sorted(COLUMNS)
    assert (install["category"], install["note"], install["end_time"]) == ("other", "Installation",
                                                                           t("2016-01-09 17:10"))
    icing = [r for r in rows if r["category"] == "icing"]
    # End Time is exclusive (Time Steps = span / 10 min), so the periods equal brightwind's
    assert [(r["start_time"], r["end_time"]) for r in icing] == [(t(a), t(b)) for a, b in ICING]
    assert all(sorted(r["columns"]) == sorted(SPD + DIR) for r in icing)
    others = [(r["columns"], r["start_time"], r["note"]) for r in rows if r["category"] == "other"][1:]
    assert others == [  # exact column names, not prefixes
        (["Dir58mS"], t("2016-12-26 07:00"), "Invalid"),
        (["Dir78mS"], t("2017-08-11 02:10"), "Invalid"),
        (["Spd80mS"], t("2017-09-04 00:30"), "Invalid"),
        (["Spd80mS"], t("2017-09-04 00:30"), "Synthesized"),
    ]


def test_reimporting_adds_nothing_and_equal_flags_of_the_other_format_are_recognised(conn, mast):
    cleaning_log.import_flags(conn, "Demo Mast", BRIGHTWIND, "brightwind", "ana")
    before = flag_set(conn, "Demo Mast")
    again = cleaning_log.import_flags(conn, "Demo Mast", BRIGHTWIND, "brightwind", "ana")
    assert (again["added"], again["unchanged"]) == (0, 12)
    assert flag_set(conn, "Demo Mast") == before and n_flags(conn) == 12
    # the same 8 icing flags come from the Windographer log; its installation flag lists 29
    # channels rather than the whole station, and its Invalid/Synthesized lines are exact columns
    wg = cleaning_log.import_flags(conn, "Demo Mast", WINDOGRAPHER, "windographer", "ana")
    assert (wg["added"], wg["unchanged"]) == (5, 8)
    assert cleaning_log.import_flags(conn, "Demo Mast", WINDOGRAPHER, "windographer", "ana")["added"] == 0
    assert n_flags(conn) == 17


def test_a_deleted_flag_is_added_again_and_an_edited_one_is_new(conn, mast):
    cleaning_log.import_flags(conn, "Demo Mast", BRIGHTWIND, "brightwind", "ana")
    rows = flags.list_flags(conn, "Demo Mast")
    flags.delete_flag(conn, rows[0]["id"], "ana")
    flags.update_flag(conn, rows[1]["id"], "ana", note="confirmed by the camera")
    again = cleaning_log.import_flags(conn, "Demo Mast", BRIGHTWIND, "brightwind", "ana")
    assert (again["added"], again["unchanged"]) == (2, 10)


def test_windographer_end_time_inclusive_is_detected_from_time_steps(conn, mast):
    inclusive = ("Data Column\tFlag Name\tStart Time\tEnd Time\tTime Steps\n"
                 "T2m\tIcing\t2016-03-09 06:20\t2016-03-09 10:20\t25\n")  # 25 stamps, the last at 10:20
    cleaning_log.import_flags(conn, "Demo Mast", inclusive, "windographer", "ana")
    [row] = flags.list_flags(conn, "Demo Mast")
    assert (row["start_time"], row["end_time"], row["columns"]) == (t("2016-03-09 06:20"), t("2016-03-09 10:30"),
                                                                   ["T2m"])


def test_time_steps_are_checked_against_the_station_logger_interval(conn):
    make_mast(conn, "Minute Mast", interval_s=60)
    with pytest.raises(CleaningLogError) as err:
        cleaning_log.import_flags(conn, "Minute Mast", WINDOGRAPHER, "windographer", "ana")
    assert len(err.value.problems) == 226  # every line
    assert err.value.problems[0] == (
        2, "Time Steps 10 does not fit 2016-01-09 15:30 – 2016-01-09 17:10 at the station's 1-minute interval: "
           "expected 100 (End Time exclusive) or 101 (End Time inclusive)")
    assert n_flags(conn) == 0
    # brightwind logs have no time steps: the interval does not matter
    assert cleaning_log.import_flags(conn, "Minute Mast", BRIGHTWIND, "brightwind", "ana")["added"] == 12


def test_a_station_without_matching_channels_reports_every_sensor_unmatched(conn):
    make_mast(conn, "Other Mast", ["WS_80m_NE_Avg", "AirT_2m_Avg"])
    result = cleaning_log.import_flags(conn, "Other Mast", BRIGHTWIND, "brightwind", "ana")
    # only "All" applies (to the whole station)
    assert (result["added"], result["unmatched"]) == (1, ["Spd", "Dir", "Dir58mS", "Dir78mS", "Spd80mS"])


# --- bad files --------------------------------------------------------------------------------

BW_HEAD = "Sensor,Start,Stop,Reason\n"
WG_HEAD = "Data Column\tFlag Name\tStart Time\tEnd Time\tTime Steps\n"
GOOD_BW = "Spd,2016-03-09 06:20,2016-03-09 10:30,Icing\n"
GOOD_WG = "T2m\tIcing\t2016-03-09 06:20\t2016-03-09 10:30\t25\n"
BAD = [
    ("brightwind", "", [(0, "the file is empty: a brightwind cleaning log starts with the header Sensor, Start, "
                            "Stop, Reason")]),
    ("brightwind", "\n\n", [(0, "the file is empty: a brightwind cleaning log starts with the header Sensor, Start, "
                                "Stop, Reason")]),
    ("brightwind", "Sensor;Start;Stop\n" + GOOD_BW,
     [(1, "the header must name the columns Sensor, Start, Stop (a brightwind cleaning log); it has "
          "'Sensor;Start;Stop'")]),
    ("brightwind", WINDOGRAPHER,
     [(1, "the header must name the columns Sensor, Start, Stop (a brightwind cleaning log); it has "
          "'Data Column\\tFlag Name\\tStart Time\\tEnd Time\\tTime Steps'")]),
    ("windographer", BRIGHTWIND,
     [(1, "the header must name the columns Data Column, Flag Name, Start Time, End Time (a windographer cleaning "
          "log); it has 'Sensor,Start,Stop,Reason'")]),
    ("brightwind", BW_HEAD + GOOD_BW + "Dir,2016-03-09 10:30,2016-03-09 06:20,Icing\n" + GOOD_BW,
     [(3, "Stop 2016-03-09 06:20 is not after Start 2016-03-09 10:30")]),
    ("brightwind", BW_HEAD + GOOD_BW + "Dir,2016-03-09 06:20,2016-03-09 06:20,Icing\n",
     [(3, "Stop 2016-03-09 06:20 is not after Start 2016-03-09 06:20")]),
    ("brightwind", BW_HEAD + "Spd,09/03/2016 06:20,09/03/2016 10:30,Icing\n",
     [(2, "Start '09/03/2016 06:20': day and month are ambiguous; write the date year first, e.g. 2016-01-09 "
          "15:30")]),
    ("brightwind", BW_HEAD + GOOD_BW + "Dir,2016-03-09 06:20,,Icing\n",
     [(3, "Stop is empty: give a date and time like 2016-01-09 15:30")]),
    ("brightwind", BW_HEAD + ",2016-03-09 06:20,2016-03-09 10:30,Icing\n\n" + "Dir,2016-03-09 06:20,tomorrow,x\n",
     [(2, "Sensor is empty: name a column prefix, or All"),
      (4, "Stop 'tomorrow' is not a date and time like 2016-01-09 15:30")]),
    ("brightwind", BW_HEAD + "Spd,2016-03-09 06:20,2016-03-09 10:30\n" + GOOD_BW,
     [(2, "3 fields, but the header has 4")]),
    ("brightwind", BW_HEAD + '"Spd,2016-03-09 06:20,2016-03-09 10:30,Icing\n' + GOOD_BW,
     [(2, "1 fields, but the header has 4")]),
    ("windographer", WG_HEAD + GOOD_WG + "T2m\tIcing\t2016-03-09 06:20\t2016-03-09 10:30\tmany\n",
     [(3, "Time Steps 'many' is not a whole number")]),
    ("windographer", WG_HEAD + "T2m\tIcing\t2016-03-09 06:20\t2016-03-09 10:30\t7\n" + GOOD_WG,
     [(2, "Time Steps 7 does not fit 2016-03-09 06:20 – 2016-03-09 10:30 at the station's 10-minute interval: "
          "expected 25 (End Time exclusive) or 26 (End Time inclusive)")]),
    ("windographer", WG_HEAD + "T2m\tIcing\t2016-03-09 06:20\n",
     [(2, "3 fields, but the header has 5")]),
    ("windographer", WG_HEAD + "\tIcing\t2016-03-09 06:20\t2016-03-09 10:30\t25\n",
     [(2, "Data Column is empty: name a column")]),
]


@pytest.mark.parametrize(("fmt", "text", "problems"), BAD, ids=[f"bad{i:02d}" for i in range(1, len(BAD) + 1)])
def test_a_bad_file_reports_every_bad_line_and_imports_nothing(conn, mast, fmt, text, problems):
    with pytest.raises(CleaningLogError) as err:
        cleaning_log.import_flags(conn, "Demo Mast", text, fmt, "ana")
    assert err.value.problems == problems
    assert "nothing imported" in str(err.value)
    assert n_flags(conn) == 0
    assert conn.execute("SELECT count(*) AS n FROM audit WHERE entity = 'flag'").fetchone()["n"] == 0


def test_unknown_format_station_or_actor_are_refused(conn, mast):
    with pytest.raises(flags.FlagError, match="format 'csv' is not one of: brightwind, windographer"):
        cleaning_log.import_flags(conn, "Demo Mast", BRIGHTWIND, "csv", "ana")
    with pytest.raises(NotFound, match="no station 'Nowhere'"):
        cleaning_log.import_flags(conn, "Nowhere", BRIGHTWIND, "brightwind", "ana")
    with pytest.raises(flags.FlagError, match="needs the user"):
        cleaning_log.import_flags(conn, "Demo Mast", BRIGHTWIND, "brightwind", " ")
    with pytest.raises(flags.FlagError, match="format 'xls'"):
        cleaning_log.export_flags(conn, "Demo Mast", "xls")
    assert n_flags(conn) == 0


# --- export and round trips -------------------------------------------------------------------


def varied_flags(conn, station: str) -> None:
    """Flags of every kind a cleaning log must carry."""
    ids = dict(zip(COLUMNS, flags.channel_ids_by_name(conn, station, COLUMNS), strict=True))
    add = lambda chans, a, b, cat, note="": flags.add_flag(  # noqa: E731
        conn, station, chans if chans == "station" else [ids[c] for c in chans], t(a), t(b), cat, note, "ana")
    add("station", "2016-05-01 00:00", "2016-05-01 06:00", "maintenance", "tower climbed")
    add(SPD + DIR, "2016-05-02 03:00", "2016-05-02 09:10", "icing")
    add(["Spd80mN", "Spd80mNStd", "Spd80mNMax"], "2016-05-03 00:00", "2016-05-04 00:00", "faulty sensor",
        "bearing worn, see ticket 12")
    add(["T2m", "RH2m"], "2016-05-03 00:00", "2016-05-04 00:00", "other", "Installation")
    add(["P2m"], "2016-05-05 12:03:27", "2016-05-05 14:00:00.500000", "suspect", "brush-selected, odd times")
    add(["BattMin"], "2016-05-06 00:00", "2016-05-06 01:00", "other", "icing")  # a note that reads as a category
    add(["PrcpTot"], "2016-05-06 00:00", "2016-05-06 01:00", "tower shadow", "")
    gone = add(["T2m"], "2016-05-07 00:00", "2016-05-08 00:00", "icing")
    flags.delete_flag(conn, gone, "ana")  # deleted flags are not exported


@pytest.mark.parametrize("fmt", cleaning_log.FORMATS)
def test_export_then_import_into_a_fresh_station_gives_the_same_flags(conn, mast, fmt):
    varied_flags(conn, "Demo Mast")
    warnings: list[str] = []
    text = cleaning_log.export_flags(conn, "Demo Mast", fmt, warnings=warnings)
    make_mast(conn, "Copy Mast")
    result = cleaning_log.import_flags(conn, "Copy Mast", text, fmt, "ben")
    assert (result["added"], result["unchanged"], result["unmatched"]) == (7, 0, [])
    assert flag_set(conn, "Copy Mast") == flag_set(conn, "Demo Mast")
    whole = [r["whole_station"] for r in flags.list_flags(conn, "Copy Mast")]
    # Windographer has no whole-station line: that flag comes back on each channel
    assert whole == [fmt == "brightwind"] + [False] * 6
    assert warnings == ([] if fmt == "brightwind" else
                        [f"flag {flags.list_flags(conn, 'Demo Mast')[0]['id']} is on the whole station: "
                         "Windographer gets one line per current channel"])
    # and into the station it came from: nothing new
    assert cleaning_log.import_flags(conn, "Demo Mast", text, fmt, "ana")["added"] == (0 if fmt == "brightwind" else 1)


def test_exported_text_of_the_brightwind_sample(conn, mast):
    cleaning_log.import_flags(conn, "Demo Mast", BRIGHTWIND, "brightwind", "ana")
    lines = cleaning_log.export_flags(conn, "Demo Mast", "brightwind").splitlines()
    assert lines[:2] == ["Sensor,Start,Stop,Reason", "All,2016-01-09 15:30,2016-01-09 17:10,Installation"]
    first_icing = [ln for ln in lines if ln.endswith(",2016-03-09 06:20,2016-03-09 10:30,icing")]
    assert [ln.split(",")[0] for ln in first_icing] == [  # one line per base column; Std/Max follow by prefix
        "Dir38mS", "Dir58mS", "Dir78mS", "Spd40mN", "Spd40mS", "Spd60mN", "Spd60mS", "Spd80mN", "Spd80mS"]
    assert "Spd80mS,2017-09-04 00:30,2018-02-09 21:30,Invalid" in lines and len(lines) == 1 + 1 + 8 * 9 + 3
    wg = cleaning_log.export_flags(conn, "Demo Mast", "windographer").splitlines()
    assert wg[0] == "Data Column\tFlag Name\tStart Time\tEnd Time\tTime Steps"
    assert "Dir58mSStd\tInvalid\t2016-12-26 07:00\t2018-02-09 21:30\t59127" in wg  # as in Windographer's own log
    assert len(wg) == 1 + 29 + 8 * 24 + 2 + 2 + 3


def test_a_flag_brightwind_prefixes_cannot_name_exactly_is_exported_wider_with_a_warning(conn, mast):
    [dir78] = flags.channel_ids_by_name(conn, "Demo Mast", ["Dir78mS"])
    fid = flags.add_flag(conn, "Demo Mast", [dir78], t("2016-05-01 00:00"), t("2016-05-02 00:00"), "suspect",
                         "", "ana")
    warnings: list[str] = []
    text = cleaning_log.export_flags(conn, "Demo Mast", "brightwind", warnings=warnings)
    assert text.splitlines()[1] == "Dir78mS,2016-05-01 00:00,2016-05-02 00:00,suspect"
    assert warnings == [f"flag {fid} also covers Dir78mSStd in the brightwind file (its sensor names are "
                        "column-name prefixes)"]
    wg = cleaning_log.export_flags(conn, "Demo Mast", "windographer")  # exact there
    make_mast(conn, "Copy Mast")
    cleaning_log.import_flags(conn, "Copy Mast", wg, "windographer", "ana")
    assert flag_set(conn, "Copy Mast") == flag_set(conn, "Demo Mast")


# --- the command line -------------------------------------------------------------------------


def test_cli_import_and_export(db_url, settings, conn, mast, tmp_path):
    env = env_for(db_url, settings.home)
    sample = str(DATA / "cleaning" / "demo_cleaning_file.csv")
    args = ["flag", "import", sample, "--station", "Demo Mast", "--format", "brightwind"]
    out = run(args + ["--json"], env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["added"] == 12
    out = run(args, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{sample}: 0 flags added, 12 already there\n"

    bad = tmp_path / "bad.csv"
    bad.write_text(BW_HEAD + GOOD_BW + "Dir,2016-03-09 06:20,soon,Icing\n")
    out = run(["flag", "import", str(bad), "--station", "Demo Mast", "--format", "brightwind"], env)
    assert out.returncode == 2
    assert out.stderr == (f"error: {bad}: 1 bad line in the cleaning log, nothing imported (correct it and import "
                          "the file again):\nline 3: Stop 'soon' is not a date and time like 2016-01-09 15:30\n")

    dest = tmp_path / "flags.csv"
    out = run(["flag", "export", "--station", "Demo Mast", "--format", "brightwind", "--out", str(dest)], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{dest}: 76 lines (brightwind)\n" and len(dest.read_text().splitlines()) == 77
    make_mast(conn, "Copy Mast")
    out = run(["flag", "import", str(dest), "--station", "Copy Mast", "--format", "brightwind"], env)
    assert out.returncode == 0, out.stderr
    assert flag_set(conn, "Copy Mast") == flag_set(conn, "Demo Mast")

    wg = run(["flag", "import", str(DATA / "cleaning" / "windographer_flagging_log.txt"), "--station", "Demo Mast",
              "--format", "windographer"], env)
    assert wg.returncode == 0, wg.stderr
    assert wg.stdout.splitlines()[1] == "no channel of Demo Mast matches: Sp"
    out = run(["flag", "export", "--station", "Demo Mast", "--format", "brightwind", "--out", str(dest)], env)
    assert out.returncode == 0  # exact Windographer columns widen to prefixes: said on stderr
    assert "note: flag " in out.stderr and "also covers Dir58mSStd in the brightwind file" in out.stderr
    out = run(["flag", "import", str(tmp_path / "missing.csv"), "--station", "Demo Mast", "--format", "brightwind"],
              env)
    assert out.returncode == 2 and "cannot read" in out.stderr
