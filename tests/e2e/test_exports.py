"""The Exports page in a real Chromium, with the real worker building the file.

An analyst requests a Windographer export of the test mast's whole range, sees its progress
while the worker builds it, downloads it through the page's signed link to the API and checks the
file: Windographer's header lines and one row for every 10-minute step of the period, gaps
included. Requesting the same export again reuses the file at once. Screenshot:
``docs/screenshots/exports.png``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser import LONG
from tests.e2e.test_upload import open_page, sign_in_settled

pytestmark = pytest.mark.e2e
WITH_API = True  # the pages download through the HTTP API (signed links)

BUILD = 180_000  # ms: the worker builds the export on a loaded machine
STEP = timedelta(minutes=10)
#: Records every progress bar the page shows, however briefly (the export may build fast).
WATCH_PROGRESS = """() => {
    window.__progress = [];
    new MutationObserver(() => {
        for (const bar of document.querySelectorAll('[data-testid="stProgress"]')) {
            const text = bar.innerText.trim();
            if (text && !window.__progress.includes(text)) window.__progress.push(text);
        }
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def whole_days(database_url: str, station: str) -> tuple[datetime, datetime]:
    """[first day 00:00, day after the last 00:00) UTC of the station's readings: the page's default period."""
    with psycopg.connect(database_url) as conn:
        first, last = conn.execute(
            "SELECT min(r.time), max(r.time) FROM reading r JOIN channel c ON c.id = r.channel_id "
            "JOIN station s ON s.id = c.station_id WHERE s.name = %s", (station,)).fetchone()
    start = datetime.combine(first.astimezone(UTC).date(), datetime.min.time(), UTC)
    end = datetime.combine(last.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)
    return start, end


def test_request_follow_and_download_a_windographer_export(page: Page, app, screenshots: Path,
                                                           tmp_path: Path) -> None:
    sign_in_settled(page, app, "analyst")
    open_page(page, "Exports", "Exports")
    form = page.locator(".st-key-export_request")
    expect(form).to_be_visible(timeout=LONG)
    expect(form.get_by_role("combobox", name="Format")).to_have_value("Windographer text")
    expect(page.get_by_text("No exports of this station yet.")).to_be_visible()

    page.evaluate(WATCH_PROGRESS)
    form.get_by_role("button", name="Request export").click()
    ready = page.get_by_test_id("stAlertContentSuccess").filter(has_text=re.compile(r"Export \d+ .* is ready"))
    expect(ready).to_be_visible(timeout=BUILD)
    seen = page.evaluate("() => window.__progress")
    assert any(re.match(r"Export \d+ · Windographer text · ", text) for text in seen), seen

    # a link to the API signed for this user: it downloads without the app's session
    download_link = page.get_by_role("link", name=re.compile(r"Download .+\.txt$"))
    expect(download_link).to_have_count(1)
    got = page.request.get(download_link.get_attribute("href"))
    assert got.status == 200, got.text()
    assert re.search(r'filename=".+\.txt"', got.headers["content-disposition"])
    lines = got.text().splitlines()

    header_end = next(i for i, line in enumerate(lines) if line.startswith("Date/Time"))
    header, columns, rows = lines[:header_end], lines[header_end].split("\t"), lines[header_end + 1:]
    assert any(app.mast in line for line in header), header
    assert "Time stamps indicate the beginning of the time step." in header
    assert columns[0] == "Date/Time" and len(columns) > 1, columns
    start, end = whole_days(app.database_url, app.mast)
    steps = int((end - start) / STEP)
    assert steps == app.days * 144 or steps == (app.days + 1) * 144  # whole days of the demo mast
    assert len(rows) == steps
    cells = [r.split("\t") for r in rows]
    assert all(len(c) == len(columns) for c in cells)
    stamps = [c[0] for c in cells]  # every step, in order, as Windographer writes them: unquoted
    assert stamps == [f"{start + k * STEP:%Y-%m-%d %H:%M}" for k in range(steps)], stamps[:3]

    history = page.get_by_test_id("stDataFrame")
    expect(history).to_be_visible()
    page.set_viewport_size({"width": 1400, "height": 1500})  # Streamlit scrolls inside its main block
    page.get_by_role("heading", name="Exports").scroll_into_view_if_needed()
    page.mouse.move(1390, 1490)  # no hover toolbar in the picture
    page.screenshot(path=screenshots / "exports.png")
    page.set_viewport_size({"width": 1400, "height": 900})

    # the same request again: the finished file is reused at once, not built again
    form.get_by_role("button", name="Request export").click()
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("reused, not built again",
                                                                          timeout=LONG)
    expect(page.get_by_role("link", name=re.compile(r"Download .+\.txt$"))).to_have_count(1)
