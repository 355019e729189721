"""The Sources page (AppTest) on a real database: everyone sees the sources and their runs,
only admins get controls, and the admin's form says clearly what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import auth, jobs, source_admin, sources
from core.errors import PermissionDenied
from tests.ui.test_pages import show, signed_in
from tests.ui.test_pages import texts as markdown

pytestmark = pytest.mark.integration

PAGE = "pages/sources.py"
SECRET = "hunter2-not-shown"
CREDENTIALS_NAME = "**nobody** <b>"


@pytest.fixture
def defined(conn, settings, tmp_path):
    """A folder source with two files, one failed run and one ok run; a secrets file."""
    folder = tmp_path / "loggers"
    (folder / "Mast F").mkdir(parents=True)
    for n in (1, 2):
        (folder / "Mast F" / f"d{n}.dat").write_text("x")
    settings.secrets_file.parent.mkdir(parents=True, exist_ok=True)
    settings.secrets_file.write_text(f'[provider_x]\nusername = "met"\npassword = "{SECRET}"\n')
    settings.secrets_file.chmod(0o600)
    with conn.transaction():
        src = sources.add_source(conn, "admin", name="Folder_one", kind="folder", url=str(folder),
                                 credentials="nobody")
    t = datetime.now(UTC) - timedelta(hours=2)
    for at, status, cls in ((t, "failed", "authentication failed"), (t + timedelta(hours=1), "ok", None)):
        conn.execute("INSERT INTO source_run (source_id, status, started_at, finished_at, n_listed, n_fetched,"
                     " error_class) VALUES (%s, %s, %s, %s, 2, %s, %s)",
                     (src["id"], status, at, at + timedelta(seconds=4), 0 if cls else 2, cls))
    return src


def texts(at) -> str:
    """The page's text as shown: names are escaped in its markdown."""
    return markdown(at).replace("\\", "")


def widgets(at) -> list:
    return [*at.button, *at.text_input, *at.checkbox, *at.number_input]


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_viewers_and_analysts_see_sources_and_runs_but_no_controls(defined, role):
    at = show(signed_in(role), PAGE)
    table = at.dataframe[0].value.set_index("source")
    row = table.loc["Folder_one"]
    assert (row["kind"], row["status"], row["counts"]) == ("folder", "ok", "2 fetched of 2 listed, 0 waiting, 0 failed")
    assert row["credentials"] == "nobody (missing)"
    assert not widgets(at)
    at.selectbox(key="source_pick").select("Folder_one").run()
    assert not at.exception
    assert [c.key for c in at.get("plotly_chart")] == ["source_runs_chart"]
    assert at.subheader[0].value == "Folder_one"
    assert at.dataframe[-1].value["status"].tolist() == ["ok", "failed"]
    assert not widgets(at)  # still none, the source chosen
    assert "no credentials called 'nobody'" in texts(at)
    assert SECRET not in texts(at) + str([d.value for d in at.dataframe])


def test_the_core_refuses_what_the_page_hides(conn, defined):
    for call in (lambda: source_admin.add(conn, "vera", "viewer", {"name": "x", "kind": "folder", "url": "/x"}),
                 lambda: source_admin.remove(conn, "anna", "analyst", "Folder_one"),
                 lambda: source_admin.queue_sync(conn, "vera", "viewer", "Folder_one"),
                 lambda: source_admin.queue_test(conn, "anna", "analyst", "Folder_one"),
                 lambda: source_admin.test_result(conn, "analyst", "Folder_one", 1),
                 lambda: source_admin.accept_host_key(conn, "vera", "viewer", "Folder_one", "SHA256:x")):
        with pytest.raises(PermissionDenied, match="this needs the admin role"):
            call()
    assert [s["name"] for s in sources.list_sources(conn)] == ["Folder_one"]


def fill(at, **values):
    for key, value in values.items():
        (at.selectbox if key == "kind" else at.text_input)(key=f"add_{key}").set_value(value)
    return at


