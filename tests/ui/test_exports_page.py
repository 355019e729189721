"""AppTest of the Exports page on a real migrated database.

The worker is not running here: where a test needs an export built, it runs the worker's
job (:func:`core.exports.build_export`) itself, then reruns the page as the live fragment
would.
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

import core.settings
from core import exports, flags, signed_links
from core.settings import Settings
from tests.ui.test_pages import MAST, demo_files, show, signed_in, site, texts  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

PAGE = "pages/exports.py"
FIRST_DAY, DAYS = datetime(2025, 3, 1, tzinfo=UTC), 2  # the demo mast's files in test_pages


def export_rows(conn) -> list[dict]:
    return conn.execute("SELECT e.*, (e.reused_from IS NOT NULL) AS reused FROM export e ORDER BY id").fetchall()


def build_jobs(conn) -> list[int]:
    """Export ids of the worker jobs queued to build them."""
    rows = conn.execute("SELECT args FROM procrastinate_jobs WHERE task_name = 'sm:build_export' "
                        "ORDER BY id").fetchall()
    return [r["args"]["export_id"] for r in rows]


def downloads(at: AppTest) -> list[str]:
    """Labels of the export download links (not the cleaning logs' download buttons)."""
    return [d.proto.label for d in at.get("link_button") if d.proto.label.startswith("Download ")]


def download_links(at: AppTest) -> list[str]:
    return [d.proto.url for d in at.get("link_button") if d.proto.label.startswith("Download ")]


def progress_texts(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def request(at: AppTest) -> AppTest:
    at.button(key="export_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def history(at: AppTest):
    return at.dataframe[-1].value


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_form_for_analysts_downloads_for_everyone(site: Settings, role: str) -> None:
    at = show(signed_in(role), PAGE)
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Exports"
    assert at.selectbox(key="exports_station").value == MAST  # first alphabetically
    assert "No exports of this station yet." in texts(at)
    assert [e.label for e in at.expander] == ["Flags as cleaning logs"]
    cleaning_logs = [d.proto.label for d in at.expander[0].get("download_button")]
    assert cleaning_logs and not any(label.startswith("Download ") for label in cleaning_logs)
    if role == "viewer":
        assert not [b for b in at.button if b.label == "Request export"]
        assert "an analyst can request new ones" in texts(at)
        return
    fmt = at.selectbox(key="export_format")
    assert fmt.options == ["Windographer text", "CSV (wide)", "Zip, one file per measurement type", "Parquet"]
    assert fmt.value == "windographer"
    dates = at.date_input[0]
    assert dates.value == (FIRST_DAY.date(), (FIRST_DAY + timedelta(days=DAYS - 1)).date())  # the whole range
    assert at.multiselect(key="export_flags").value == list(flags.CATEGORIES)  # every category left out
    assert at.selectbox(key="export_averaging").value == "10min"
    assert at.selectbox(key="export_timezone").value == "UTC"
    assert at.radio(key="export_values").value == "Calibrated"
    assert [r.label for r in at.radio] == ["Choose data by", "Values", "Column headers"]
    assert at.radio(key="export_headers").value == "descriptive"
    fmt.select("parquet").run()
    assert at.radio(key="export_layout").value == "wide"  # the layout is asked for Parquet only


def test_request_queues_an_export_for_the_worker(site: Settings, conn) -> None:
    at = show(signed_in("analyst"), PAGE)
    at.selectbox(key="export_averaging").select("1h")
    at.radio(key="export_values").set_value("Raw (as logged)")
    at.multiselect(key="export_flags").set_value(["icing"])
    request(at)
    assert not at.error, [e.value for e in at.error]
    [row] = export_rows(conn)
    assert (row["status"], row["format"], row["requested_by"]) == ("queued", "windographer", "test-analyst")
    p = row["params"]
    assert (p["station"], p["averaging"], p["calibrated"], p["exclude_categories"], p["timezone"]) == (
        MAST, "1h", False, ["icing"], "UTC")
    assert (p["start"], p["end"]) == (FIRST_DAY.isoformat(), (FIRST_DAY + timedelta(days=DAYS)).isoformat())
    assert build_jobs(conn) == [row["id"]]
    assert progress_texts(at) == [f"Export {row['id']} · Windographer text · waiting for the worker"]
    assert "The worker is building 1 export of this station" in texts(at)
    assert [w.value for w in at.warning] == [  # no worker runs in this test
        "No worker is running, so nothing is being built: start one with `stationmanager worker` "
        "(or `stationmanager up`)."]
    table = history(at)
    assert table["status"].map(tuple).tolist() == [("queued",)]
    assert table["by"].tolist() == ["test-analyst"]
    assert table["parameters"][0] == "2025-03-01 – 2025-03-02 · raw · without icing · Hourly"
    assert not downloads(at)


def test_finished_export_downloads_and_the_same_request_is_reused(site: Settings, conn) -> None:
    at = request(show(signed_in("analyst"), PAGE))
    [queued] = export_rows(conn)
    done = exports.build_export(queued["id"])  # what the worker's job runs
    assert done["status"] == "done", done
    at.run()  # the fragment's next run
    assert not progress_texts(at)
    shown = texts(at)
    assert f"Export {queued['id']} (Windographer text) is ready: {DAYS * 144:,} rows" in shown
    assert downloads(at) == [f"Download {done['file_name']}"]
    # a link to the API, signed for this user and this export
    [link] = download_links(at)
    assert link.startswith(f"http://127.0.0.1:{site.api_port}/api/v1/exports/{done['id']}/file?sig=")
    sig = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)["sig"][0]
    assert signed_links.verify(signed_links.key(site), sig, "export", done["id"]) == "test-analyst"
    assert done["file_name"].endswith(".txt")
    text = exports.export_file(done).read_text()
    assert "Time stamps indicate the beginning of the time step." in text

    request(at)  # unchanged inputs: reused at once, nothing queued for the worker
    first, again = export_rows(conn)
    assert again["status"] == "done" and again["reused"]
    assert build_jobs(conn) == [first["id"]]
    assert f"Export {again['id']} (Windographer text) with the same inputs was already built" in texts(at)
    assert "reused, not built again" in texts(at)
    assert downloads(at) == [f"Download {done['file_name']}"]
    table = history(at)
    assert table["status"].map(tuple).tolist() == [("done",), ("done",)]
    assert table["reused"].tolist() == [True, False]
    assert table["rows"].tolist() == [DAYS * 144] * 2

    # any finished export of the history can be downloaded
    at.selectbox(key=f"exports_pick_{first['station_id']}").select(first["id"]).run()
    assert downloads(at) == [f"Download {done['file_name']}"] * 2
    # ... until its file is cleaned up
    assert exports.cleanup(conn, now=datetime.now(UTC) + timedelta(days=365)) == 1
    at.run()
    assert not downloads(at)
    assert "Download a finished export" not in [s.label for s in at.selectbox]


def test_files_larger_than_the_upload_limit_download_too(site: Settings, conn, monkeypatch) -> None:
    """The browser path used to stop at STATIONMANAGER_MAX_UPLOAD_MB; the API streams any size."""
    at = request(show(signed_in("analyst"), PAGE))
    [queued] = export_rows(conn)
    done = exports.build_export(queued["id"])
    monkeypatch.setenv("STATIONMANAGER_MAX_UPLOAD_MB", "0")
    monkeypatch.setenv("STATIONMANAGER_API_PUBLIC_URL", "https://masts.example.com/")
    core.settings._current = None
    at.run()
    assert downloads(at) == [f"Download {done['file_name']}"]
    assert download_links(at)[0].startswith(f"https://masts.example.com/api/v1/exports/{done['id']}/file?sig=")


def test_a_refused_request_says_why(site: Settings, conn) -> None:
    at = show(signed_in("analyst"), PAGE)
    at.selectbox(key="export_timezone").select("Europe/Dublin")
    request(at)
    [error] = [e.value for e in at.error]
    assert error.startswith("The export was not requested: time zone 'Europe/Dublin' has daylight saving time")
    assert "choose a zone with a fixed offset such as UTC or Etc/GMT-1" in error
    assert not export_rows(conn) and not build_jobs(conn)
    # the rest of the page is still there
    assert "No exports of this station yet." in texts(at)


def test_a_failed_build_shows_its_reason(site: Settings, conn) -> None:
    at = show(signed_in("analyst"), PAGE)
    at.multiselect(key="export_types_" + str(_station_id(conn))).set_value(["wind_speed"])
    request(at)
    [queued] = export_rows(conn)
    # the metadata changes before the worker gets to it: no wind speed channel any more
    conn.execute("UPDATE measurement_point SET measurement_type = 'unknown_type' WHERE measurement_type = 'wind_speed'")
    failed = exports.build_export(queued["id"])
    assert failed["status"] == "failed"
    at.run()
    [error] = [e.value for e in at.error]
    assert error.startswith(f"Export {queued['id']} (Windographer text) failed: station 'Ballymore Hill' has no "
                            "channels of those measurement types")
    assert history(at)["error"][0] == failed["error"]
    assert not downloads(at)


def test_expired_exports_are_marked(site: Settings, conn) -> None:
    at = request(show(signed_in("analyst"), PAGE))
    [queued] = export_rows(conn)
    exports.build_export(queued["id"])
    assert exports.cleanup(conn, now=datetime.now(UTC) + timedelta(days=365)) == 1
    at.run()
    assert history(at)["status"].map(tuple).tolist() == [("expired",)]
    shown = texts(at)
    assert f"Export {queued['id']} (Windographer text) has expired" in shown
    assert "STATIONMANAGER_EXPORT_RETENTION_DAYS" in shown
    assert not downloads(at)
    assert "Download a finished export" not in [s.label for s in at.selectbox]


def _station_id(conn) -> int:
    return conn.execute("SELECT id FROM station WHERE name = %s", (MAST,)).fetchone()["id"]


def test_a_period_being_picked_is_not_requested(site: Settings, conn) -> None:
    at = show(signed_in("analyst"), PAGE)
    at.date_input[0].set_value((FIRST_DAY.date(),)).run()  # one day picked so far
    request(at)
    assert [w.value for w in at.warning] == ["Choose the period: a first and a last day."]
    assert not export_rows(conn)


def test_unmapped_channels_can_be_chosen_by_name(site: Settings, conn) -> None:
    sid = _station_id(conn)
    [unmapped] = conn.execute(  # an analyst took this column's mapping away on the Metadata page
        "UPDATE channel SET measurement_point_id = NULL WHERE station_id = %s AND column_name = 'AirT_2m_Avg' "
        "RETURNING id", (sid,)).fetchall()
    every = conn.execute("SELECT count(*) AS n FROM channel WHERE station_id = %s", (sid,)).fetchone()["n"]
    at = show(signed_in("analyst"), PAGE)
    assert "air_temperature" not in at.multiselect(key=f"export_types_{sid}").options
    at.radio(key=f"export_by_{sid}").set_value("Channels").run()
    picker = at.multiselect(key=f"export_channels_{sid}")
    assert len(picker.options) == every
    picker.set_value(["AirT_2m_Avg [Deg C]"])
    request(at)
    assert not at.error, [e.value for e in at.error]
    [row] = export_rows(conn)
    assert row["params"]["channel_ids"] == [unmapped["id"]]


def test_logger_column_names_as_headers_is_its_own_export(site: Settings, conn) -> None:
    at = request(show(signed_in("analyst"), PAGE))
    at.radio(key="export_headers").set_value("logger")
    request(at)
    descriptive, logger = export_rows(conn)
    assert (descriptive["params"]["headers"], logger["params"]["headers"]) == ("descriptive", "logger")
    assert logger["params_hash"] != descriptive["params_hash"] and logger["status"] == "queued"
    assert history(at)["parameters"][0].endswith(" · logger column names")
    done = exports.build_export(logger["id"])
    text = exports.export_file(done).read_text()
    header = next(line for line in text.splitlines() if line.startswith("Date/Time"))
    assert header.split("\t")[1:3] == ["WS_80m_NE_Avg", "WS_80m_NE_Std"]
    assert "Column headers = logger column names (mapping in the provenance)" in text
    mapping = done["provenance"]["headers"]["columns"]
    assert mapping[0] == {**mapping[0], "header": "WS_80m_NE_Avg", "column_name": "WS_80m_NE_Avg",
                          "descriptive": "Speed 80 m NE Avg [m/s]"}
