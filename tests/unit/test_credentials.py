"""Credentials of sources: the secrets file, environment variables, never shown."""

from __future__ import annotations

import pytest

from core import credentials, remote, sources
from core.errors import ConfigError


def secrets_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "secrets.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_secrets_file_others_can_read_is_refused_with_the_fix(tmp_path, mode):
    path = secrets_file(tmp_path, '[x]\nusername = "u"\npassword = "p"\n', mode)
    with pytest.raises(ConfigError) as err:
        credentials.lookup("x", path, environ={})
    assert f"{mode:04o}" in str(err.value) and f"chmod 600 {path}" in str(err.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_secrets_file_of_its_owner_alone_is_read(tmp_path, mode):
    path = secrets_file(tmp_path, '[provider_x]\nusername = "met"\npassword = "pw"\n', mode)
    c = credentials.lookup("provider_x", path, environ={})
    assert (c.username, c.password) == ("met", "pw")
    assert "pw" not in repr(c) and "met" not in repr(c)


def test_environment_variables_win_and_need_no_file(tmp_path):
    path = secrets_file(tmp_path, '[provider-x]\nusername = "file-user"\npassword = "file-pw"\n')
    env = {"STATIONMANAGER_SECRET_PROVIDER_X_PASSWORD": "env-pw"}
    c = credentials.lookup("provider-x", path, environ=env)
    assert (c.username, c.password) == ("file-user", "env-pw")
    env["STATIONMANAGER_SECRET_PROVIDER_X_USERNAME"] = "env-user"
    c = credentials.lookup("provider-x", tmp_path / "absent.toml", environ=env)
    assert (c.username, c.password) == ("env-user", "env-pw")


def test_unknown_names_and_fields_say_what_to_do(tmp_path):
    path = secrets_file(tmp_path, '[x]\nuser = "u"\n')
    with pytest.raises(ConfigError, match=r"unknown field\(s\) user; use username"):
        credentials.lookup("x", path, environ={})
    with pytest.raises(ConfigError, match="STATIONMANAGER_SECRET_NOBODY_PASSWORD"):
        credentials.lookup("nobody", path, environ={})
    bad = secrets_file(tmp_path, "[x\n")
    with pytest.raises(ConfigError, match="cannot read"):
        credentials.lookup("x", bad, environ={})


@pytest.mark.parametrize("url", ["sftp://met:pw@h/x", "ftp://u:p@h:21/", "https://u:p@h/d/"])
def test_a_url_with_a_password_is_refused(url):
    with pytest.raises(ConfigError, match="holds a password"):
        sources.clean_url(url.split(":")[0], url)


@pytest.mark.parametrize("fields, message", [
    ({"kind": "http", "url": "http://h/d/", "after_fetch": "delete"}, "can only keep"),
    ({"kind": "ftp", "url": "ftp://h/", "after_fetch": "move"}, "needs the folder"),
    ({"kind": "s3", "url": "s3://b/p", "options": {"passive": True}}, "for ftp, ftps"),
    ({"kind": "s3", "url": "s3://b/p", "options": {"proxy": "x"}}, "unknown option"),
    ({"kind": "gopher", "url": "gopher://h/"}, "unknown kind"),
    ({"kind": "sftp", "url": "ftp://h/"}, "needs a sftp:// URL"),
    ({"kind": "folder", "url": "/x", "every_minutes": 0}, "must be positive"),
])
def test_bad_definitions_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        sources._validate(fields)


def test_error_messages_redact_secrets_and_carry_a_hint():
    exc = remote.RemoteError(remote.AUTH, "authentication failed: user met, password hunter2 refused")
    text = credentials.redact(remote.describe(exc), ["hunter2"])
    assert "hunter2" not in text and text.startswith("authentication failed") and "secrets.toml" in text
