"""The demo's own home, and its logins refused everywhere else (``core.demo_home``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import core.settings
from core import auth, demo_home
from core.errors import ConfigError
from core.settings import Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No STATIONMANAGER_* variable set; the current folder is a temporary one."""
    monkeypatch.chdir(tmp_path)
    for name in ("HOME", "DATABASE_URL", "DEMO"):
        monkeypatch.delenv(f"STATIONMANAGER_{name}", raising=False)
    core.settings._current = None
    yield tmp_path
    core.settings._current = None


def test_a_demo_password_is_a_demo_login_and_a_real_password_is_not(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    auth.add_user(users, "admin", "a-real-password", "admin")
    auth.add_user(users, "viewer", "viewer-demo", "viewer")
    auth.add_user(users, "ada", "admin-demo", "admin")  # a demo password under another name
    assert demo_home.demo_logins(users) == ["viewer"]
    auth.add_user(users, "admin", "admin-demo", "admin")
    assert demo_home.demo_logins(users) == ["viewer", "admin"]
    assert demo_home.demo_logins(tmp_path / "missing.yaml") == []


def test_a_server_without_demo_refuses_the_demo_logins_and_says_how_to_remove_them(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    auth.add_user(settings.users_file, "admin", "admin-demo", "admin")
    auth.add_user(settings.users_file, "analyst", "analyst-demo", "analyst")
    with pytest.raises(ConfigError) as refused:
        demo_home.refuse_demo_logins(settings)
    assert "stationmanager users remove analyst; stationmanager users remove admin" in str(refused.value)
    demo_home.refuse_demo_logins(Settings(home=tmp_path, demo=True))  # the demo itself runs
    auth.add_user(settings.users_file, "admin", "now-a-real-one", "admin")
    auth.remove_user(settings.users_file, "analyst")
    demo_home.refuse_demo_logins(settings)


def test_the_demo_uses_its_own_home_unless_one_is_set(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo_home.use_demo_home().home == clean_env / ".stationmanager-demo"
    assert core.settings.get_settings().home == clean_env / ".stationmanager-demo"
    monkeypatch.setenv("STATIONMANAGER_HOME", str(clean_env / "mine"))
    assert demo_home.use_demo_home().home == clean_env / "mine"


def test_the_demo_is_not_loaded_into_a_configured_server_by_default(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATIONMANAGER_DATABASE_URL", "postgresql://u@dbhost/stationmanager")
    with pytest.raises(ConfigError, match="unset it"):
        demo_home.use_demo_home()
    monkeypatch.setenv("STATIONMANAGER_HOME", str(clean_env / "mine"))  # on purpose
    assert demo_home.use_demo_home().database_url == "postgresql://u@dbhost/stationmanager"


def test_the_demo_refuses_a_home_with_users_of_its_own(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    auth.add_user(settings.users_file, "ada", "a-real-password", "admin")
    with pytest.raises(ConfigError, match=r"has users of its own \(ada\)"):
        demo_home.ensure_demo_users(settings)
    assert [u["name"] for u in auth.users(settings.users_file)] == ["ada"]
    demo_settings = Settings(home=tmp_path / "demo-home")
    demo_home.ensure_demo_users(demo_settings)
    demo_home.ensure_demo_users(demo_settings)  # again: nothing changes
    assert demo_home.demo_logins(demo_settings.users_file) == ["viewer", "analyst", "admin"]


def test_the_demo_setting_reads_yes_and_no() -> None:
    assert Settings.from_env({"STATIONMANAGER_DEMO": "1"}).demo is True
    assert Settings.from_env({"STATIONMANAGER_DEMO": "false"}).demo is False
    assert Settings.from_env({}).demo is False
    with pytest.raises(ConfigError, match="STATIONMANAGER_DEMO='maybe'"):
        Settings.from_env({"STATIONMANAGER_DEMO": "maybe"})
