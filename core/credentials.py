"""Credentials of sources, kept out of the database, the UI and the logs.

A source names its credentials (``credentials = "provider_x"``); the values live in
``HOME/secrets.toml``, which must be readable by its owner alone (mode 0600 or stricter)::

    [provider_x]
    username = "met"
    password = "…"

or in environment variables ``STATIONMANAGER_SECRET_<NAME>_<FIELD>``
(``STATIONMANAGER_SECRET_PROVIDER_X_PASSWORD``), which win over the file. Fields:
``username``, ``password`` (for S3: the access key id and the secret key), ``key_file``
and ``passphrase`` (an SSH private key for SFTP), and ``archive_password``: the password of
the encrypted archives (zip, 7z) the source delivers, tried when the worker unpacks them.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

FIELDS = ("username", "password", "key_file", "passphrase", "archive_password")
ENV_PREFIX = "STATIONMANAGER_SECRET_"


@dataclass(frozen=True)
class Credentials:
    """The secret values of one credentials name. ``repr`` never shows them."""

    name: str
    username: str | None = None
    password: str | None = None
    key_file: str | None = None
    passphrase: str | None = None
    archive_password: str | None = None

    def __repr__(self) -> str:
        given = ", ".join(f for f in FIELDS if getattr(self, f))
        return f"Credentials({self.name!r}: {given or 'empty'})"

    def secrets(self) -> list[str]:
        """The values that must never be shown (for redaction)."""
        return [v for v in (self.password, self.passphrase, self.archive_password) if v]


def env_name(name: str, field: str) -> str:
    """The environment variable that holds ``field`` of credentials ``name``.

    >>> env_name("provider-x", "password")
    'STATIONMANAGER_SECRET_PROVIDER_X_PASSWORD'
    """
    return ENV_PREFIX + _env_key(name) + "_" + field.upper()


def _env_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def read_file(path: Path) -> dict[str, dict]:
    """The sections of a secrets file; refused unless only its owner can read it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} can be read by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"it holds passwords, so StationManager refuses it: run  chmod 600 {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def lookup(name: str, path: Path, environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials called ``name``: the file's section, overridden by environment variables."""
    environ = os.environ if environ is None else environ
    values = {f: environ.get(env_name(name, f)) or None for f in FIELDS}
    if not any(values.values()) or not all(values[f] for f in ("username", "password")):
        section = read_file(path).get(name, {})
        unknown = set(section) - set(FIELDS)
        if unknown:
            raise ConfigError(f"{path}, [{name}]: unknown field(s) {', '.join(sorted(unknown))}; "
                              f"use {', '.join(FIELDS)}")
        for f in FIELDS:
            values[f] = values[f] or (str(section[f]) if section.get(f) is not None else None)
    if not any(values.values()):
        raise ConfigError(f"no credentials called {name!r}: add a [{name}] section to {path} "
                          f"or set {env_name(name, 'username')} and {env_name(name, 'password')}")
    return Credentials(name, **values)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value and any URL password replaced by ``***``.

    >>> redact("login as u:hunter2 to ftp://u:hunter2@h/x failed", ["hunter2"])
    'login as u:*** to ftp://u:***@h/x failed'
    """
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def names(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The credentials names that exist, and where: ``{name: "secrets file" | "environment"}``
    (never a value). A name set by environment variables is shown as the variables spell it.
    Raises :class:`ConfigError` when the file is unsafe or unreadable.

    >>> names(Path("/nonexistent"), {"STATIONMANAGER_SECRET_PROVIDER_X_PASSWORD": "p", "HOME": "/"})
    {'PROVIDER_X': 'environment'}
    """
    environ = os.environ if environ is None else environ
    out = {name: "secrets file" for name in read_file(path)}
    in_file = {_env_key(n) for n in out}
    for key in environ:
        m = re.fullmatch(ENV_PREFIX + r"(.+)_(" + "|".join(f.upper() for f in FIELDS) + ")", key)
        if m and m[1] not in in_file:
            out.setdefault(m[1], "environment")
    return dict(sorted(out.items()))


def resolves(name: str | None, path: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """Why credentials ``name`` cannot be used (None when they can, or none are named)."""
    if not name:
        return None
    try:
        lookup(name, path, environ)
    except ConfigError as exc:
        return str(exc)
    return None
