"""The HTTP API as a real server (``python -m api``) with a real worker, on 127.0.0.1.

Tokens (missing, wrong, revoked, a role too low), a TOA5 file posted and imported by the
worker and posted again as a duplicate, an export requested, built and downloaded with a
token and through a page's signed link (tampered, expired, for another export, for a
removed user: refused), body limits (413), the rate limit (429), a database that does not
answer (503), unknown routes and methods (404, 405): every error JSON with a message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from psycopg import sql
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from core import api_tokens, auth, db, demo, signed_links
from core.settings import Settings
from tests.conftest import SAMPLES
from tests.integration.api_server import ApiServer, env_for, start_api

pytestmark = pytest.mark.integration

TOA5 = SAMPLES / "toa5" / "TestLogger_Hourly_1.dat"
WAIT_S = 120
V1 = "/api/v1"
USER = ("anna", "analyst-password")


@dataclass
class Site:
    api: ApiServer
    database_url: str
    home: Path
    tokens: dict[str, str]  # role or "revoked" -> token

    def get(self, path: str, role: str | None = "admin", **kw) -> requests.Response:
        return requests.get(self.api.url + V1 + path, headers=_auth(self.tokens.get(role)), timeout=30, **kw)

    def post(self, path: str, role: str | None = "admin", **kw) -> requests.Response:
        return requests.post(self.api.url + V1 + path, headers={**_auth(self.tokens.get(role)), **kw.pop(
            "headers", {})}, timeout=60, **kw)

    def settings(self) -> Settings:
        return Settings(home=self.home, database_url=self.database_url, api_public_url=self.api.url)


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def database(pg_admin_url: str, template_db: str) -> Iterator[str]:
    name = f"sm_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    yield db.with_dbname(pg_admin_url, name)
    db.close_pools()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def make_tokens(database_url: str) -> dict[str, str]:
    with db.connect(database_url, autocommit=True) as conn:
        tokens = {role: api_tokens.add(conn, f"test-{role}", role, "test")[0] for role in auth.ROLES}
        tokens["revoked"] = api_tokens.add(conn, "test-revoked", "admin", "test")[0]
        api_tokens.revoke(conn, "test-revoked", "test")
    return tokens


@pytest.fixture(scope="module")
def site(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The API (uploads up to 1 MiB) and a worker over one database."""
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("api-home")
    auth.add_user(home / "users.yaml", *USER, "analyst")
    tokens = make_tokens(database)
    env = env_for(database, home, max_upload_mb="1")
    worker_log = home / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "ingest_worker"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    api = start_api(env, home / "api.log")
    try:
        yield Site(api, database, home, tokens)
    finally:
        api.stop()
        worker.terminate()
        worker.wait(timeout=30)
        print(api.output())
        print(worker_log.read_text(errors="replace")[-4000:])


