"""AppTest of the Flags page on a real migrated database: the list and its filters, editing,
deleting and restoring a flag with its history, bulk accept/dismiss of suggested flags, the
cleaning-log import/export section, and what a viewer may not do.

AppTest cannot click rows of a table; a test selects them by setting the table's selection
state, as the browser does."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import auth, cleaning_log, flags, qc
from core.settings import Settings
from tests.integration.test_cleaning_log import BRIGHTWIND, make_mast
from tests.ui.test_pages import signed_in, texts

pytestmark = pytest.mark.integration

PAGE = "pages/flags.py"
MAST = "Demo Mast"
WINDOGRAPHER = Path(__file__).resolve().parents[1] / "data" / "cleaning" / "windographer_flagging_log.txt"


@pytest.fixture
def mast(conn, settings: Settings) -> dict:
    """The brightwind demo mast's channels, the 12 flags of its cleaning file, 4 open suggestions."""
    st = make_mast(conn, MAST)
    make_mast(conn, "Empty Mast", ["WS_80m_NE_Avg"])
    cleaning_log.import_flags(conn, MAST, BRIGHTWIND, "brightwind", "ana")
    d = lambda day, hour=0: datetime(2017, 3, day, hour)  # noqa: E731 - naive = UTC
    findings = [
        qc.Finding("icing", ("Spd80mN", "Spd80mNStd"), d(1, 2), d(1, 8), "fail", ""),
        qc.Finding("flat_line", ("Spd60mS",), d(2), d(3), "fail", ""),
        qc.Finding("gross_range", ("T2m",), d(4, 1), d(4, 2), "suspect", ""),
        qc.Finding("gap", (), d(5), d(6), "fail", ""),
    ]
    flags.store_findings(conn, st["id"], findings, d(1), d(10))
    auth.add_user(settings.users_file, "ada", "admin-password", "admin")
    return st


def page(role: str, station: str = MAST) -> AppTest:
    at = signed_in(role, station=station)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table(at: AppTest, prefix: str):
    [t] = [d for d in at.dataframe if d.key and d.key.startswith(prefix)]
    return t


