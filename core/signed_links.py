"""Short-lived signed download links: the web app's pages hand a signed-in user a link to the
HTTP API that downloads one export (or one received file's original) without an API token.

A link carries ``sig``: a JWT (HS256) whose claims name what it opens (``kind`` and ``id``),
the user it was made for (``sub``) and when it stops working (``exp``,
``STATIONMANAGER_API_LINK_MINUTES`` after it was made). The key is 32 random bytes in
``HOME/api_link.key`` (mode 0600), made by the first process that needs it; the web app and
the API share it through the home. A link for another export, a changed byte, an expired
link, or a user since removed from the user file is refused (:class:`LinkRefused`).

>>> key = b"k" * 32
>>> sig = sign(key, "export", 7, "anna", minutes=5, now=1_000_000)
>>> verify(key, sig, "export", 7, now=1_000_100)
'anna'
>>> for item, when in ((8, 1_000_100), (7, 1_000_400)):
...     try:
...         verify(key, sig, "export", item, now=when)
...     except LinkRefused as exc:
...         print(exc)
this download link is for another export; open the page again for a new one
this download link has expired (links last a few minutes); open the page again for a new one
"""

from __future__ import annotations

import os
import secrets
import time
import urllib.parse
from pathlib import Path

import jwt

from core import home
from core.errors import PermissionDenied
from core.settings import Settings, get_settings

KINDS = ("export", "file")
KEY_FILE = "api_link.key"
_ALGORITHM = "HS256"


class LinkRefused(PermissionDenied):
    """This download link is not valid; open the page again for a new one."""


def key(settings: Settings | None = None) -> bytes:
    """The signing key kept under the home (made on first use, readable by its owner only)."""
    settings = settings or get_settings()
    path = settings.home.resolve() / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    home.make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return _wait_for(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def _wait_for(path: Path) -> bytes:
    for _ in range(50):
        data = path.read_bytes()
        if len(data) == 32:
            return data
        time.sleep(0.02)
    return path.read_bytes()


def sign(secret: bytes, kind: str, item_id: int, user: str, *, minutes: float, now: float | None = None) -> str:
    """The ``sig`` of a link to ``kind`` ``item_id`` for ``user``, valid ``minutes``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    now = time.time() if now is None else now
    claims = {"kind": kind, "id": int(item_id), "sub": user, "iat": int(now), "exp": int(now + minutes * 60)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def verify(secret: bytes, sig: str, kind: str, item_id: int, *, now: float | None = None) -> str:
    """The user a valid ``sig`` was made for; :class:`LinkRefused` otherwise."""
    now = time.time() if now is None else now
    try:
        claims = jwt.decode(sig, secret, algorithms=[_ALGORITHM], options={"verify_exp": False,
                            "require": ["exp", "sub", "kind", "id"]})
    except jwt.PyJWTError as exc:
        raise LinkRefused("this download link is damaged or was not made by this server; open the page "
                          "again for a new one") from exc
    if claims["kind"] != kind or claims["id"] != item_id:
        raise LinkRefused(f"this download link is for another {kind}; open the page again for a new one")
    if now >= claims["exp"]:
        raise LinkRefused("this download link has expired (links last a few minutes); open the page again "
                          "for a new one")
    return str(claims["sub"])


def public_url(settings: Settings | None = None) -> str:
    """Where browsers reach the API: ``STATIONMANAGER_API_PUBLIC_URL``, else this machine's
    ``STATIONMANAGER_API_PORT``.

    >>> public_url(Settings(api_port=9000)), public_url(Settings(api_public_url="https://m.example/"))
    ('http://127.0.0.1:9000', 'https://m.example')
    """
    settings = settings or get_settings()
    return (settings.api_public_url or f"http://127.0.0.1:{settings.api_port}").rstrip("/")


def link(kind: str, item_id: int, user: str, settings: Settings | None = None) -> str:
    """A signed download link for ``user`` (see the module docstring)."""
    settings = settings or get_settings()
    sig = sign(key(settings), kind, item_id, user, minutes=settings.api_link_minutes)
    path = {"export": f"/api/v1/exports/{item_id}/file", "file": f"/api/v1/files/{item_id}/original"}[kind]
    return f"{public_url(settings)}{path}?{urllib.parse.urlencode({'sig': sig})}"