def submit(at):
    [b for b in at.button if b.label == "Add source"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize(("values", "error"), [
    ({"name": "", "url": "sftp://met@h/x"}, "Name: give the source a name"),
    ({"name": "P", "url": ""}, "URL: where the files wait"),
    ({"name": "P", "url": "sftp://met:pw@h/x"}, "the URL holds a password: remove it"),
    ({"name": "P", "url": "ftp://h/x"}, "a sftp source needs a sftp:// URL, not 'ftp://h/x'"),
    ({"name": "Folder_one", "kind": "folder", "url": "/tmp/x"}, "a source called 'Folder_one' exists already"),
])
def test_the_add_form_says_what_is_wrong(defined, values, error):
    at = submit(fill(show(signed_in("admin"), PAGE), **values))
    assert any(error in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    assert "pw" not in str(at.dataframe[0].value)
    assert len(at.dataframe[0].value) == 1  # nothing added


def run_queued_jobs(db_url: str) -> None:
    """A real worker, in this process, runs the queued source jobs and stops."""
    app = jobs.make_app(db_url)
    with app.open():
        app.run_worker(queues=["sources"], wait=False, install_signal_handlers=False)


def test_an_admin_adds_tests_and_disables_a_source(conn, db_url, defined, tmp_path):
    at = show(signed_in("admin"), PAGE)
    assert "provider_x" in at.dataframe[1].value["name"].tolist()  # credentials names, never values
    at = submit(fill(at, name="Second", kind="folder", url=str(tmp_path / "loggers"), station="Mast F"))
    assert "Second: added" in texts(at)
    assert sorted(at.dataframe[0].value["source"]) == ["Folder_one", "Second"]
    at.selectbox(key="source_pick").select("Second").run()
    at.button(key="source_test").click().run()
    assert "Testing: waiting for the worker…" in texts(at)  # queued: the app connects to nothing
    assert "Connected" not in texts(at)
    run_queued_jobs(db_url)
    at.run()
    assert "Connected: 2 file(s) match of 2 listed." in texts(at)
    at.button(key="source_toggle").click().run()
    assert "Second: disabled" in texts(at)
    assert sources.get_source(conn, "Second")["enabled"] is False
    assert conn.execute("SELECT count(*) AS n FROM audit WHERE entity = 'source' AND actor = 'test-admin'"
                        ).fetchone()["n"] == 3  # added, tested, disabled
    assert auth.allowed("admin", source_admin.NEEDED)


def test_an_admin_edits_with_errors_shown_then_removes(conn, defined):
    at = show(signed_in("admin"), PAGE)
    at.selectbox(key="source_pick").select("Folder_one").run()
    key = f"edit_{defined['id']}"
    at.selectbox(key=f"{key}_kind").set_value("ftp")
    at.text_input(key=f"{key}_url").set_value("ftp://met:pw@h/x")
    [b for b in at.button if b.label == "Save source"][0].click().run()
    assert any("the URL holds a password" in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    assert sources.get_source(conn, "Folder_one")["kind"] == "folder"  # unchanged
    at.selectbox(key=f"{key}_kind").set_value("folder")
    at.text_input(key=f"{key}_url").set_value(defined["url"])
    at.number_input(key=f"{key}_every").set_value(15)
    at.text_input(key=f"{key}_name").set_value("Folder_two")  # renamed too
    [b for b in at.button if b.label == "Save source"][0].click().run()
    assert "Folder_two: saved" in texts(at)
    assert sources.get_source(conn, "Folder_two")["every_minutes"] == 15
    at.selectbox(key="source_pick").select("Folder_two").run()
    at.checkbox(key="source_remove_sure").check().run()
    at.button(key="source_remove").click().run()
    assert not at.exception
    assert "Folder_two: removed" in texts(at)
    assert sources.list_sources(conn) == []


def test_a_hostile_source_name_shows_as_typed(conn, defined):
    from tests.ui.test_plain_names import FORBIDDEN, STATION, markdown_texts, rendered_text, tokens

    with conn.transaction():
        sources.edit_source(conn, "Folder_one", "admin", name=STATION, credentials=CREDENTIALS_NAME)
    conn.execute("UPDATE source_run SET status = 'failed', error_class = 'timeout'")  # its reason names it
    at = show(signed_in("admin"), PAGE)
    at.selectbox(key="source_pick").select(STATION).run()
    assert not at.exception
    bad = {t: sorted(tokens(t) & FORBIDDEN) for t in markdown_texts(at) if tokens(t) & FORBIDDEN}
    assert not bad, bad
    assert rendered_text(at.subheader[0].value) == STATION
    assert any(STATION in rendered_text(m.value) for m in at.markdown)  # its last run line and its reason
