"""Names people and files provide show as plain text on every page (AppTest, real database).

A station, a channel, a flag note, a calibration certificate and the signed-in user all
carry Markdown, HTML and web addresses. Every element of every page that renders Markdown
(titles, captions, alerts, badges, metrics, widget labels and help, tabs, expanders, page
links) is rendered here with a CommonMark + GitHub-flavoured parser (markdown-it-py, with
raw HTML and autolinks on, so at least as eager as Streamlit's): none may produce an
image, a link or an HTML tag, and the names must read exactly as typed.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from core import auth, calibrations, db, demo, flags, ingest, sessions
from core.settings import Settings, get_settings
from pages.common import SESSION, plain
from tests.ui.test_pages import PAGES, ROOT, show

pytestmark = pytest.mark.integration

STATION = "![x](http://127.0.0.1:9/x.png) **bold** <b>b</b> [link](http://127.0.0.1:9/)"
COLUMN = "<a href='http://127.0.0.1:9/c'>c</a>![y](http://127.0.0.1:9/y.png)"
NOTE = "see www.example.org or :red[ana@example.org] <img src=http://127.0.0.1:9/n.png>\n# not a heading"
USER = "__eve__"  # user names are [a-z0-9_.-]{2,40} (core.auth): this one would be bold
CERTIFICATE = "[cert](http://127.0.0.1:9/cert) _lab_"
MARKDOWN = MarkdownIt("gfm-like", {"html": True, "linkify": True})
FORBIDDEN = {"image", "link_open", "html_inline", "html_block"}
#: Elements whose text Streamlit renders as Markdown, and the fields that hold it.
KINDS = ("title", "header", "subheader", "markdown", "caption", "info", "success", "warning", "error", "toast")
WIDGETS = ("button", "selectbox", "multiselect", "text_input", "number_input", "text_area", "checkbox", "toggle",
           "radio", "date_input", "slider", "select_slider", "time_input", "color_picker")


@pytest.fixture
def hostile(conn, settings: Settings, tmp_path: Path) -> Settings:
    """The demo mast under a hostile name, one hostile column, a flag and a calibration."""
    for path in demo.generate(tmp_path / "demo", start=date(2025, 3, 1), days=1):
        if path.parent.name != "ballymore-hill":
            continue
        path.write_text(path.read_text().replace('"WS_60m_SW_Avg"', f'"{COLUMN}"', 1))
        with conn.transaction():
            rec = ingest.receive(conn, path, station=STATION, origin="test", settings=settings)
        assert ingest.import_file(rec.id, settings=settings)["status"] == "imported"
    flags.add_flag(conn, STATION, "station", datetime(2025, 3, 1, 6, tzinfo=UTC), datetime(2025, 3, 1, 9, tzinfo=UTC),
                   "other", NOTE, author=USER)
    point = calibrations.point_id(conn, STATION, "wind_speed 80m NE")
    calibrations.add_calibration(conn, point, datetime(2025, 1, 1, tzinfo=UTC), None, 1.0, 0.0, 0.05, 0.2,
                                 CERTIFICATE, USER)
    return settings


def as_hostile_user() -> AppTest:
    """``app.py`` with admin ``USER`` signed in, as ``tests.ui.test_pages.signed_in`` does it."""
    users_file = get_settings().users_file
    if auth.user(auth.load(users_file), USER) is None:
        auth.add_user(users_file, USER, "admin-password", "admin")
    with db.connect() as conn:
        sid = sessions.start(conn, USER, auth.password_fingerprint(auth.user(auth.load(users_file), USER)))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state[SESSION] = sid
    at.session_state["authentication_status"] = True
    at.session_state["username"] = at.session_state["name"] = USER
    at.session_state["roles"] = ["admin"]
    at.session_state["logout"] = None
    at.query_params["station"] = STATION
    return at


def markdown_texts(at: AppTest) -> list[str]:
    """Every string of the page that Streamlit renders as Markdown."""
    out = [e.value for kind in KINDS for e in getattr(at, kind)]
    out += [t for m in at.metric for t in (m.label, m.value, m.proto.help)]
    out += [e.label for e in at.expander] + [t.label for t in at.tabs]
    out += [t for kind in WIDGETS for w in getattr(at, kind) for t in (w.label, w.help)]
    out += [t for kind in ("page_link", "download_button", "file_uploader", "badge", "link_button")
            for e in at.get(kind) for t in (getattr(e.proto, "label", ""), getattr(e.proto, "help", ""))]
    return [t for t in out if t]


def tokens(text: str) -> set[str]:
    found = set()
    for tok in MARKDOWN.parse(text):
        found.add(tok.type)
        found.update(child.type for child in tok.children or [])
    return found


def rendered_text(text: str) -> str:
    """What a reader sees: the text content of the rendered Markdown."""
    return "".join(child.content for tok in MARKDOWN.parse(text) for child in tok.children or []
                   if child.type == "text")


def test_plain_keeps_the_names_as_typed() -> None:
    for name in (STATION, COLUMN, USER, CERTIFICATE):
        assert tokens(plain(name)) & FORBIDDEN == set()
        assert rendered_text(plain(name)) == name
    assert tokens(STATION) & FORBIDDEN  # the check itself sees what an unescaped name would do


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_names_as_plain_text(hostile: Settings, page: str) -> None:
    at = show(as_hostile_user(), page)
    assert not at.error, [e.value for e in at.error]
    texts = markdown_texts(at)
    bad = {t: sorted(tokens(t) & FORBIDDEN) for t in texts if tokens(t) & FORBIDDEN}
    assert not bad, bad
    if page == PAGES[0]:  # the landing page, drawn inside app.py's frame (see tests/ui/test_pages.py)
        assert f"**{plain(USER)}** · admin" in [m.value for m in at.sidebar.markdown]
    if page in ("pages/station.py", "pages/metadata.py", "pages/calibrations.py", "pages/flags.py"):
        title = at.title[0].value
        assert rendered_text(title).endswith(STATION), title
    if page == "pages/overview.py":
        assert [link.proto.label for link in at.get("page_link")] == [plain(STATION)]
    if page == "pages/metadata.py":
        unmapped = next(w.value for w in at.warning if "not mapped" in w.value)
        assert COLUMN in rendered_text(unmapped)


def test_station_page_flag_line_and_charts_keep_names_literal(hostile: Settings) -> None:
    at = show(as_hostile_user(), "pages/station.py")
    line = next(m.value for m in at.markdown if "“" in m.value)
    assert NOTE.replace("\n", "") in rendered_text(line).replace("\n", "") and USER in rendered_text(line)
    heatmap = json.loads(at.get("plotly_chart")[0].proto.spec)  # plotly draws <a>, <b>… in its texts
    ticks = heatmap["layout"]["yaxis"]["ticktext"]
    assert any(t.startswith(html.escape(COLUMN, quote=False)) for t in ticks)
    assert all("<" not in t for t in ticks)


def test_a_warning_quoting_a_sensor_name_of_a_cleaning_log_is_plain(hostile: Settings) -> None:
    at = show(as_hostile_user(), "pages/flags.py")
    log = f"Sensor,Start,Stop,Reason\n{STATION},2025-03-01 00:00:00,2025-03-01 01:00:00,Icing\n"
    at.get("file_uploader")[0].set_value(("clean.csv", log.encode(), "text/csv")).run()
    assert not at.exception
    [warning] = [w.value for w in at.warning if "No channel" in w.value]
    assert not tokens(warning) & FORBIDDEN
    assert rendered_text(warning) == f"No channel of this station matches: {STATION} (line 2)"
