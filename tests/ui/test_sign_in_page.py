"""Every run of the app checks who is signed in: a removed user is signed out, a demoted one
loses the role at once, an idle session ends (app.py, pages.common). Log out is shown in
a real browser (tests/e2e/test_sign_in.py): AppTest does not run app.py's sidebar again."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core import auth, db
from core.settings import Settings
from tests.ui.test_pages import signed_in

pytestmark = pytest.mark.integration


def login_form_shown(at: AppTest) -> bool:
    """The login form, and nothing of the app.

    AppTest runs ``app.py`` first, then (after a rerun or ``switch_page``) the page file on
    its own: a page signs the user out itself and sends the session back to ``app.py``.
    """
    if at.main.children and not at.text_input and not at.exception:
        at.run()  # the page switched to app.py: run it, as the browser does
    return [t.label for t in at.text_input] == ["Username", "Password"] and not at.sidebar.markdown


def test_a_removed_user_is_signed_out_at_the_next_run(db_url: str, settings: Settings) -> None:
    at = signed_in("analyst").run()
    assert not at.exception and not login_form_shown(at)
    auth.remove_user(settings.users_file, "test-analyst")
    at.run()
    assert not at.exception
    assert login_form_shown(at)
    assert "Your session has ended." in [i.value for i in at.info]


def test_a_demoted_user_gets_the_new_role_at_the_next_run(db_url: str, settings: Settings) -> None:
    at = signed_in("admin").run()
    assert "test-admin** · admin" in at.sidebar.markdown[0].value
    config = auth.load(settings.users_file)  # an administrator edits the user file
    config["credentials"]["usernames"]["test-admin"]["roles"] = ["viewer"]
    auth.save(settings.users_file, config)
    at.switch_page("pages/admin.py").run()  # (the browser test shows the navigation)
    assert [e.value for e in at.error] == ["this needs the admin role; you are viewer"]


def test_an_idle_session_is_signed_out(db_url: str, settings: Settings) -> None:
    at = signed_in("viewer").run()
    with db.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE sign_in_session SET last_seen_at = now() - interval '61 minutes'")
    at.run()
    assert login_form_shown(at)
    assert ("You were signed out after 60 minutes without activity: please sign in again."
            in [i.value for i in at.info])
