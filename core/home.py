"""The data folder (``STATIONMANAGER_HOME``): temporary files and permissions.

Every temporary file StationManager makes (unpacked archive members, uploads, inbox copies,
import spill files, file-mapping previews, files on their way into the store) lives under
``HOME/tmp``, never in the system's ``/tmp``, so the limits and the clean-up below hold for
all of them. Each call site passes :func:`process_tmp` as ``dir=``: Python's ``tempfile``
default is left alone (the embedded server keys its inter-process lock on it). Each
process has a folder of its own there, ``HOME/tmp/<pid>-<random>``, holding a ``.lock``
file that the process keeps locked (``flock``) for as long as it runs. A process that is
killed loses its lock at once, whatever its pid becomes later; :func:`sweep` (run at each
worker's start) removes the folders whose lock nobody holds, so several workers sharing
one HOME never remove each other's files.

.. warning:: ``flock`` locks are reliable on a local file system. With HOME on a network
   file system shared by several hosts, a live process's folder on another host may look
   abandoned: run the workers of one HOME on one host.

Stored originals and exports are readable by the service account (and its group) only:
:func:`tighten` makes files at most ``0640`` and folders at most ``0750``, whatever the umask.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import stat
import threading
import time
from pathlib import Path

from core.settings import Settings

try:
    import fcntl
except ModuleNotFoundError as exc:  # Windows: no flock, and more (docs/deploy.md#windows)
    raise ImportError(
        "StationManager needs a POSIX system such as Linux (it locks files with fcntl); on Windows, "
        "run the compose deployment with Docker Desktop: see docs/deploy.md#windows") from exc

log = logging.getLogger(__name__)

#: Bits never set on the file store's and the exports' files and folders (group write, others).
PRIVATE_MASK = 0o027
#: Stored originals: read-only, for the service account and its group.
STORED_FILE_MODE = 0o440
DIR_MODE = 0o750
#: A folder is swept only once it is this old (a new process takes its lock just after creating it).
SWEEP_MIN_AGE_S = 60.0

_LOCK = ".lock"
_NEW = ".new-"
_mine: dict[Path, tuple[int, Path, int]] = {}  # tmp root -> (pid, this process's folder, lock fd)
_making = threading.Lock()


def tmp_root(settings: Settings) -> Path:
    return settings.home.resolve() / "tmp"


def process_tmp(settings: Settings) -> Path:
    """This process's temporary folder under ``HOME/tmp`` (created and locked on first use)."""
    root = tmp_root(settings)
    with _making:
        held = _mine.get(root)
        if held and held[0] == os.getpid() and held[1].is_dir():
            return held[1]
        return _make(root)


def _make(root: Path) -> Path:
    make_private_dir(root, 0o700)
    name = f"{os.getpid()}-{secrets.token_hex(4)}"
    new = root / f"{_NEW}{name}"  # not swept while new: its lock is not taken yet
    new.mkdir(mode=0o700)
    fd = os.open(new / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held until this process ends
    folder = new.rename(root / name)
    _mine[root] = (os.getpid(), folder, fd)
    atexit.register(_release, root)
    return folder


def release(settings: Settings) -> None:
    """Remove this process's temporary folder and let go of its lock (done at exit; a killed
    process's folder is swept later)."""
    _release(tmp_root(settings))


def _release(root: Path) -> None:
    with _making:
        held = _mine.get(root)
        if held is None or held[0] != os.getpid():
            return
        del _mine[root]
    shutil.rmtree(held[1], ignore_errors=True)  # best effort; sweep() removes what is left
    os.close(held[2])


def sweep(settings: Settings, min_age_s: float = SWEEP_MIN_AGE_S) -> list[Path]:
    """Remove the temporary folders of processes that are gone (nobody holds their lock), and
    loose files or folders being created that are older than ``min_age_s``; returns what was
    removed."""
    root = tmp_root(settings)
    if not root.is_dir():
        return []
    now = time.time()
    removed = []
    for entry in os.scandir(root):
        path = Path(entry.path)
        held = _mine.get(root)
        if held and held[1] == path:
            continue
        try:
            young = now - entry.stat(follow_symlinks=False).st_mtime < min_age_s
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(_NEW):
                if not _abandoned(path):
                    continue
                size = _size(path)
                shutil.rmtree(path)
            elif young:
                continue
            elif entry.is_dir(follow_symlinks=False):
                size = _size(path)
                shutil.rmtree(path)
            else:
                size = entry.stat(follow_symlinks=False).st_size
                path.unlink()
        except FileNotFoundError:
            continue  # removed meanwhile by another worker's sweep
        log.warning("removed the temporary folder %s (%s bytes) of a process that is gone", path, size)
        removed.append(path)
    return removed


def _abandoned(folder: Path) -> bool:
    """True when no process holds the folder's lock (a folder without one is abandoned too)."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also lets go of the lock taken just now
    return True


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
    return total


def make_private_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create ``path`` (and missing parents) and give each folder created at most ``mode``."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue  # another process made it meanwhile
        folder.chmod(mode)  # mkdir's mode is cut by the umask only; chmod makes it exact
    if path.stat().st_mode & 0o777 & ~mode:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & mode)
    return path


def tighten(settings: Settings) -> int:
    """Remove group write and every permission of others from the file store and the exports
    (stores written by earlier versions); returns the number of entries changed."""
    changed = 0
    for top in (settings.files_dir, settings.exports_dir):
        if not top.is_dir():
            continue
        for dirpath, dirs, names in os.walk(top):
            for name in (*dirs, *names, None):
                path = dirpath if name is None else os.path.join(dirpath, name)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode) or not st.st_mode & PRIVATE_MASK:
                    continue
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~PRIVATE_MASK)
                changed += 1
    if changed:
        log.info("file store and exports: permissions of %s entries tightened", changed)
    return changed
