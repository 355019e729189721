"""AppTest of the Upload, Files and Metadata pages on a real migrated database.

The worker is not running here: where a test needs a file imported, it runs the worker's
job (:func:`core.ingest.import_file`) itself, then reruns the page as the live fragment would.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.settings
from core import inbox, ingest, signed_links
from core.settings import Settings
from tests.ui.test_pages import DATA, MAST, demo_files, show, signed_in, site, texts  # noqa: F401 - fixtures
from tests.unit.test_limits import BAD_DOCUMENTS

pytestmark = pytest.mark.integration

IEA43 = Path(__file__).resolve().parents[1] / "data" / "iea43" / "demo_data_iea43_wra_data_model.json"
UNKNOWN_LOGGER = "Nowhere_Daily.dat"
NO_MATCH = ("no known logger or station matches this file (logger serial '99999', station 'Nowhere'); "
            "assign a station")


@pytest.fixture
def ingest_site(site: Settings, conn, tmp_path: Path) -> Settings:
    """The site of test_pages plus a file of a logger no station knows (``needs station``)."""
    text = (DATA / "TestLogger_Daily_1.dat").read_text()
    path = tmp_path / UNKNOWN_LOGGER
    path.write_text(text.replace('"TestLogger","CR1000X","12342"', '"Nowhere","CR1000X","99999"', 1))
    with conn.transaction():
        rec = ingest.receive(conn, path, station=None, origin="test", settings=site)
    assert ingest.import_file(rec.id, settings=site)["status"] == "needs station"
    return site


def file_row(conn, name: str) -> dict:
    return conn.execute(
        "SELECT f.*, s.name AS station FROM source_file f LEFT JOIN station s ON s.id = f.station_id "
        "WHERE original_name = %s ORDER BY f.id DESC LIMIT 1", (name,),
    ).fetchone()


def badges(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


# --- Upload ---------------------------------------------------------------------------


def test_upload_stores_files_and_follows_their_import(ingest_site: Settings, conn) -> None:
    at = show(signed_in("analyst"), "pages/upload.py")
    assert at.selectbox[0].value.startswith("Detect from the file")
    assert "Files you upload are listed here" in texts(at)
    at.file_uploader[0].set_value([
        ("TestLogger_Daily_1.dat", (DATA / "TestLogger_Daily_1.dat").read_bytes(), "text/plain"),
        ("TestLogger_Hourly_Bad02.dat", (DATA / "TestLogger_Hourly_Bad02.dat").read_bytes(), "text/plain"),
        ("again.dat", (DATA / "TestLogger_Hourly_Bad05.dat").read_bytes(), "text/plain"),
    ])
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ids = at.session_state["upload_ids"]
    assert len(ids) == 3
    day, bad, again = (file_row(conn, n) for n in ("TestLogger_Daily_1.dat", "TestLogger_Hourly_Bad02.dat",
                                                   "again.dat"))
    assert (day["status"], day["origin"], day["received_by"], day["station_id"]) == (
        "queued", "upload", "test-analyst", None)
    assert again["status"] == "duplicate"
    shown = texts(at)
    assert badges(at) == [":blue-badge[queued]", ":blue-badge[queued]", ":gray-badge[duplicate]"]
    assert "waiting for the worker" in shown and "refreshing every 2 s" in shown
    assert f"same content as file {again['duplicate_of']} (TestLogger_Hourly_Bad05.dat)" in shown

    for row in (day, bad):  # what the worker does
        ingest.import_file(row["id"], settings=ingest_site)
    at.run()  # the fragment's next run
    assert badges(at) == [":green-badge[imported]", ":red-badge[failed]", ":gray-badge[duplicate]"]
    shown = texts(at)
    assert ":red[line 1: the environment line has 5 fields, expected 8]" in shown
    assert "2021-06-18 00:00  \n– 2021-06-19 00:00" in shown  # daily means, UTC period starts
    assert "refreshing" not in shown
    assert file_row(conn, "TestLogger_Daily_1.dat")["station"] == "Test Logger"  # routed by serial 12342

    [clear] = [b for b in at.button if b.label == "Clear the list"]
    clear.click().run()
    assert "upload_ids" not in at.session_state and not badges(at)


def test_upload_to_a_chosen_station_and_too_big_files(ingest_site: Settings, conn, monkeypatch) -> None:
    # A new station name typed into the box is tested in the browser (tests/e2e/test_upload.py):
    # AppTest cannot type into a selectbox.
    at = show(signed_in("admin"), "pages/upload.py")
    at.selectbox[0].set_value(MAST)
    at.file_uploader[0].set_value(("day.dat", (DATA / "TestLogger_Daily_1.dat").read_bytes(), "text/plain"))
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert file_row(conn, "day.dat")["station"] == MAST

    monkeypatch.setenv("STATIONMANAGER_MAX_UPLOAD_MB", "1")
    monkeypatch.setattr(core.settings, "_current", None)
    at = show(signed_in("admin"), "pages/upload.py")
    assert "At most 1 MiB per file" in at.file_uploader[0].help
    at.file_uploader[0].set_value(("big.dat", b"x" * (1024 * 1024 + 1), "text/plain"))
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["larger than 1 MiB (STATIONMANAGER_MAX_UPLOAD_MB): big.dat"]
    assert file_row(conn, "big.dat") is None


def test_upload_without_files_asks_for_them(ingest_site: Settings) -> None:
    at = show(signed_in("analyst"), "pages/upload.py")
    at.button[0].click().run()
    assert [w.value for w in at.warning] == ["Choose at least one file first."]


# --- Files ----------------------------------------------------------------------------


def test_files_lists_failures_and_files_needing_a_station(ingest_site: Settings) -> None:
    at = show(signed_in("viewer"), "pages/files.py")
    assert not at.error
    waiting, table = at.dataframe[0].value, at.dataframe[1].value
    assert waiting["name"].tolist() == [UNKNOWN_LOGGER] and waiting["message"].tolist() == [NO_MATCH]
    assert "1 file needs a station" in at.subheader[0].value
    assert not at.multiselect and "An analyst can assign a station to them." in texts(at)
    failed = table[table["name"] == "TestLogger_Hourly_Bad05.dat"].iloc[0]
    assert failed["status"] == ["failed"] and failed["station"] == "Test Logger"
    assert failed["message"] == "line 1: the environment line has 9 fields, expected 8"
    assert table["status"].map(tuple).value_counts().to_dict() == {
        ("imported",): 3, ("failed",): 1, ("needs station",): 1}

    at.selectbox(key="files_status").set_value("failed").run()
    assert at.dataframe[1].value["name"].tolist() == ["TestLogger_Hourly_Bad05.dat"]
    at.selectbox(key="files_status").set_value("All statuses")
    at.selectbox(key="files_station").set_value("No station (needs assignment)").run()
    assert at.dataframe[1].value["name"].tolist() == [UNKNOWN_LOGGER]


def test_assigning_a_station_queues_the_file_again(ingest_site: Settings, conn) -> None:
    at = show(signed_in("analyst"), "pages/files.py")
    form_files = at.multiselect[0]
    assert [form_files.format_func(v) for v in form_files.value] == [
        f"{file_row(conn, UNKNOWN_LOGGER)['id']} · {UNKNOWN_LOGGER}"]
    at.selectbox[0].set_value("Test Logger")
    [assign] = [b for b in at.button if b.label == "Assign and import"]
    assign.click().run()
    assert not at.exception and not at.error
    row = file_row(conn, UNKNOWN_LOGGER)
    assert (row["status"], row["station"], row["error"]) == ("queued", "Test Logger", None)
    audit = conn.execute("SELECT actor, details FROM audit WHERE action = 'assign station'").fetchall()
    assert audit == [{"actor": "test-analyst", "details": {"station": "Test Logger"}}]
    assert [s.value for s in at.success] == ["1 file queued for import at Test Logger."]
    assert not [h.value for h in at.subheader if "a station" in h.value]
    assert "The worker has 1 file to import" in texts(at)


def test_file_details_download_and_admin_requeue(ingest_site: Settings, conn) -> None:
    bad = file_row(conn, "TestLogger_Hourly_Bad05.dat")
    at = show(signed_in("analyst"), "pages/files.py")
    at.selectbox(key="files_pick").set_value(bad["id"]).run()
    assert [e.value for e in at.error] == ["line 1: the environment line has 9 fields, expected 8"]
    [download] = at.get("link_button")  # through the API, signed for this user and this file
    assert download.proto.label == "Download the original"
    sig = download.proto.url.split(f"/api/v1/files/{bad['id']}/original?sig=")[1]
    assert signed_links.verify(signed_links.key(ingest_site), sig, "file", bad["id"]) == "test-analyst"
    assert not [b for b in at.button if b.label == "Import again"]  # admins only

    at = show(signed_in("admin"), "pages/files.py")
    at.selectbox(key="files_pick").set_value(bad["id"]).run()
    [again] = [b for b in at.button if b.label == "Import again"]
    again.click().run()
    assert not at.exception
    assert file_row(conn, "TestLogger_Hourly_Bad05.dat")["status"] == "queued"
    assert [s.value for s in at.success] == [f"File {bad['id']} (TestLogger_Hourly_Bad05.dat) queued again."]
    at.run()  # a rerun the user did not ask for (the sign-in cookie's) keeps the notice on screen
    assert [s.value for s in at.success] == [f"File {bad['id']} (TestLogger_Hourly_Bad05.dat) queued again."]


def test_file_warnings_are_shown_in_the_table_and_the_details(ingest_site: Settings, conn, tmp_path) -> None:
    path = tmp_path / "no_convention.csv"
    path.write_text("Timestamp,WS_Avg\n2025-01-01 00:10:00,5.5\n2025-01-01 00:20:00,5.1\n")
    with conn.transaction():
        rec = ingest.receive(conn, path, station="Text Mast", origin="test", settings=ingest_site)
    assert ingest.import_file(rec.id, settings=ingest_site)["warnings"] == [ingest.ASSUMED_START]
    at = show(signed_in("viewer"), "pages/files.py")
    [table] = [d for d in at.dataframe if "warnings" in d.value.columns]
    row = table.value.set_index("id").loc[rec.id]
    assert row["warnings"] == ingest.ASSUMED_START
    at.selectbox(key="files_pick").set_value(rec.id).run()
    assert [w.value.replace("\\", "") for w in at.warning] == [ingest.ASSUMED_START]


def test_entries_the_inbox_refuses_are_listed_for_analysts(ingest_site: Settings, conn, tmp_path) -> None:
    box = tmp_path / "inbox"
    box.mkdir()
    (box / "users.dat").symlink_to(ingest_site.users_file)
    assert inbox.scan(conn, dataclasses.replace(ingest_site, inbox=box)) == []
    at = show(signed_in("analyst"), "pages/files.py")
    assert any("1 entry of the inbox is not read" in h.value for h in at.subheader)
    [table] = [d.value for d in at.dataframe if "reason" in d.value.columns]
    assert table["path"].tolist() == [str(box.resolve() / "users.dat")] and table["reason"].tolist() == [inbox.LINK]
    at = show(signed_in("viewer"), "pages/files.py")
    assert not [d for d in at.dataframe if "reason" in d.value.columns]


def test_analyst_says_how_a_failed_text_file_is_laid_out_and_imports_it(ingest_site: Settings, conn,
                                                                           tmp_path: Path) -> None:
    path = tmp_path / "mast7.csv"
    rows = "".join(f"0{d}.01.2025;12:{m:02d};{m},5;-9999\n" for d in range(1, 4) for m in range(0, 60, 10))
    path.write_text("Mast 7 export\nTag;Uhrzeit;v80 [m/s];T2\n" + rows, encoding="latin-1")
    with conn.transaction():
        rec = ingest.receive(conn, path, station="Test Logger", origin="test", settings=ingest_site)
    assert ingest.import_file(rec.id, settings=ingest_site)["status"] == "failed"  # no timestamp column known

    at = show(signed_in("viewer"), "pages/files.py")
    at.selectbox(key="files_pick").set_value(rec.id).run()
    assert not at.expander  # analysts only

    at = show(signed_in("analyst"), "pages/files.py")
    at.selectbox(key="files_pick").set_value(rec.id).run()
    assert "  1  Mast 7 export" in at.get("code")[0].value
    # the layout is guessed: header on line 2, semicolons, date and time apart, decimal comma
    assert at.number_input(key=f"mapping_{rec.id}_header").value == 2
    assert at.selectbox(key=f"mapping_{rec.id}_delim").value == ";"
    assert at.selectbox(key=f"mapping_{rec.id}_ts").options == ["Tag", "Uhrzeit", "v80 [m/s]", "T2"]
    assert (at.selectbox(key=f"mapping_{rec.id}_ts").value, at.selectbox(key=f"mapping_{rec.id}_ts2").value,
            at.selectbox(key=f"mapping_{rec.id}_dec").value) == ("Tag", "Uhrzeit", ",")
    assert at.dataframe[-1].value["T2"].tolist()[:2] == [-9999.0, -9999.0]
    at.text_input(key=f"mapping_{rec.id}_missing").set_value("-9999").run()
    failure = at.error[0].value
    assert "unrecognised file format" in failure
    tables = len(at.dataframe)  # the files needing a station, the files, the preview
    preview = at.dataframe[-1].value  # the date and time formats are guessed
    assert list(preview.columns) == ["time (as logged)", "v80 [m/s]", "T2"]
    assert str(preview.iloc[1, 0]) == "2025-01-01 12:10:00" and preview.iloc[1, 1] == 10.5
    assert preview["T2"].isna().all()
    at.text_input(key=f"mapping_{rec.id}_fmt").set_value("%Y-%m-%d %H:%M").run()
    assert len(at.dataframe) == tables - 1  # no preview: the stamps do not parse
    assert len(at.error) == 2 and "mast7.csv" in at.error[1].value
    at.text_input(key=f"mapping_{rec.id}_fmt").set_value("%d.%m.%Y %H:%M").run()
    assert not at.exception and [e.value for e in at.error] == [failure]
    [save] = [b for b in at.button if b.label == "Save for Test Logger and import again"]
    save.click().run()
    assert not at.exception
    assert file_row(conn, "mast7.csv")["status"] == "queued"
    audit = conn.execute("SELECT actor, details FROM audit WHERE action = 'set file mapping'").fetchone()
    assert audit["actor"] == "test-analyst" and audit["details"]["mapping"]["timestamp"] == ["Tag", "Uhrzeit"]
    result = ingest.import_file(rec.id, settings=ingest_site)
    assert (result["status"], result["n_readings"]) == ("imported", 18 * 2 - 18)  # T2 is all missing


def test_no_mapping_form_for_a_failed_logger_file_or_a_binary_one(ingest_site: Settings, conn,
                                                                  tmp_path: Path) -> None:
    bad = file_row(conn, "TestLogger_Hourly_Bad05.dat")  # a TOA5 file: its own header says how to read it
    at = show(signed_in("analyst"), "pages/files.py")
    at.selectbox(key="files_pick").set_value(bad["id"]).run()
    assert not at.expander and not at.get("code")

    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 40)
    with conn.transaction():
        rec = ingest.receive(conn, junk, station="Test Logger", origin="test", settings=ingest_site)
    assert ingest.import_file(rec.id, settings=ingest_site)["status"] == "failed"
    at = show(signed_in("analyst"), "pages/files.py")
    at.selectbox(key="files_pick").set_value(rec.id).run()
    assert "unrecognised file format" in at.error[0].value and not at.expander


# --- Metadata -------------------------------------------------------------------------


@pytest.fixture
def unmapped_site(ingest_site: Settings, conn, tmp_path: Path) -> Settings:
    """Test Logger also gets a daily table with a column no convention knows (``Flux_Q``)."""
    first, names, units, *rest = (DATA / "TestLogger_Daily_1.dat").read_text().splitlines(keepends=True)
    names, units = names.replace('"PTemp",', '"Flux_Q",'), units.replace('"oC"', '""')
    path = tmp_path / "TestLogger_Daily_flux.dat"
    path.write_text(first + names + units + "".join(rest))
    with conn.transaction():
        rec = ingest.receive(conn, path, station="Test Logger", settings=ingest_site)
    assert ingest.import_file(rec.id, settings=ingest_site)["status"] == "imported"
    return ingest_site


def test_viewer_reads_metadata_without_forms(unmapped_site: Settings) -> None:
    at = show(signed_in("viewer", station="Test Logger"), "pages/metadata.py")
    assert at.title[0].value == "Metadata · Test Logger"
    loggers, points, channels = (d.value for d in at.dataframe[:3])
    assert loggers[["OEM", "model", "serial", "UTC offset", "timestamps"]].values.tolist() == [
        ["", "CR1000X", "12342", "UTC", "end of period"]]
    assert "battery_voltage" in points["type"].tolist()
    unmapped = channels[~channels["mapped"]]["column"].tolist()
    assert unmapped == ["Flux_Q"] and channels["column"].tolist()[0] == "Flux_Q"  # flagged first
    assert f"{len(unmapped)} of {len(channels)} channels are not mapped" in at.warning[0].value
    assert not at.button and not at.get("file_uploader") and not at.get("number_input")
    assert "Read-only" in texts(at)


def test_analyst_corrects_a_channel_mapping(unmapped_site: Settings, conn) -> None:
    at = show(signed_in("analyst", station="Test Logger"), "pages/metadata.py")
    channel = at.selectbox(key=next(k for k in at.session_state if str(k).startswith("map_channel_")))
    column = channel.format_func(channel.value).removesuffix(" (unmapped)")
    channel_id = channel.value
    at.selectbox[2].set_value("air_temperature")  # [0] station, [1] channel
    at.number_input[0].set_value(1.5)
    at.number_input[1].set_value(180.0)
    at.selectbox[3].set_value("max")
    at.text_input[0].set_value("degC")
    [save] = [b for b in at.button if b.label == "Save mapping"]
    save.click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == [f"{column} is now mapped to air_temperature 1.5m S."]
    row = conn.execute(
        "SELECT c.statistic, c.unit, c.mapped, mp.name FROM channel c JOIN measurement_point mp "
        "ON mp.id = c.measurement_point_id WHERE c.id = %s", (channel_id,)).fetchone()
    assert row == {"statistic": "max", "unit": "degC", "mapped": True, "name": "air_temperature 1.5m S"}
    entry = conn.execute("SELECT action, details FROM audit WHERE entity = 'channel' "
                         "AND entity_id = %s AND actor = 'test-analyst'", (channel_id,)).fetchone()
    assert entry["action"] == "update" and entry["details"]["source"] == "manual"
    assert entry["details"]["new"]["point_name"] == "air_temperature 1.5m S"


def test_task43_import_shows_the_summary_or_every_error(ingest_site: Settings, conn) -> None:
    at = show(signed_in("analyst"), "pages/metadata.py")
    doc = json.loads(IEA43.read_text())
    doc["measurement_location"][0]["measurement_point"][3]["height_m"] = "x"
    del doc["measurement_location"][0]["measurement_point"][4]["name"]
    at.get("file_uploader")[0].set_value(("broken.json", json.dumps(doc).encode(), "application/json"))
    [imp] = [b for b in at.button if b.label == "Import"]
    imp.click().run()
    assert [e.value for e in at.error] == ["broken.json: 2 problems in the document; nothing was imported."]
    assert at.code[0].value.splitlines() == [
        "$.measurement_location[0].measurement_point[3].height_m: 'x' is not of type 'number', 'null'",
        "$.measurement_location[0].measurement_point[4]: 'name' is a required property",
    ]
    assert conn.execute("SELECT count(*) AS n FROM station WHERE name = 'Demo Mast'").fetchone()["n"] == 0

    at.get("file_uploader")[0].set_value(("not.json", b"{\"version\": ", "application/json"))
    [imp] = [b for b in at.button if b.label == "Import"]
    imp.click().run()
    assert at.code[0].value == "$: not valid JSON: Expecting value (line 1, column 13)"

    at.get("file_uploader")[0].set_value((IEA43.name, IEA43.read_bytes(), "application/json"))
    [imp] = [b for b in at.button if b.label == "Import"]
    imp.click().run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Metadata · Demo Mast"
    summary = at.success[0].value
    assert summary.startswith(f"{IEA43.name}: Task 43 data model 1.0.0-2022.01") and "created " in summary
    assert len(at.dataframe[1].value) == 14  # the document's measurement points


def test_task43_import_refuses_each_bad_document_clearly(ingest_site: Settings, conn) -> None:
    tables = ("station", "logger", "measurement_point", "calibration", "channel", "channel_mapping", "audit")

    def counts() -> list[int]:
        return [conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"] for t in tables]  # noqa: S608

    before = counts()
    at = show(signed_in("analyst"), "pages/metadata.py")
    for name, data, first in BAD_DOCUMENTS:
        at.get("file_uploader")[0].set_value((name, data, "application/json"))
        [imp] = [b for b in at.button if b.label == "Import"]
        imp.click().run()
        assert not at.exception, (name, [e.value for e in at.exception])
        assert [e.value for e in at.error] == [f"{name}: 1 problem in the document; nothing was imported."]
        assert at.code[0].value.splitlines()[0] == first
    assert counts() == before  # nothing imported, not even in part
