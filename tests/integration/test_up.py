"""``stationmanager up --demo`` (what ``make demo`` runs) on a machine with nothing set up:
it starts its own embedded PostgreSQL, a worker and the web app, imports the demo site,
and on Ctrl-C stops all of them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300


@pytest.fixture
def home() -> Iterator[Path]:
    """A home folder outside pytest's temporary folder: as root, the embedded server runs as
    user ``pgserver``, and a concurrent pytest run resets that folder's permissions to 0700."""
    path = Path(tempfile.mkdtemp(prefix="sm-up-")) / "home"
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(lines: list[str], text: str, proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {text!r} from `stationmanager up --demo`:\n" + "".join(lines[-60:]))
        time.sleep(0.5)


def test_up_demo_serves_the_app_imports_the_demo_and_stops_everything(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_HOME=str(home), PYTHONUNBUFFERED="1")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "up", "--demo", "--days", "2", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        _wait_for(lines, f"StationManager is running at http://127.0.0.1:{port}", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.status == 200
        _wait_for(lines, "demo logins: viewer / viewer-demo, analyst / analyst-demo, admin / admin-demo", proc)
        _wait_for(lines, "demo: 4 files queued for import", proc)  # a file per day and station
        _wait_for(lines, "demo import: 4/4 files done", proc)
        assert (home / "pgdata" / "postmaster.pid").exists()  # its own embedded PostgreSQL
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(timeout=10)
        proc.stdout.close()
    output = "".join(lines)
    assert code == 0 and output.rstrip().endswith("stopped."), output[-3000:]
    # the worker logs only what matters to this terminal
    assert "Starting job" not in output and "INFO core.ingest" not in output, output[-3000:]
    time.sleep(2)
    assert not (home / "pgdata" / "postmaster.pid").exists(), "the embedded PostgreSQL is still running"


# --- Ctrl-C the way a terminal sends it: SIGINT to every process of the foreground group ---


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


def _server_processes(pgdata: Path) -> list[int]:
    """Pids of ``postgres`` processes started on ``pgdata`` (the postmaster and its children)."""
    import psutil

    found = []
    for proc in psutil.process_iter(attrs=("name", "cmdline")):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc.pid)
    return found


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _start_in_terminal(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, list[str]]:
    """Start ``argv`` as a terminal's foreground job: its own session and process group,
    with a pseudo-terminal as stdin, stdout and stderr."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=follower, stdout=follower, stderr=follower,
                            start_new_session=True)
    os.close(follower)
    lines: list[str] = []

    def read() -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: every process of the job exited
                break
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines.extend(line.decode(errors="replace") + "\n" for line in complete)
        os.close(leader)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


@pytest.mark.parametrize(
    ("via_make", "signals"),
    [
        (False, [(0, signal.SIGINT)]),
        (True, [(0, signal.SIGINT)]),
        (False, [(0, signal.SIGINT), (0.3, signal.SIGINT)]),  # Ctrl-C again while stopping
        (False, [(0, signal.SIGINT), (0.5, signal.SIGTERM)]),  # Ctrl-C, then the terminal closes
        (False, [(0, signal.SIGTERM)]),
    ],
    ids=["ctrl-c", "make-ctrl-c", "ctrl-c-twice", "ctrl-c-then-sigterm", "sigterm"],
)
def test_a_signal_to_the_whole_process_group_stops_the_embedded_postgresql(
    home: Path, tmp_path: Path, via_make: bool, signals: list[tuple[float, int]]
) -> None:
    pgdata = home / "pgdata"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_HOME=str(home), PYTHONUNBUFFERED="1")
    port = _free_port()
    argv = [sys.executable, "-m", "core.cli", "up", "--demo", "--days", "30", "--port", str(port)]
    if via_make:  # make → stationmanager, as `make demo` runs it
        makefile = tmp_path / "Makefile"
        makefile.write_text("demo:\n\t" + " ".join(argv) + "\n")
        argv = ["make", "--no-print-directory", "-f", str(makefile), "demo"]
    proc, lines = _start_in_terminal(argv, env)
    pgid = proc.pid
    try:
        _wait_for(lines, f"StationManager is running at http://127.0.0.1:{port}", proc)
        # while this process generates the demo files and the worker starts importing them
        _wait_for(lines, "demo: generating 30 days", proc)
        server = _postmaster_pid(pgdata)
        assert not _gone(server)
        for delay, signum in signals:
            time.sleep(delay)
            with contextlib.suppress(ProcessLookupError):  # all gone already
                os.killpg(pgid, signum)
        code = proc.wait(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            if proc.poll() is None:
                os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while not _gone(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    output = "".join(lines)
    leftover = _server_processes(pgdata)
    for pid in leftover:  # do not leave it running for the next test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
    handles = (pgdata / ".handle_pids.json").read_text() if (pgdata / ".handle_pids.json").exists() else "-"
    assert _gone(server), (
        f"the embedded PostgreSQL (pid {server}) is still running, held by {handles}:\n{output[-3000:]}")
    assert not leftover, f"postgres processes on {pgdata} are still running: {leftover}"
    assert not (pgdata / "postmaster.pid").exists()
    assert code in (0, 130, 2, -signal.SIGINT, -signal.SIGTERM), output[-3000:]
