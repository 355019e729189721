"""Upload, Files and Metadata in a real Chromium, with the real worker importing.

An analyst uploads a good and a bad TOA5 file through the browser's file chooser into a new
station, watches their status turn imported / failed (with the line and the reason), then
downloads the original of the good file from the Files page (its signed link to the API), byte for byte, and imports a
Task 43 document on the Metadata page. Then a .zip of a logger no station knows is uploaded
with the station left to detection: its member waits for a station, which the analyst
assigns on the Files page. Screenshots: ``upload.png``, ``files.png``, ``metadata.png`` in
``docs/screenshots/``.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import click_until
from tests.e2e.test_browser import LONG, nav, sign_in

pytestmark = pytest.mark.e2e
WITH_API = True  # the pages download through the HTTP API (signed links)

DATA = Path(__file__).resolve().parents[1] / "data"
GOOD = DATA / "toa5" / "TestLogger_Daily_1.dat"
BAD = DATA / "toa5" / "TestLogger_Hourly_Bad05.dat"
TASK43 = DATA / "iea43" / "demo_data_iea43_wra_data_model.json"
STATION = "Upload Mast"
IMPORT = 180_000  # ms: the worker imports on a loaded machine


def choose(page: Page, label: str, text: str, within=None) -> None:
    """Type into a selectbox and take the matching option (or add ``text`` as a new one)."""
    box = (within or page).get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True))
    field = box.get_by_role("combobox")
    field.click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    expect(field).to_have_value(re.compile(re.escape(text)))


def sign_in_settled(page: Page, app, role: str) -> None:
    """Sign in and wait until the remember-me cookie is stored. The cookie component reruns
    the page when it has set the cookie; a click on the navigation before that can be lost."""
    page.goto(app.url)
    sign_in(page, app, role)
    expect(page.get_by_role("heading", name="Stations")).to_be_visible(timeout=LONG)
    page.wait_for_function("() => document.cookie.includes('stationmanager_auth=')", timeout=LONG)


def open_page(page: Page, name: str, heading: str) -> None:
    click_until(nav(page).get_by_role("link", name=name).click,
                expect(page.get_by_role("heading", name=heading)).to_be_visible)


def file_row(page: Page, name: str):
    """A file's row in the Upload page's status list."""
    return page.get_by_test_id("stHorizontalBlock").filter(has=page.get_by_text(name, exact=True))


def test_upload_follow_the_import_and_download_the_original(page: Page, app, screenshots: Path,
                                                            tmp_path: Path) -> None:
    sign_in_settled(page, app, "analyst")
    open_page(page, "Upload", "Upload")

    page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files([GOOD, BAD])
    uploader = page.get_by_test_id("stFileUploader")
    for path in (GOOD, BAD):  # uploaded to the server (the form waits for that too)
        expect(uploader.get_by_role("button", name=f"Remove {path.name}")).to_be_visible(timeout=LONG)
    choose(page, "Station", STATION)  # a new station, typed
    page.get_by_role("button", name="Upload and import").click()

    good, bad = file_row(page, GOOD.name), file_row(page, BAD.name)
    expect(good).to_contain_text("imported", timeout=IMPORT)
    expect(bad).to_contain_text("failed", timeout=IMPORT)
    expect(bad).to_contain_text("line 1: the environment line has 9 fields, expected 8")
    expect(good).to_contain_text("2021-06-18 00:00")  # daily means, stamped at the period start (UTC)
    expect(good).to_contain_text("– 2021-06-19 00:00")
    expect(page.get_by_text("refreshing every 2 s")).to_have_count(0)
    page.mouse.move(1390, 890)
    expect(uploader.get_by_role("button", name=f"Remove {GOOD.name}")).to_have_count(0)  # form cleared
    page.screenshot(path=screenshots / "upload.png")

    open_page(page, "Files", "Files")
    choose(page, "File", GOOD.name)
    details = page.locator(".st-key-file_details")
    expect(details.get_by_role("heading", name=GOOD.name)).to_be_visible(timeout=LONG)
    expect(details).to_contain_text(f"station {STATION}")
    # a link to the API signed for this user: it downloads without the app's session
    link = details.get_by_role("link", name=re.compile("Download the original"))
    expect(link).to_have_count(1)
    got = page.request.get(link.get_attribute("href"))
    assert got.status == 200, got.text()
    assert f'filename="{GOOD.name}"' in got.headers["content-disposition"]
    assert got.body() == GOOD.read_bytes()

    open_page(page, "Metadata", "Loggers")
    form = page.get_by_test_id("stForm").filter(has_text="Task 43")
    form.locator("input[type=file]").set_input_files(TASK43)
    expect(form.get_by_role("button", name=f"Remove {TASK43.name}")).to_be_visible(timeout=LONG)
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Metadata · Demo Mast")).to_be_visible(timeout=LONG)
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("Task 43 data model 1.0.0-2022.01")
    expect(page.get_by_role("textbox", name="Unit")).to_have_value("mbar")  # the first channel, P2m
    page.set_viewport_size({"width": 1400, "height": 2300})  # Streamlit scrolls inside its main block
    page.get_by_role("heading", name="Metadata · Demo Mast").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "metadata.png")


def test_archive_member_of_an_unknown_logger_gets_a_station(page: Page, app, screenshots: Path,
                                                            tmp_path: Path) -> None:
    member = "Nowhere_Daily.dat"
    archive = tmp_path / "nowhere.zip"
    with zipfile.ZipFile(archive, "w") as z:  # a logger serial and station name nobody knows
        z.writestr(member, GOOD.read_text().replace('"TestLogger","CR1000X","12342"',
                                                    '"Nowhere","CR1000X","99999"', 1))
    sign_in_settled(page, app, "analyst")
    open_page(page, "Upload", "Upload")
    uploader = page.get_by_test_id("stFileUploader")
    uploader.locator("input[type=file]").set_input_files(archive)
    expect(uploader.get_by_role("button", name=f"Remove {archive.name}")).to_be_visible(timeout=LONG)
    page.get_by_role("button", name="Upload and import").click()  # station: detect from the file

    expect(file_row(page, archive.name)).to_contain_text("archive of 1 file", timeout=IMPORT)
    row = file_row(page, f"↳ {archive.name}/{member}")
    expect(row).to_contain_text("needs station", timeout=IMPORT)
    expect(row).to_contain_text("logger serial '99999', station 'Nowhere'")
    page.get_by_role("link", name="Assign a station on the Files page").click()

    waiting = page.locator(".st-key-needs_station")
    expect(waiting).to_contain_text("1 file needs a station", timeout=LONG)
    expect(waiting.get_by_test_id("stMultiSelect")).to_contain_text(member)
    expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
    expect(page.get_by_role("combobox", name="File", exact=True)).to_be_visible()  # drawn after the table
    page.mouse.move(1390, 890)  # no hover toolbar in the picture
    page.screenshot(path=screenshots / "files.png")
    choose(page, "Station", "Assigned Mast", within=waiting)
    waiting.get_by_role("button", name="Assign and import").click()
    expect(page.get_by_text("1 file queued for import at Assigned Mast.")).to_be_visible(timeout=LONG)
    expect(waiting).to_have_count(0)
    grid = page.get_by_test_id("stDataFrame")
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)  # the first row's check box: the newest file
    expect(page.get_by_role("combobox", name="File", exact=True)).to_have_value(re.compile(re.escape(member)))
    details = page.locator(".st-key-file_details")
    expect(details).to_contain_text("station Assigned Mast", timeout=IMPORT)
    expect(details.get_by_text("imported", exact=True)).to_be_visible(timeout=IMPORT)


def test_a_text_file_nothing_recognises_is_read_with_a_mapping(page: Page, app, screenshots: Path,
                                                               tmp_path: Path) -> None:
    text = tmp_path / "mast7.csv"
    rows = "".join(f"0{d}.01.2025;12:{m:02d};{m},5;-9999\n" for d in range(1, 4) for m in range(0, 60, 10))
    text.write_text("Mast 7 export\nTag;Uhrzeit;v80 [m/s];T2\n" + rows, encoding="latin-1")
    sign_in_settled(page, app, "analyst")
    open_page(page, "Upload", "Upload")
    uploader = page.get_by_test_id("stFileUploader")
    uploader.locator("input[type=file]").set_input_files(text)
    expect(uploader.get_by_role("button", name=f"Remove {text.name}")).to_be_visible(timeout=LONG)
    choose(page, "Station", "Text Mast")
    page.get_by_role("button", name="Upload and import").click()
    expect(file_row(page, text.name)).to_contain_text("unrecognised file format", timeout=IMPORT)

    open_page(page, "Files", "Files")
    choose(page, "File", text.name)
    details = page.locator(".st-key-file_details")
    details.get_by_text("Read it as a text table").click()
    expect(details.get_by_role("spinbutton", name="Header line")).to_have_value("2")  # guessed
    missing = details.get_by_role("textbox", name="Missing-value codes")
    missing.fill("-9999")
    missing.press("Enter")
    expect(details.get_by_test_id("stDataFrame")).to_be_visible()
    expect(details.get_by_test_id("stAlertContentError")).to_have_count(1)  # the file's own failure only
    page.set_viewport_size({"width": 1400, "height": 1500})
    details.get_by_text("Read it as a text table").scroll_into_view_if_needed()
    page.mouse.move(1390, 10)
    page.screenshot(path=screenshots / "file-mapping.png")
    details.get_by_role("button", name="Save for Text Mast and import again").click()
    expect(page.get_by_text(re.compile(r"^File mapping saved for Text Mast; file \d+ \(mast7\.csv\) queued again\.$"))
           ).to_be_visible(timeout=LONG)
    imported = details.filter(has=page.get_by_text("imported", exact=True))
    expect(imported).to_be_visible(timeout=IMPORT)
    # the file does not say how it stamps time: period starts, and the file's warning says so
    expect(imported).to_contain_text("2025-01-01 12:00 – 2025-01-03 12:50 UTC")
    expect(imported.get_by_test_id("stAlertContentWarning")).to_contain_text("stamps read as period start")
