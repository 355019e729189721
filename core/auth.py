"""Users and roles, kept in ``HOME/users.yaml`` in streamlit-authenticator's own format.

Passwords are stored only as bcrypt hashes. Roles are ordered: a role may do everything
the roles below it may do. The web app reads the file on every run (:func:`load_cached`:
read again only when it changed), so a user removed or given another role is seen at once.

>>> allowed("analyst", "viewer"), allowed("viewer", "admin")
(True, False)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from core.errors import ConfigError, PermissionDenied, StationManagerError

ROLES = ("viewer", "analyst", "admin")
_NAME = re.compile(r"^[a-z0-9_.-]{2,40}$")
MIN_PASSWORD = 8


def allowed(role: str | None, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may do."""
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)


def require(role: str | None, needed: str) -> None:
    if not allowed(role, needed):
        raise PermissionDenied(f"this needs the {needed} role; you are {role or 'not signed in'}")


def load(path: Path) -> dict[str, Any]:
    """The user file (created empty, with a fresh cookie key, if missing)."""
    if not path.exists():
        config = {
            "credentials": {"usernames": {}},
            "cookie": {
                "name": "stationmanager_auth",
                "key": secrets.token_hex(32),
                "expiry_days": 7,
            },
        }
        save(path, config)
        return config
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    config.setdefault("credentials", {}).setdefault("usernames", {})
    if "cookie" not in config:
        raise ConfigError(f"{path} has no 'cookie' section")
    return config


_cached: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def load_cached(path: Path) -> dict[str, Any]:
    """:func:`load`, read again only when the file changed (its inode, size or modification
    time: :func:`save` replaces the file, so every change gives a new inode). A copy: the
    caller may change it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return load(path)
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _cached.get(path)
    if hit is None or hit[0] != key:
        hit = (key, load(path))
        _cached[path] = hit
    return copy.deepcopy(hit[1])


def user(config: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    """The entry of user ``name`` in a loaded user file, or None."""
    return config["credentials"]["usernames"].get(name) if name else None


def verify_password(config: dict[str, Any], name: str, password: str) -> bool:
    """Whether ``password`` is user ``name``'s, in the same time whether the user exists or not.

    An unknown name is checked against a dummy hash of the same bcrypt cost, so that the
    answer's time does not tell which names exist.
    """
    entry = user(config, name) or {}
    stored = str(entry.get("password") or "")
    if not stored:
        stored = _dummy_hash(_cost_of(config))
    try:
        ok = bcrypt.checkpw(password.encode(), stored.encode())
    except ValueError:  # not a bcrypt hash: never matches, but takes the same time
        bcrypt.checkpw(password.encode(), _dummy_hash(_cost_of(config)).encode())
        return False
    return ok and bool(entry)


def _cost_of(config: dict[str, Any]) -> int:
    """The bcrypt cost of the users' hashes (the highest; bcrypt's default if none).

    >>> _cost_of({"credentials": {"usernames": {"a": {"password": "$2b$10$" + "x" * 53}}}})
    10
    >>> _cost_of({"credentials": {"usernames": {}}})
    12
    """
    costs = [int(m[1]) for u in config["credentials"]["usernames"].values()
             if (m := _BCRYPT.match(str(u.get("password") or "")))]
    return max(costs, default=12)


_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$.{53}$")


@functools.cache
def _dummy_hash(cost: int) -> str:
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost)).decode()


def password_fingerprint(entry: dict[str, Any]) -> str:
    """A short digest of a user's stored password hash: a sign-in session started with
    another password (changed since by ``users add``) is no longer valid.

    >>> password_fingerprint({"password": "x"}) == password_fingerprint({"password": "y"})
    False
    """
    return hashlib.sha256(str(entry.get("password") or "").encode()).hexdigest()[:16]


def save(path: Path, config: dict[str, Any]) -> None:
    """Write the user file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config, fh, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def add_user(path: Path, name: str, password: str, role: str, *, email: str = "") -> None:
    """Create or update a user (password hashed with bcrypt)."""
    if not _NAME.match(name):
        raise StationManagerError(
            f"invalid user name {name!r}: use 2–40 lower-case letters, digits, '.', '_' or '-'"
        )
    if role not in ROLES:
        raise StationManagerError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise StationManagerError(f"the password must have at least {MIN_PASSWORD} characters")
    config = load(path)
    config["credentials"]["usernames"][name] = {
        "email": email or f"{name}@localhost",
        "first_name": name,
        "last_name": "",
        "password": bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode(),
        "roles": [role],
        "failed_login_attempts": 0,
        "logged_in": False,
    }
    save(path, config)


def remove_user(path: Path, name: str) -> None:
    config = load(path)
    if config["credentials"]["usernames"].pop(name, None) is None:
        raise StationManagerError(f"no user called {name!r}")
    save(path, config)


def users(path: Path) -> list[dict[str, str]]:
    config = load(path)
    return [
        {"name": n, "role": role_of(u), "email": u.get("email", "")}
        for n, u in sorted(config["credentials"]["usernames"].items())
    ]


def role_of(user: dict[str, Any]) -> str:
    """The highest known role in a user entry's ``roles`` list (viewer if none)."""
    roles = [r for r in (user.get("roles") or []) if r in ROLES]
    return max(roles, key=ROLES.index) if roles else "viewer"
