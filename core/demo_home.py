"""The demo's own home, and its logins kept out of every other home.

``make demo`` (``stationmanager up --demo``) and ``stationmanager demo`` use the folder
``.stationmanager-demo`` unless ``STATIONMANAGER_HOME`` is set, so the demo site, its
database and its well-known logins (``admin / admin-demo`` …) never land in the real home
``.stationmanager``. A second ``make demo`` reuses that folder and brings the demo up to
date.

A server started without ``--demo`` (``stationmanager up``, the web app) refuses a user
file that still holds a demo login with its demo password, and says how to remove it; a
real user who happens to be called ``admin`` (with a password of their own) is fine.

>>> [name for name, _password, _role in DEMO_USERS]
['viewer', 'analyst', 'admin']
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import bcrypt

from core import auth, settings as settings_module
from core.errors import ConfigError
from core.settings import PREFIX, Settings

log = logging.getLogger(__name__)

#: The demo's home when STATIONMANAGER_HOME is not set (relative to the current folder).
DEMO_HOME = Path(".stationmanager-demo")
#: (name, password, role) of each demo login.
DEMO_USERS = (("viewer", "viewer-demo", "viewer"), ("analyst", "analyst-demo", "analyst"),
              ("admin", "admin-demo", "admin"))


def use_demo_home() -> Settings:
    """Point this process (and the processes it starts) at the demo home, unless
    ``STATIONMANAGER_HOME`` is set; refuse to load the demo into a server named by
    ``STATIONMANAGER_DATABASE_URL`` when the home was not chosen explicitly too."""
    if os.environ.get(PREFIX + "HOME"):
        return settings_module.reload()
    if os.environ.get(PREFIX + "DATABASE_URL"):
        raise ConfigError(
            "the demo runs on its own embedded database, but STATIONMANAGER_DATABASE_URL is set: unset it "
            "(or set STATIONMANAGER_HOME as well to load the demo into that server on purpose)")
    os.environ[PREFIX + "HOME"] = str(DEMO_HOME.resolve())
    return settings_module.reload()


def ensure_demo_users(settings: Settings) -> None:
    """Add the demo logins to the demo home, after checking that it is not a real home."""
    path = settings.users_file
    real = sorted(set(u["name"] for u in auth.users(path)) - set(demo_logins(path)))
    if real:
        raise ConfigError(
            f"{settings.home} has users of its own ({', '.join(real)}): the demo would add its well-known "
            f"logins to it. Run the demo in a home of its own: unset STATIONMANAGER_HOME (the demo then "
            f"uses {DEMO_HOME}) or point it at an empty folder")
    known = {u["name"] for u in auth.users(path)}
    for name, password, role in DEMO_USERS:
        if name not in known:
            auth.add_user(path, name, password, role)


def demo_logins(path: Path) -> list[str]:
    """Names of the users in the user file ``path`` who still have their demo password."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return []
    return list(_demo_logins(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _demo_logins(path: Path, _mtime_ns: int, _size: int) -> tuple[str, ...]:
    # keyed on the file's change time: bcrypt is slow on purpose, and the app asks on every page
    users = auth.load(path)["credentials"]["usernames"]
    found = []
    for name, password, _role in DEMO_USERS:
        stored = (users.get(name) or {}).get("password") or ""
        try:
            if stored and bcrypt.checkpw(password.encode(), stored.encode()):
                found.append(name)
        except ValueError:  # not a bcrypt hash: not the demo's
            log.debug("user %s: the stored password is not a bcrypt hash", name)
    return tuple(found)


def refuse_demo_logins(settings: Settings) -> None:
    """Raise :class:`ConfigError` when the user file of a server started without ``--demo``
    still holds a demo login with its demo password."""
    if settings.demo:
        return
    names = demo_logins(settings.users_file)
    if names:
        remove = "; ".join(f"stationmanager users remove {n}" for n in names)
        raise ConfigError(
            f"{settings.users_file} still has the demo logins {', '.join(names)} with their published "
            f"passwords: anyone could sign in. Remove them ({remove}) or give them passwords of their own "
            f"(stationmanager users add NAME --role ROLE), or run the demo in its own home (make demo)")
