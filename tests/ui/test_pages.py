"""AppTest smoke test: every page for every role, on a real migrated database.

AppTest cannot render streamlit-authenticator's cookie component, so the tests sign in
as a password sign-in leaves things: the user in the user file, a live sign-in session in
the database, and what the authenticator stores in ``st.session_state``; then they run the
real ``app.py`` and switch pages as a user would.

.. note::
   AppTest forgets between runs that ``app.py`` called ``st.navigation``, so after
   ``switch_page`` it runs the page file on its own (Streamlit's old ``pages/`` folder
   mode). That is exactly a URL typed into a fresh server, so each page's own role
   check is what is tested there; the sidebar is only checked on the landing page.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import auth, db, demo, ingest, sessions, stations
from core.errors import DatabaseError
from core.settings import Settings, get_settings
from pages.common import SESSION

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "toa5"
MAST = "Ballymore Hill"
PAGES = ("pages/overview.py", "pages/station.py", "pages/flags.py", "pages/upload.py", "pages/files.py",
         "pages/sources.py", "pages/metadata.py", "pages/calibrations.py", "pages/exports.py", "pages/explore.py", "pages/admin.py")
#: The role each page needs, when more than viewer.
NEEDED = {"pages/upload.py": "analyst", "pages/admin.py": "admin"}


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two days of 10-minute TOA5 files of one demo mast."""
    out = tmp_path_factory.mktemp("demo")
    return [p for p in demo.generate(out, start=date(2025, 3, 1), days=2) if p.parent.name == "ballymore-hill"]


def _receive_and_import(conn, path: Path, station: str, settings: Settings) -> None:
    with conn.transaction():
        rec = ingest.receive(conn, path, station=station, origin="test", settings=settings)
    ingest.import_file(rec.id, settings=settings)  # what the worker's job runs


@pytest.fixture
def site(conn, settings: Settings, demo_files: list[Path]) -> Settings:
    """A database with the demo mast, a small hourly logger and one failed file; one admin user."""
    for path in demo_files:
        _receive_and_import(conn, path, MAST, settings)
    _receive_and_import(conn, DATA / "TestLogger_Hourly_1.dat", "Test Logger", settings)
    _receive_and_import(conn, DATA / "TestLogger_Hourly_Bad05.dat", "Test Logger", settings)
    auth.add_user(settings.users_file, "ada", "admin-password", "admin")
    return settings


def signed_in(role: str, **query: str) -> AppTest:
    """``app.py`` with user ``test-ROLE`` of ``role`` signed in with its password (created in
    the test's user file if missing)."""
    name, users_file = f"test-{role}", get_settings().users_file
    if auth.user(auth.load(users_file), name) is None:
        auth.add_user(users_file, name, f"{role}-password", role)
    with db.connect() as conn:
        sid = sessions.start(conn, name, auth.password_fingerprint(auth.user(auth.load(users_file), name)))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state[SESSION] = sid
    at.session_state["authentication_status"] = True
    at.session_state["username"] = name
    at.session_state["name"] = name
    at.session_state["roles"] = [role]
    at.session_state["logout"] = None
    for key, value in query.items():
        at.query_params[key] = value
    return at


def texts(at: AppTest) -> str:
    """All text shown on the page (markdown, captions, alerts, titles, metrics)."""
    parts = [e.value for kind in ("markdown", "caption", "title", "info", "success", "warning", "error")
             for e in getattr(at, kind)]
    parts += [str(m.label) + " " + str(m.value) for m in at.metric]
    return "\n".join(str(p) for p in parts)


