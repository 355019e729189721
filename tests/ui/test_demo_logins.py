"""The web app refuses to open a home's data while its user file still has the demo logins
(with their published passwords), unless it runs as the demo (``up --demo``)."""

from __future__ import annotations

import pytest

import core.settings
from core import auth
from core.settings import Settings
from tests.ui.test_pages import signed_in, texts

pytestmark = pytest.mark.integration


def test_the_app_refuses_the_demo_logins_outside_the_demo(
        conn, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    auth.add_user(settings.users_file, "admin", "admin-demo", "admin")
    at = signed_in("admin").run()
    shown = texts(at)
    assert "still has the demo logins admin" in shown and "stationmanager users remove admin" in shown, shown
    assert "Storage level" not in shown and not at.exception

    monkeypatch.setenv("STATIONMANAGER_DEMO", "1")  # what `stationmanager up --demo` gives its app
    core.settings._current = None
    at = signed_in("admin").run()
    assert "demo logins" not in texts(at) and "Storage level" in texts(at), texts(at)

    monkeypatch.delenv("STATIONMANAGER_DEMO")
    core.settings._current = None
    auth.add_user(settings.users_file, "admin", "a-password-of-their-own", "admin")
    at = signed_in("admin").run()
    assert "demo logins" not in texts(at) and "Storage level" in texts(at), texts(at)