def select(at: AppTest, prefix: str, rows: list[int]) -> AppTest:
    """Select rows of a table (what clicking their checkboxes does) and rerun."""
    at.session_state[table(at, prefix).key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table_with(at: AppTest, column: str):
    """The table that has this column (tables without row selection carry no key)."""
    [t] = [d.value for d in at.dataframe if column in d.value.columns]
    return t


def by_label(widgets, label: str):
    [w] = [w for w in widgets if w.label == label]
    return w


def test_flags_are_listed_and_filtered(mast) -> None:
    at = page("viewer")
    assert at.title[0].value == f"Flags · {MAST}"
    assert [tab.label for tab in at.tabs] == ["Flags", "Suggested flags", "Import / export"]
    t = table(at, "flags_table_").value
    assert len(t) == 12 and t["category"].value_counts().to_dict() == {"icing": 8, "other": 4}
    assert t.loc[0, "channels"] == "whole station" and t.loc[0, "note"] == "Installation"
    sid = mast["id"]
    at.multiselect(key=f"flag_categories_{sid}").set_value(["icing"]).run()
    assert len(table(at, "flags_table_").value) == 8
    at.multiselect(key=f"flag_categories_{sid}").set_value([]).run()
    at.multiselect(key=f"flag_channels_{sid}").set_value(["Spd80mSMax"]).run()
    # the whole-station flag, the 8 icing flags on Spd*/Dir*, and "Spd80mS…" Invalid (a prefix)
    assert len(table(at, "flags_table_").value) == 10
    at.date_input(key=f"flag_period_{sid}").set_value((date(2016, 11, 1), date(2016, 12, 31))).run()
    assert table(at, "flags_table_").value["start (UTC)"].dt.strftime("%m-%d").tolist() == [
        "11-08", "11-18", "11-20"]
    at.multiselect(key=f"flag_channels_{sid}").set_value(["T2m"]).run()
    at.date_input(key=f"flag_period_{sid}").set_value((date(2015, 1, 1), date(2015, 1, 2))).run()
    assert "No flags match." in texts(at)


def test_viewer_sees_history_but_cannot_edit(mast) -> None:
    at = page("viewer")
    select(at, "flags_table_", [0])
    assert "History of flag" in texts(at)
    history = table_with(at, "who")
    assert history[["who", "what"]].values.tolist() == [["ana", "create"]]
    labels = [b.label for b in at.button]
    assert not any(label.startswith(("Delete", "Undelete", "Save", "Accept", "Dismiss", "Import", "Set"))
                   for label in labels), labels
    assert not at.get("form") and not at.get("file_uploader")
    assert [d.key for d in at.dataframe if d.key and d.key.startswith("suggestions_table_")] == []
    assert len(table_with(at, "severity")) == 4
    shown = texts(at)
    assert "Accepting or dismissing suggestions needs the analyst role." in shown
    assert "Importing a cleaning log needs the analyst role." in shown
    assert len(at.get("download_button")) == 2  # viewers may download the flags


def test_analyst_edits_deletes_and_restores_a_flag(mast, conn) -> None:
    at = page("analyst")
    first_icing = 1
    flag_id = int(table(at, "flags_table_").value.loc[first_icing, "id"])
    select(at, "flags_table_", [first_icing])
    assert "Edit flag" in texts(at)
    by_label(at.selectbox, "Category").set_value("faulty sensor")
    by_label(at.text_input, "End (UTC, exclusive)").set_value("2016-03-09 11:00")
    by_label(at.text_area, "Note").set_value("cups seized")
    by_label(at.multiselect, "Channels").set_value(["Spd80mN", "Spd80mNStd"])
    by_label(at.button, "Save changes").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [s.value for s in at.success] == [f"Flag {flag_id} saved."]
    row = flags.get_flag(conn, flag_id)
    assert (row["category"], row["note"], row["columns"], row["end_time"].hour, row["author"]) == (
        "faulty sensor", "cups seized", ["Spd80mN", "Spd80mNStd"], 11, "ana")
    at = select(at, "flags_table_", [first_icing])  # a new table: the selection was cleared
    history = table_with(at, "who")
    assert history[["who", "what"]].values.tolist() == [["ana", "create"], ["test-analyst", "update"]]
    assert '"category": "faulty sensor"' in history.loc[1, "details"]

    by_label(at.button, "Delete 1").click().run()
    assert [s.value for s in at.success] == ["1 flag deleted (kept, and can be restored)."]
    assert flags.get_flag(conn, flag_id)["deleted_by"] == "test-analyst"
    assert len(table(at, "flags_table_").value) == 11
    at.toggle(key=f"flag_deleted_{mast['id']}").set_value(True).run()
    t = table(at, "flags_table_").value
    assert len(t) == 12 and t.loc[first_icing, "deleted"].startswith("test-analyst ")
    select(at, "flags_table_", [first_icing])
    assert not at.get("form")  # a deleted flag is restored before it is changed
    by_label(at.button, "Undelete 1").click().run()
    assert [s.value for s in at.success] == ["1 flag restored."]
    assert flags.get_flag(conn, flag_id)["deleted_at"] is None


def test_a_bad_time_in_the_edit_form_is_explained(mast, conn) -> None:
    at = select(page("analyst"), "flags_table_", [1])
    by_label(at.text_input, "Start (UTC)").set_value("09/03/2016 06:20")
    by_label(at.button, "Save changes").click().run()
    assert [e.value for e in at.error] == [
        "Start '09/03/2016 06:20': day and month are ambiguous; write the date year first, e.g. 2016-01-09 15:30"]


def test_several_flags_get_one_category(mast, conn) -> None:
    at = select(page("analyst"), "flags_table_", [1, 2, 3])
    by_label(at.selectbox, "Category of the selected flags").set_value("suspect")
    by_label(at.button, "Set for 3 flags").click().run()
    assert [s.value for s in at.success] == ["3 flags set to suspect."]
    assert [r["category"] for r in flags.list_flags(conn, MAST)][1:5] == ["suspect"] * 3 + ["icing"]


def test_suggestions_accepted_in_bulk_with_the_rules_categories(mast, conn) -> None:
    at = page("analyst")
    assert "4 open suggestions" in texts(at)
    assert table(at, "suggestions_table_").value["rule"].tolist() == ["icing", "flat_line", "gross_range", "gap"]
    assert by_label(at.button, "Accept 0").disabled
    by_label(at.checkbox, "Select all shown (4)").check().run()
    by_label(at.button, "Accept 4").click().run()
    assert not at.error, [e.value for e in at.error]
    assert [s.value for s in at.success] == [
        "4 suggestions accepted: 3 flags made, 1 gap acknowledged. 0 open suggestions left."]
    made = {r["rule"]: r["category"] for r in flags.list_flags(conn, MAST) if r["source"] == "rule"}
    assert made == {"icing": "icing", "flat_line": "faulty sensor", "gross_range": "suspect"}
    assert "Nothing to decide." in texts(at)
    at.segmented_control(key=f"flag_source_{mast['id']}").set_value("rule").run()
    assert table(at, "flags_table_").value["rule"].tolist() == ["icing", "flat_line", "gross_range"]
    at.segmented_control(key=f"flag_source_{mast['id']}").set_value("manual").run()
    assert len(table(at, "flags_table_").value) == 12


def test_suggestions_filtered_accepted_as_one_category_or_dismissed(mast, conn) -> None:
    at = page("analyst")
    at.multiselect(key=f"suggestion_rules_{mast['id']}").set_value(["flat_line", "icing"]).run()
    assert len(table(at, "suggestions_table_").value) == 2
    select(at, "suggestions_table_", [1])  # flat_line
    by_label(at.selectbox, "Category of the flags").set_value("maintenance")
    by_label(at.button, "Accept 1").click().run()
    assert [s.value for s in at.success] == ["1 suggestion accepted: 1 flag made. 3 open suggestions left."]
    [rule_flag] = [r for r in flags.list_flags(conn, MAST) if r["source"] == "rule"]
    assert (rule_flag["rule"], rule_flag["category"], rule_flag["author"]) == ("flat_line", "maintenance",
                                                                               "test-analyst")
    at.multiselect(key=f"suggestion_rules_{mast['id']}").set_value([]).run()
    select(at, "suggestions_table_", [0, 2])  # icing and gap
    by_label(at.button, "Dismiss 2").click().run()
    assert [s.value for s in at.success] == ["2 suggestions dismissed (not suggested again). 1 open suggestions left."]
    assert {r["rule"]: r["status"] for r in flags.list_suggestions(conn, MAST, None)} == {
        "icing": "dismissed", "flat_line": "accepted", "gross_range": "open", "gap": "dismissed"}


def test_import_and_export_section(mast, conn) -> None:
    at = page("analyst")
    at.file_uploader[0].set_value(("flags.txt", WINDOGRAPHER.read_bytes(), "text/plain"))
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert at.radio[0].value == "windographer"  # guessed from the header
    preview = table_with(at, "lines")
    assert len(preview) == 13 and preview["status"].value_counts().to_dict() == {"new": 5, "already flagged": 8}
    assert "No channel of this station matches: Sp (line 31)" in texts(at)
    by_label(at.button, "Import 5 flags").click().run()
    assert [s.value for s in at.success] == ["flags.txt: 5 flags added, 8 already there."]
    assert len(flags.list_flags(conn, MAST)) == 17
    assert by_label(at.button, "Import 0 flags").disabled  # the same file again: nothing new

    at.file_uploader[0].set_value(("bad.csv", b"Sensor,Start,Stop\nSpd,2016-03-09 06:20,later\n", "text/csv"))
    at.run()
    assert [e.value for e in at.error] == [
        "bad.csv: 1 bad line in the cleaning log, nothing imported (correct it and import the file again):  \n"
        "line 2: Stop 'later' is not a date and time like 2016-01-09 15:30"]
    downloads = at.get("download_button")
    assert len(downloads) == 2
    assert len(flags.list_flags(conn, MAST)) == 17


def test_flags_page_for_every_role_and_a_station_without_flags(mast) -> None:
    for role in auth.ROLES:
        at = page(role, station="Empty Mast")
        assert not at.error, [e.value for e in at.error]
        shown = texts(at)
        assert at.title[0].value == "Flags · Empty Mast"
        assert "No flags on this station yet." in shown and "Nothing to decide." in shown