def show(at: AppTest, page: str) -> AppTest:
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("role", auth.ROLES)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_for_every_role(site: Settings, role: str, page: str) -> None:
    at = show(signed_in(role), page)
    needed = NEEDED.get(page, "viewer")
    errors = [e.value for e in at.error]
    if not auth.allowed(role, needed):
        assert errors == [f"this needs the {needed} role; you are {role}"]
        assert "Database" not in texts(at)
        assert not at.get("file_uploader") and not at.dataframe and not at.button
        return
    assert not errors, errors
    if page == "pages/overview.py":  # the landing page, drawn inside app.py's frame
        sidebar = "\n".join(m.value for m in at.sidebar.markdown)
        assert f"test-{role}" in sidebar and role in sidebar
        assert "Storage level" in "\n".join(c.value for c in at.sidebar.caption)
        shown = texts(at)
        assert "Stations" in shown
        assert [link.value for link in at.get("page_link")] == [MAST, "Test Logger"]
        assert ":red-badge[silent" in shown  # 2025 data: long silent
        assert "Import queue empty" in shown
        failed = [m.value for m in at.metric if m.label == "Failed"]
        assert sorted(failed) == ["0", "1"]
    elif page == "pages/station.py":
        assert at.title[0].value == "Ballymore Hill"  # first station alphabetically
        assert at.multiselect[0].value == ["WS_80m_NE_Avg [m/s]", "WS_80m_SW_Avg [m/s]"]
        # heatmap, time series, anemometer ratio (the scatter's tab is closed, so not built)
        assert len(at.get("plotly_chart")) == 3
        assert "Raw 10-minute readings" in texts(at)
    elif page == "pages/upload.py":
        assert [u.label for u in at.get("file_uploader")] == ["Logger files"]
        assert at.selectbox[0].options[1:] == [MAST, "Test Logger"]
        assert [b.label for b in at.button] == ["Upload and import"]
    elif page == "pages/files.py":
        table = at.dataframe[0].value
        assert len(table) == 4 and table["status"].map(tuple).value_counts().to_dict() == {
            ("imported",): 3, ("failed",): 1}
    elif page == "pages/metadata.py":
        assert at.title[0].value == f"Metadata · {MAST}"
        assert [s.value for s in at.subheader][:4] == ["Station", "Loggers", "Measurement points", "Channels"]
        editing = [b.label for b in at.button] == ["Save mapping", "Import"]
        assert editing == (role != "viewer")
    elif page == "pages/sources.py":  # test_sources_page goes further
        admin = role == "admin"
        assert [i.value for i in at.info] == ["No sources yet." + (" Add one below." if admin else " An admin adds them.")]
        assert ("Add source" in [b.label for b in at.button]) == admin
    elif page in ("pages/flags.py", "pages/calibrations.py", "pages/exports.py"):
        # their own tests (test_flags_page, test_calibrations_page, test_exports_page) go further
        assert at.selectbox[0].value == MAST  # the station picker, first station alphabetically
        assert not errors
    elif page == "pages/explore.py":  # tests/e2e/test_explore.py goes further
        assert at.multiselect[0].value == [MAST]
        assert [b.label for b in at.button][:2] == ["Build snapshot", "Run"] and at.button[1].disabled
        assert "Build a snapshot first" in texts(at)
    else:
        shown = texts(at)
        assert "The schema is up to date." in shown
        users = next(d.value for d in at.dataframe if "sessions" in d.value.columns).set_index("name")
        assert "ada" in users.index
        assert users.loc["test-admin", "sessions"] == 1 and users.loc["ada", "sessions"] == 0


def test_station_from_query_parameter_without_wind_channels(site: Settings) -> None:
    at = show(signed_in("viewer", station="Test Logger"), "pages/station.py")
    assert at.selectbox[0].value == "Test Logger"
    # no wind speeds: the first two channels are charted
    assert len(at.multiselect[0].value) == 2
    assert len(at.get("plotly_chart")) == 2  # heatmap, time series; no anemometer pair (no ratio), scatter tab closed


def test_no_channel_chosen_asks_for_one(site: Settings) -> None:
    at = show(signed_in("analyst"), "pages/station.py")
    at.multiselect[0].set_value([]).run()
    assert not at.exception
    assert [i.value for i in at.info] == ["Choose at least one channel."]
    assert [c.key for c in at.get("plotly_chart")] == ["heat_1"]  # only the heatmap is left


def test_signed_out_sees_only_the_login_form(site: Settings) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["StationManager"]
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert not at.metric and not at.get("plotly_chart")


def test_core_errors_are_shown_not_raised(site: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def timed_out(conn, now=None):
        raise DatabaseError("the query took longer than STATIONMANAGER_STATEMENT_TIMEOUT_S and was cancelled")

    monkeypatch.setattr(stations, "overview", timed_out)
    at = show(signed_in("viewer"), PAGES[0])
    assert [e.value for e in at.error] == [
        "the query took longer than STATIONMANAGER_STATEMENT_TIMEOUT_S and was cancelled"
    ]
    assert not at.get("page_link")
