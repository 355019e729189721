"""Sign-in in a real Chromium: a removed user's open session is signed out at its next
click, a demoted one loses the Admin page at once, a cookie copied before log out no longer
signs in, and a locked user name refuses even the right password until the lock ends.

The app of this module locks a name after 5 failures for a few seconds only (settings), and
waits at most 0.5 s per attempt from a failing client.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from core import auth, demo
from tests.e2e.conftest import MAST, click_until, serve, settle
from tests.e2e.test_browser import LONG, nav, sign_in

pytestmark = pytest.mark.e2e

LOCK_S = 30  # long enough to refuse the sixth attempt on a loaded machine
COOKIE = "stationmanager_auth"


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory):
    def files(home: Path) -> dict[Path, str]:
        first_day = datetime.now(UTC).date() - timedelta(days=1)
        return {p: MAST for p in demo.generate(home / "demo", start=first_day, days=1)
                if p.parent.name == "ballymore-hill"}

    settings = {"STATIONMANAGER_SIGN_IN_MAX_FAILURES": "5",
                "STATIONMANAGER_SIGN_IN_LOCK_MINUTES": str(LOCK_S / 60),
                "STATIONMANAGER_SIGN_IN_DELAY_MAX_S": "0.5"}
    with serve(pg_admin_url, template_db, tmp_path_factory.mktemp("e2e-sign-in"), files, days=1,
               app_env=settings) as served:
        yield served


def add_user(app, key: str, name: str, role: str) -> Path:
    """A user of its own for one test (the others keep theirs); the user file."""
    users_file = app.home / "users.yaml"
    auth.add_user(users_file, name, f"{name}-password", role)
    app.users[key] = (name, f"{name}-password")
    return users_file


def signed_in_overview(page: Page, app, key: str) -> None:
    page.goto(app.url)
    sign_in(page, app, key)
    expect(page.get_by_role("heading", name="Stations")).to_be_visible(timeout=LONG)


def test_a_removed_users_open_session_loses_access_at_its_next_click(page: Page, app) -> None:
    users_file = add_user(app, "removed", "rita", "analyst")
    signed_in_overview(page, app, "removed")
    auth.remove_user(users_file, "rita")  # as `stationmanager users remove rita` does

    nav(page).get_by_role("link", name="Files").click()
    expect(page.get_by_role("textbox", name="Username")).to_be_visible(timeout=LONG)
    expect(page.get_by_text("Your session has ended.")).to_be_visible()
    expect(page.get_by_role("heading", name="Files")).to_have_count(0)
    expect(nav(page)).to_have_count(0)


def test_a_demoted_user_loses_the_admin_page_at_the_next_click(page: Page, app) -> None:
    users_file = add_user(app, "demoted", "dora", "admin")
    signed_in_overview(page, app, "demoted")
    expect(nav(page)).to_contain_text("Admin")
    config = auth.load(users_file)  # an administrator edits the user file
    config["credentials"]["usernames"]["dora"]["roles"] = ["viewer"]
    auth.save(users_file, config)

    click_until(nav(page).get_by_role("link", name="Files").click,
                lambda timeout: expect(page.get_by_role("heading", name="Files")).to_be_visible(timeout=timeout))
    expect(nav(page)).not_to_contain_text("Admin")
    expect(page.get_by_text("dora · viewer")).to_be_visible()
    page.goto(f"{app.url}/admin")
    expect(page.get_by_text("this needs the admin role; you are viewer")).to_be_visible(timeout=LONG)


def _open_with_cookie(browser, app, cookie: dict) -> tuple[object, Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    context.add_cookies([cookie])
    tab = context.new_page()
    tab.goto(app.url)
    return context, tab


def test_a_cookie_copied_before_log_out_no_longer_signs_in(page: Page, app, browser) -> None:
    signed_in_overview(page, app, "viewer")
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    assert cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain http here
    # before log out, the copy signs in a fresh browser
    other, tab = _open_with_cookie(browser, app, cookie)
    try:
        expect(tab.get_by_role("heading", name="Stations")).to_be_visible(timeout=LONG)
    finally:
        other.close()

    settle(page, timeout=LONG)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("textbox", name="Username")).to_be_visible(timeout=LONG)

    other, tab = _open_with_cookie(browser, app, cookie)
    try:
        expect(tab.get_by_role("textbox", name="Username")).to_be_visible(timeout=LONG)
        expect(tab.get_by_text("You logged out.")).to_be_visible()
        expect(tab.get_by_role("heading", name="Stations")).to_have_count(0)
        expect(nav(tab)).to_have_count(0)
    finally:
        other.close()


def _failures(app, name: str) -> tuple[int, datetime | None]:
    with psycopg.connect(app.database_url) as conn:
        row = conn.execute("SELECT failures, locked_until FROM sign_in_failure WHERE name = %s", (name,)).fetchone()
    return row or (0, None)


def _wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_sixth_attempt_is_refused_even_with_the_right_password_until_the_lock_ends(page: Page, app) -> None:
    user, _ = app.users["analyst"]
    page.goto(app.url)
    locked = page.get_by_text("Too many failed sign-ins: this user name is locked until")
    for n in range(1, 6):
        sign_in(page, app, "analyst", password=f"wrong-{n}")
        _wait_for(lambda n=n: _failures(app, user)[0] == n, f"failure {n} to be counted")
    expect(locked).to_be_visible(timeout=LONG)  # the fifth failure locks
    _, until = _failures(app, user)
    assert until is not None

    settle(page, timeout=LONG)
    sign_in(page, app, "analyst", password=app.users["analyst"][1])  # the right one
    settle(page, timeout=LONG)
    expect(locked).to_be_visible()
    expect(page.get_by_role("textbox", name="Username")).to_be_visible()
    expect(page.get_by_role("heading", name="Stations")).to_have_count(0)
    assert datetime.now(UTC) < until, "the lock ended before the refusal was checked: raise LOCK_S"

    _wait_for(lambda: datetime.now(UTC) > until + timedelta(seconds=1), "the lock to end", LOCK_S + 30)
    sign_in(page, app, "analyst")
    expect(page.get_by_role("heading", name="Stations")).to_be_visible(timeout=LONG)


def test_the_cookie_is_secure_behind_a_proxy_that_terminates_tls(browser, app) -> None:
    # what a reverse proxy serving https adds; Chromium counts 127.0.0.1 as a secure origin
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  extra_http_headers={"X-Forwarded-Proto": "https"})
    context.set_default_timeout(30_000)
    try:
        tab = context.new_page()
        tab.goto(app.url)
        sign_in(tab, app, "viewer")
        cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
        assert cookie["secure"] and cookie["sameSite"] == "Strict"
        assert not cookie["httpOnly"]  # set from JavaScript: a known limit (docs/security.md)
    finally:
        context.close()
