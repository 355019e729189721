"""``stationmanager up --demo`` (what ``make demo`` runs) on a machine with nothing set up:
it starts its own embedded PostgreSQL in the demo's own home, a worker and the web app,
imports the demo site, and on Ctrl-C stops all of them. ``stationmanager up`` refuses a
home that still has the demo logins, and starts a killed worker or web app again."""

from __future__ import annotations

import contextlib
import json
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
            pytest.fail(f"no {text!r} from `stationmanager up`:\n" + "".join(lines[-60:]))
        time.sleep(0.5)


def _wait_answering(url: str, proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> None:
    """Until ``url`` answers 200 (a child of ``up`` has come up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer")
        time.sleep(0.5)


def _env(home: Path | None) -> dict[str, str]:
    """The environment of a machine with nothing set, but ``STATIONMANAGER_HOME=home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(PYTHONUNBUFFERED="1")
    if home is not None:
        env.update(STATIONMANAGER_HOME=str(home))
    return env


def test_up_demo_serves_the_app_imports_the_demo_and_stops_everything(home: Path) -> None:
    home.mkdir()
    env = _env(None)  # as `make demo` runs: the demo makes its own home in the current folder
    port, api_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "up", "--demo", "--days", "2", "--port", str(port),
         "--api-port", str(api_port)],
        cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    real_home, home = home / ".stationmanager", home / ".stationmanager-demo"
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        _wait_for(lines, f"StationManager is running at http://127.0.0.1:{port}", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.status == 200
        _wait_for(lines, "demo logins: viewer / viewer-demo, analyst / analyst-demo, admin / admin-demo", proc)
        _wait_for(lines, f"HTTP API at http://127.0.0.1:{api_port}/api/v1", proc)
        _wait_for(lines, "demo: 4 files queued for import", proc)  # a file per day and station
        _wait_answering(f"http://127.0.0.1:{api_port}/api/v1/status", proc)  # the API, a child of up
        _wait_for(lines, "demo import: 4/4 files done", proc)
        assert (home / "pgdata" / "postmaster.pid").exists()  # its own embedded PostgreSQL
        # its sources: the live logger's folder in the demo home, and a failing telemetry server
        assert "demo: sources added: Ballymore Hill logger, Curlew Point telemetry" in "".join(lines)
        listed = subprocess.run([sys.executable, "-m", "core.cli", "source", "list", "--json"], cwd=ROOT,
                                env=_env(home), capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stderr
        found = {s["name"]: (s["kind"], s["url"], s["station"]) for s in json.loads(listed.stdout)}
        assert found == {"Ballymore Hill logger": ("folder", str(home.resolve() / "demo-logger"), "Ballymore Hill"),
                         "Curlew Point telemetry": ("sftp", "sftp://127.0.0.1:1/curlew-point", "Curlew Point")}
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
    assert not real_home.exists(), "the demo wrote into the real home"


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
    argv = [sys.executable, "-m", "core.cli", "up", "--demo", "--days", "30", "--port", str(port),
            "--api-port", str(_free_port())]
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


# --- no demo logins in a real home ------------------------------------------------------


def test_up_refuses_a_home_that_still_has_the_demo_logins(home: Path) -> None:
    from core import auth
    from core.settings import Settings

    users = Settings(home=home).users_file
    auth.add_user(users, "admin", "admin-demo", "admin")  # left behind by an older `make demo`
    auth.add_user(users, "ada", "a-real-password", "admin")
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "up", "--port", str(_free_port()), "--api-port", str(_free_port())],
        cwd=ROOT, env=_env(home),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=90)
        pytest.fail(f"`stationmanager up` started with the demo logins in its home:\n{output[-3000:]}")
    assert proc.returncode == 2, output
    assert "still has the demo logins admin" in output and "stationmanager users remove admin" in output, output
    assert not (home / "pgdata").exists(), "it started the database before refusing"


# --- staying up --------------------------------------------------------------------------


def _child(parent: int, marker: str) -> int | None:
    """The pid of the child process of ``parent`` whose command line has ``marker``."""
    import psutil

    for child in psutil.Process(parent).children(recursive=True):
        try:
            if any(marker in part for part in child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


def _new_child(parent: int, marker: str, old: int, proc: subprocess.Popen, lines: list[str]) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    while (pid := _child(parent, marker)) in (None, old):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no new {marker} process:\n" + "".join(lines[-60:]))
        time.sleep(0.5)
    return pid


def _healthy(port: int, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_up_starts_a_killed_worker_and_web_app_again_and_keeps_serving(home: Path) -> None:
    env = _env(home)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "up", "--port", str(port), "--api-port", str(_free_port())], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        _wait_for(lines, f"StationManager is running at http://127.0.0.1:{port}", proc)
        worker = _child(proc.pid, "ingest_worker")
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        _wait_for(lines, "worker exited with code -9", proc)
        _healthy(port, timeout=10)  # the web app did not go down with it
        _wait_for(lines, "restarting the worker (restart 1)", proc)
        _new_child(proc.pid, "ingest_worker", worker, proc, lines)
        # the new worker imports a file queued now
        res = subprocess.run(
            [sys.executable, "-m", "core.cli", "ingest", str(ROOT / "tests/data/toa5/TestLogger_Hourly_1.dat"),
             "--station", "Mast A", "--wait", "--timeout", "240", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )
        assert res.returncode == 0 and '"imported"' in res.stdout, res.stdout + res.stderr + "".join(lines[-40:])

        web = _child(proc.pid, "streamlit")
        assert web is not None
        os.kill(web, signal.SIGKILL)
        _wait_for(lines, "web app exited with code -9", proc)
        _wait_for(lines, "restarting the web app (restart 1)", proc)
        _new_child(proc.pid, "streamlit", web, proc, lines)
        _healthy(port)
        assert proc.poll() is None, "".join(lines[-60:])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        reader.join(timeout=10)
        proc.stdout.close()
    assert code in (0, 130), "".join(lines[-60:])