def wait_for(site: Site, path: str, done, what: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    while True:
        body = site.get(path).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not finish: {body}\n{site.api.output()}")
        time.sleep(0.3)


def error_of(r: requests.Response, status: int) -> str:
    """The message of an error answer, checked to be JSON ``{"error": "…"}`` with ``status``."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert list(body) == ["error"] and len(body["error"]) > 10, body
    return body["error"]


def test_tokens_missing_wrong_revoked_and_too_low_a_role(site: Site) -> None:
    r = site.get("/stations", role=None)
    assert "Authorization: Bearer TOKEN" in error_of(r, 401)
    assert r.headers["WWW-Authenticate"] == "Bearer"
    r = requests.get(site.api.url + V1 + "/stations", headers=_auth("sm_" + "x" * 43), timeout=30)
    assert "not known" in error_of(r, 401)
    assert "'test-revoked' was revoked" in error_of(site.get("/stations", role="revoked"), 401)
    assert site.get("/stations", role="viewer").status_code == 200
    message = error_of(site.post("/exports", role="viewer", json={"station": "x", "format": "csv"}), 403)
    assert message == "this needs a token with the analyst role; the token 'test-viewer' has the viewer role"
    with db.connect(site.database_url) as conn:
        used = {t["name"]: t["last_used_at"] for t in api_tokens.list_tokens(conn, revoked=True)}
    assert used["test-viewer"] is not None and used["test-revoked"] is None


def test_a_posted_toa5_file_is_imported_and_posting_it_again_is_a_duplicate(site: Site) -> None:
    r = site.post("/files", role="analyst", params={"name": TOA5.name, "station": "API Mast"},
                  data=TOA5.read_bytes(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    first = r.json()
    # queued (the worker may have taken it already)
    assert first["status"] in ("queued", "importing", "imported") and not first["duplicate"], first
    assert first["name"] == TOA5.name and first["origin"] == "api" and first["received_by"] == "token:test-analyst"
    done = wait_for(site, f"/files/{first['id']}", lambda b: b["status"] not in ("queued", "importing"), "the import")
    assert done["status"] == "imported" and done["readings"] > 0 and done["station"] == "API Mast", done

    with TOA5.open("rb") as fh:  # the same content, as a form this time
        r = site.post("/files", role="analyst", files={"file": ("again.dat", fh)}, data={"station": "API Mast"})
    assert r.status_code == 202, r.text
    again = r.json()
    assert again["status"] == "duplicate" and again["duplicate"] and again["duplicate_of"] == first["id"]
    assert site.get(f"/files/{again['id']}").json()["status"] == "duplicate"
    channels = site.get("/stations/API Mast/channels", role="viewer").json()
    assert {c["column_name"] for c in channels} >= {"BattV", "AirT_C(42)"}


def test_an_export_downloads_with_a_token_and_a_signed_link_only_while_it_is_valid(
        site: Site, tmp_path: Path) -> None:
    [day] = [p for p in demo.generate(tmp_path, start=date(2025, 5, 1), days=1) if "ballymore" in p.name]
    r = site.post("/files", role="analyst", params={"name": day.name, "station": "Export Mast"},
                  data=day.read_bytes())
    assert r.status_code == 202, r.text
    wait_for(site, f"/files/{r.json()['id']}", lambda b: b["status"] == "imported", "the import")
    r = site.post("/exports", role="analyst", json={"station": "Export Mast", "format": "csv", "averaging": "1h"})
    assert r.status_code == 202, r.text
    export = wait_for(site, f"/exports/{r.json()['id']}", lambda b: b["status"] in ("done", "failed"), "the export")
    assert export["status"] == "done", export
    with_token = site.get(f"/exports/{export['id']}/file", role="viewer")
    assert with_token.status_code == 200 and with_token.content.startswith(b"Date/Time") is False
    assert len(with_token.content) == export["size_bytes"]
    assert export["file_name"] in with_token.headers["content-disposition"]

    settings = site.settings()
    link = signed_links.link("export", export["id"], USER[0], settings)
    assert link.startswith(f"{site.api.url}/api/v1/exports/{export['id']}/file?sig=")
    r = requests.get(link, timeout=30)  # no token: the link alone
    assert r.status_code == 200 and r.content == with_token.content
    sig = link.split("sig=")[1]
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    assert "damaged" in error_of(requests.get(tampered, timeout=30), 403)
    old = signed_links.sign(signed_links.key(settings), "export", export["id"], USER[0], minutes=5,
                            now=time.time() - 600)
    r = requests.get(f"{site.api.url}{V1}/exports/{export['id']}/file", params={"sig": old}, timeout=30)
    assert "expired" in error_of(r, 403)
    r = requests.get(f"{site.api.url}{V1}/exports/{export['id'] + 1}/file", params={"sig": sig}, timeout=30)
    assert "another export" in error_of(r, 403)
    r = requests.get(f"{site.api.url}{V1}/files/{export['id']}/original", params={"sig": sig}, timeout=30)
    assert "another file" in error_of(r, 403)
    gone = signed_links.link("export", export["id"], "someone-removed", settings)
    assert "no longer a user" in error_of(requests.get(gone, timeout=30), 403)

    original = signed_links.link("file", 1, USER[0], settings)
    assert requests.get(original, timeout=30).content == TOA5.read_bytes()


def test_readings_stream_as_a_tidy_table_in_each_format(site: Site) -> None:
    """After the export test imported a day of the demo mast as "Export Mast"."""
    import csv
    import io

    import pyarrow.parquet as pq

    params = {"station": "Export Mast", "types": "wind_speed", "averaging": "1h"}
    r = site.get("/readings", role="viewer", params={**params, "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    header, *rows = csv.reader(io.StringIO(r.text))
    assert header == ["time", "station", "channel", "measurement_type", "height_m", "orientation_deg", "statistic",
                      "unit", "value", "flag"]
    assert len(rows) > 24 and {(row[1], row[3]) for row in rows} == {("Export Mast", "wind_speed")}
    table = pq.read_table(io.BytesIO(site.get("/readings", role="viewer", params=params).content))
    assert table.num_rows == len(rows) and table.column_names == header
    jsonl = site.get("/readings", role="viewer", params={**params, "format": "json"})
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert len(jsonl.text.splitlines()) == table.num_rows
    message = error_of(site.get("/readings", params={"station": "Export Mast", "averaging": "2h", "format": "x"}), 422)
    assert "averaging" in message or "format" in message
    assert "no station 'Nowhere'" in error_of(site.get("/readings", params={"station": "Nowhere"}), 404)


def test_bodies_over_the_limits_get_413(site: Site) -> None:
    big = b"x" * (2**20 + 1)
    message = error_of(site.post("/files", params={"name": "big.dat"}, data=big), 413)
    assert "1 MiB" in message and "STATIONMANAGER_MAX_UPLOAD_MB" in message
    # without a Content-Length (chunked), counted as it arrives
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))
    assert "STATIONMANAGER_MAX_UPLOAD_MB" in error_of(site.post("/files", params={"name": "big.dat"}, data=chunks), 413)
    r = site.post("/exports", data=b'{"station": "' + b"x" * 2**20 + b'"}', headers={"Content-Type": "application/json"})
    assert "STATIONMANAGER_API_MAX_BODY_KB" in error_of(r, 413)


def test_unknown_routes_methods_and_bad_parameters_are_json(site: Site) -> None:
    assert "openapi.json" in error_of(site.get("/nowhere"), 404)
    assert "DELETE is not allowed" in error_of(requests.delete(site.api.url + V1 + "/stations", timeout=30), 405)
    assert "query parameter start" in error_of(site.get("/stations/API Mast/flags", params={"start": "soon"}), 422)
    assert "no station called 'Nowhere'" in error_of(site.get("/stations/Nowhere/health"), 404)
    assert "give the file's name" in error_of(site.post("/files", data=b"abc"), 422)


def test_flags_posted_and_listed(site: Site) -> None:
    body = {"start": "2021-06-18T21:00:00Z", "end": "2021-06-18T23:00:00Z", "category": "icing",
            "channels": ["AirT_C(42)"], "note": "from the API"}
    r = site.post("/stations/API Mast/flags", role="analyst", json=body)
    assert r.status_code == 201, r.text
    flag = r.json()
    assert flag["author"] == "token:test-analyst" and flag["channels"] == ["AirT_C(42)"]
    listed = site.get("/stations/API Mast/flags", role="viewer").json()
    assert [f["id"] for f in listed] == [flag["id"]]
    health = site.get("/stations/API Mast/health", role="viewer").json()
    assert health["station"] == "API Mast" and health["status"] and health["sync"]["state"]


def test_the_rate_limit_answers_429_with_retry_after(database: str, tmp_path: Path) -> None:
    with db.connect(database, autocommit=True) as conn:
        token, _ = api_tokens.add(conn, "burst", "viewer", "test")
    api = start_api(env_for(database, tmp_path, api_rate_limit_per_minute="3"), tmp_path / "api.log")
    try:
        answers = [requests.get(api.url + V1 + "/stations", headers=_auth(token), timeout=30) for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429], api.output()
        assert "more than 3 requests a minute" in error_of(answers[-1], 429)
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 20
    finally:
        api.stop()


def test_a_database_that_stops_answering_gives_503(pg_admin_url: str, template_db: str, tmp_path: Path) -> None:
    name = f"sm_api_down_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    url = db.with_dbname(pg_admin_url, name)
    token = make_tokens(url)["viewer"]
    api = start_api(env_for(url, tmp_path, connect_timeout_s="1"), tmp_path / "api.log")
    try:
        assert requests.get(api.url + V1 + "/stations", headers=_auth(token), timeout=30).status_code == 200
        assert requests.get(api.url + V1 + "/health", timeout=30).json()["ok"] is True  # no token needed
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:  # no connection to it from now on
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        r = requests.get(api.url + V1 + "/stations", headers=_auth(token), timeout=60)
        assert "database" in error_of(r, 503), api.output()
        assert "database" in error_of(requests.get(api.url + V1 + "/health", timeout=60), 503)
    finally:
        api.stop()
        db.close_pools()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- the OpenAPI document, tried with generated requests ---------------------------------------


def test_every_route_keeps_to_its_openapi_document(site: Site) -> None:
    """Generated requests for every operation (an admin's token): never a 5xx, and every
    answer (errors too) is one the document declares, of the declared type and schema.
    (Driven by hand: schemathesis's pytest fixture loader does not work with pytest 9.)"""
    api_schema = schemathesis.openapi.from_url(site.api.url + V1 + "/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 11
    calls = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=30_000, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case) -> None:
            calls.append(case.call_and_validate(base_url=site.api.url, headers=_auth(site.tokens["admin"]),
                                                timeout=60, checks=checks).status_code)

        check()
    assert len(calls) >= 3 * len(operations) and 200 in calls and 404 in calls, sorted(set(calls))


# --- stationmanager tokens ----------------------------------------------------------------------


def test_tokens_cli_shows_a_token_once_keeps_its_hash_lists_its_use_and_revokes_it(db_url, capsys) -> None:
    import hashlib
    import json

    from core import cli

    assert cli.main(["tokens", "add", "logger-sync", "--role", "analyst"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("sm_") and "shown once" in out.err
    with db.connect(db_url) as conn:
        stored = conn.execute("SELECT token_sha256 FROM api_token").fetchall()
        assert stored == [{"token_sha256": hashlib.sha256(token.encode()).hexdigest()}]  # never the token
        assert api_tokens.authenticate(conn, token).role == "analyst"
        conn.commit()
    assert cli.main(["tokens", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "logger-sync" and row["last_used_at"] is not None and token not in json.dumps(row)
    assert cli.main(["tokens", "add", "logger-sync", "--role", "viewer"]) == 2  # the name is taken
    assert "revoke it first" in capsys.readouterr().err

    assert cli.main(["tokens", "revoke", "logger-sync"]) == 0
    with db.connect(db_url) as conn, pytest.raises(api_tokens.TokenRefused, match="was revoked"):
        api_tokens.authenticate(conn, token)
    assert cli.main(["tokens", "add", "logger-sync", "--role", "viewer"]) == 0  # a new one, same name
    capsys.readouterr()
    assert cli.main(["tokens", "list", "--revoked", "--json"]) == 0
    assert [(r["role"], r["revoked_at"] is None) for r in json.loads(capsys.readouterr().out)] == [
        ("analyst", False), ("viewer", True)]
