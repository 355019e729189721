"""The files of ``deploy/`` read the way compose, systemd and Docker read them, for the tests
that check them (tests/unit/test_deploy_files.py) and run them (tests/integration/test_deploy_server.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "stationmanager.env.example"
UNITS = DEPLOY / "systemd"
#: Where the systemd units expect the project and its virtual environment.
INSTALL_DIR = "/opt/stationmanager"
VENV_BIN = INSTALL_DIR + "/.venv/bin"


def compose() -> dict:
    """The compose file as compose reads it (YAML merge keys resolved)."""
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (what compose's ``env_file`` and systemd's
    ``EnvironmentFile`` both read: no quotes, no expansion in ours)."""
    values = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"{path.name}:{n}: not a KEY=VALUE line: {line!r}")
        values[key] = value
    return values


def unit(name: str) -> dict[str, list[str]]:
    """A unit file's ``Key=value`` lines (every section together), each key's values in order."""
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def exec_start(name: str) -> list[str]:
    """The command of a unit's ``ExecStart=``."""
    (line,) = unit(name)["ExecStart"]
    return shlex.split(line)


def local_command(argv: list[str], root: Path, bin_dir: Path) -> list[str]:
    """A unit's command for this checkout: the installed paths replaced by ``root`` and the
    virtual environment's ``bin_dir``."""
    out = []
    for arg in argv:
        if arg.startswith(VENV_BIN + "/"):
            arg = str(bin_dir / arg[len(VENV_BIN) + 1:])
        elif arg.startswith(INSTALL_DIR + "/"):
            arg = str(root / arg[len(INSTALL_DIR) + 1:])
        out.append(arg)
    return out


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with the value after ``option`` replaced (``--server.port 8501`` → a free port)."""
    i = argv.index(option)
    return [*argv[: i + 1], value, *argv[i + 2:]]


def cli_commands() -> set[str]:
    """The subcommands of ``stationmanager`` in this tree."""
    from core.cli import build_parser

    return set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001 - argparse has no public list
