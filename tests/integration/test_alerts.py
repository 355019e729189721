"""Alerts against a real mail server and a real webhook receiver on 127.0.0.1
(tests/integration/alert_servers.py), on a real database.

A station is looked at as of a chosen time (``now``): 20 minutes after its newest reading
it is ok, 5 hours after it is late.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest

from core import alerts, auth, remote, sources, sync_health
from core.alerts import config
from tests.integration import servers
from tests.integration.alert_servers import SMTP_PASSWORD, SMTP_USER, smtp_server, webhook_server
from tests.integration.test_cli import env_for, run
from tests.integration.test_sources import dump
from tests.integration.test_overview import make_station, readings

pytestmark = pytest.mark.integration

LAST = datetime(2026, 3, 2, 5, 50, tzinfo=UTC)  # the newest reading
OK, LATE = LAST + timedelta(minutes=20), LAST + timedelta(hours=5, minutes=10)


def secrets(settings, **sections: dict) -> None:
    path = settings.secrets_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"[{name}]\n" + "".join(f'{k} = "{v}"\n' for k, v in fields.items())
                            for name, fields in sections.items()), encoding="utf-8")
    path.chmod(0o600)


@pytest.fixture
def receivers(tmp_path, settings):
    with smtp_server(tmp_path) as (box, options), webhook_server() as hook:
        secrets(settings, teams={"url": hook.url})
        yield box, options, hook


def station(conn, name: str) -> dict:
    st = make_station(conn, name, ("WS_80m_NE_Avg",))
    # not in a transaction: at storage level 2 the rollups are refreshed by TimescaleDB's
    # refresh_continuous_aggregate(), which cannot run inside one
    readings(conn, st["ch"]["WS_80m_NE_Avg"], LAST - timedelta(days=2), LAST + timedelta(minutes=10))
    return st


def setup_targets(conn, options, settings, *, stations=None, subscriber="ops@example.com", digest_hour=None):
    with conn.transaction():
        if not config.get_target(conn, "mail", missing_ok=True):
            config.add_target(conn, "admin", "mail", "email", **options)
            config.add_target(conn, "admin", "teams", "webhook", "teams")
        config.subscribe(conn, "admin", subscriber, ["mail", "teams"], stations=stations, digest_hour=digest_hour,
                         settings=settings)


def tick(conn, now, settings=None):
    """One evaluation and delivery, as the worker's periodic task does it."""
    return alerts.run(conn, now=now, settings=settings)


def test_a_late_station_sends_one_email_and_one_webhook_then_one_recovery(conn, settings, receivers):
    box, options, hook = receivers
    station(conn, "Kestrel Ridge")
    setup_targets(conn, options, settings)

    assert tick(conn, OK)["events"] == []  # first seen ok: nothing to say
    result = tick(conn, LATE)
    assert result["sent"] == {"sent": 2, "retried": 0, "failed": 0}
    assert [m["subject"] for m in box.messages] == ["[StationManager] Kestrel Ridge is late"]
    assert box.messages[0]["to"] == ["ops@example.com"]
    assert box.messages[0]["body"].strip() == \
        "Kestrel Ridge is late: newest reading 5 h old (logger interval 10 min)"
    assert len(hook.posts) == 1
    post = hook.posts[0]
    assert post["text"] == "Kestrel Ridge is late: newest reading 5 h old (logger interval 10 min)"
    assert (post["station"], post["state"], post["previous_state"]) == ("Kestrel Ridge", "late", "ok")

    for minutes in (1, 2, 30):  # later evaluations in the same state say nothing more
        assert tick(conn, LATE + timedelta(minutes=minutes))["messages"] == 0
    assert len(box.messages) == 1 and len(hook.posts) == 1

    tick(conn, OK)  # a new file came in: recovered
    assert [m["subject"] for m in box.messages][1:] == ["[StationManager] Kestrel Ridge recovered"]
    assert hook.posts[1]["text"].startswith("Kestrel Ridge recovered: newest reading 20 min old")
    assert hook.posts[1]["text"].endswith("(was late)")
    tick(conn, OK + timedelta(minutes=1))
    assert len(box.messages) == 2 and len(hook.posts) == 2
    log = alerts.messages(conn)
    assert {(m["kind"], m["target_name"], m["status"]) for m in log} == {
        ("alert", "mail", "sent"), ("alert", "teams", "sent"), ("recovered", "mail", "sent"),
        ("recovered", "teams", "sent")}


def test_restart_between_evaluation_and_sending_neither_loses_nor_repeats(conn, settings, receivers):
    box, options, hook = receivers
    station(conn, "Kestrel Ridge")
    setup_targets(conn, options, settings)
    alerts.evaluate(conn, now=OK)
    assert alerts.evaluate(conn, now=LATE)["messages"] == 2  # recorded, then the worker "dies"
    assert alerts.evaluate(conn, now=LATE)["messages"] == 0  # a new worker: the state is known
    assert alerts.deliver(conn, now=LATE)["sent"] == 2
    assert alerts.deliver(conn, now=LATE)["sent"] == 0
    assert len(box.messages) == 1 and len(hook.posts) == 1


def test_two_evaluators_at_once_send_once(conn, db_url, settings, receivers):
    from core import db

    box, options, hook = receivers
    for name in ("Kestrel Ridge", "Curlew Point", "Ballymore Hill"):
        station(conn, name)
    setup_targets(conn, options, settings)
    tick(conn, OK)
    barrier, results, errors = threading.Barrier(4), [], []

    def evaluator() -> None:
        try:
            with db.connect(db_url, autocommit=True) as c:
                barrier.wait(timeout=30)
                results.append(tick(c, LATE))
        except Exception as exc:  # shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=evaluator) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sum(len(r["events"]) for r in results) == 3
    assert sorted(m["subject"] for m in box.messages) == [
        f"[StationManager] {n} is late" for n in ("Ballymore Hill", "Curlew Point", "Kestrel Ridge")]
    assert len(hook.posts) == 3


def test_a_subscription_to_some_stations_hears_of_those_only(conn, settings, receivers):
    box, options, hook = receivers
    station(conn, "Kestrel Ridge")
    station(conn, "Curlew Point")
    auth.add_user(settings.users_file, "maeve", "maeve-password", "analyst", email="maeve@example.com")
    setup_targets(conn, options, settings, stations=["Curlew Point"], subscriber="maeve")
    with conn.transaction():
        config.subscribe(conn, "admin", "all@example.com", ["mail"], settings=settings)
    tick(conn, OK)
    tick(conn, LATE)
    got = sorted((m["to"][0], m["subject"]) for m in box.messages)
    assert got == [("all@example.com", "[StationManager] Curlew Point is late"),
                   ("all@example.com", "[StationManager] Kestrel Ridge is late"),
                   ("maeve@example.com", "[StationManager] Curlew Point is late")]  # from the user file
    assert [p["station"] for p in hook.posts] == ["Curlew Point"]


def test_a_source_failing_n_runs_sends_one_alert_and_one_recovery(conn, settings, receivers, tmp_path):
    box, options, hook = receivers
    setup_targets(conn, options, settings)
    folder = tmp_path / "provider"
    with conn.transaction():
        sources.add_source(conn, "admin", name="provider-x", kind="folder", url=str(folder))
    s = dataclasses.replace(settings, alert_source_failures=3)
    now = datetime.now(UTC)
    for run_no in range(1, 6):  # the folder is missing: every run fails
        assert sources.sync("provider-x", settings=s)["status"] == "failed"
        tick(conn, now, s)
        assert len(hook.posts) == (0 if run_no < 3 else 1), run_no
    text = hook.posts[0]["text"]
    assert text.startswith("Source provider-x failing since ") and text.endswith("(3 runs): not found"), text
    assert box.messages[0]["subject"] == "[StationManager] Source provider-x failing"

    folder.mkdir()  # fixed
    assert sources.sync("provider-x", settings=s)["status"] == "ok"
    tick(conn, now, s)
    tick(conn, now, s)
    assert len(hook.posts) == 2
    assert hook.posts[1]["text"].startswith("Source provider-x recovered: last run ok at ")
    assert len(box.messages) == 2


@pytest.mark.parametrize("kind", ["sftp", "ftp", "s3", "http"])
def test_a_wrong_password_alerts_once_and_its_fix_recovers_once(kind, conn, settings, receivers, tmp_path):
    """Against a real server: N runs refused for a wrong password make one alert per target;
    the password fixed, one successful run makes one "recovered" per target."""
    box, options, hook = receivers
    setup_targets(conn, options, settings)
    s = dataclasses.replace(settings, alert_source_failures=3, source_retry_wait_s=0.05, source_retries=2)
    with servers.start(kind, tmp_path / "remote") as server:
        user = server.access_key if kind == "s3" else servers.USER
        good = server.secret_key if kind == "s3" else servers.PASSWORD

        def login(password: str) -> None:
            secrets(settings, teams={"url": hook.url}, logins={"username": user, "password": password})

        login("not-" + good)
        with conn.transaction():
            row = sources.add_source(conn, "admin", name="provider-x", kind=kind, url=server.url,
                                     options=server.options, credentials="logins", station="Mast W")
            if server.host_key:
                sources.trust_host_key(conn, "provider-x", "admin", server.host_key)
        for run_no in range(1, 5):
            run = sources.sync("provider-x", settings=s)
            assert (run["status"], run["error_class"]) == ("failed", remote.AUTH), run
            tick(conn, datetime.now(UTC), s)
            assert (len(box.messages), len(hook.posts)) == ((0, 0) if run_no < 3 else (1, 1)), run_no
        assert {r["error_class"] for r in sources.runs(conn, "provider-x")} == {remote.AUTH}
        assert "not-" + good not in dump(conn, ["source_run", "alert_event", "alert_message"])
        health = sync_health.station(conn, row["station_id"], datetime.now(UTC))
        assert health.state == "failing"
        assert re.fullmatch(r"source provider-x failing since \d\d:\d\d: authentication failed",
                            health.reason), health.reason
        assert box.messages[0]["subject"] == "[StationManager] Source provider-x failing"
        assert hook.posts[0]["text"].endswith("(3 runs): authentication failed"), hook.posts[0]["text"]
        assert tick(conn, datetime.now(UTC), s)["messages"] == 0  # evaluated again: nothing more

        login(good)  # fixed
        assert sources.sync("provider-x", settings=s)["status"] == "ok"
        tick(conn, datetime.now(UTC), s)
        tick(conn, datetime.now(UTC), s)
    assert [m["subject"] for m in box.messages][1:] == ["[StationManager] Source provider-x recovered"]
    assert len(hook.posts) == 2 and hook.posts[1]["text"].startswith("Source provider-x recovered: last run ok at ")


def test_a_source_s_own_rule_wins_over_the_setting(conn, settings, receivers, tmp_path):
    _, options, hook = receivers
    setup_targets(conn, options, settings)
    with conn.transaction():
        sources.add_source(conn, "admin", name="flaky", kind="folder", url=str(tmp_path / "none"))
        config.set_rule(conn, "admin", "flaky", 1)
    sources.sync("flaky", settings=settings)
    tick(conn, datetime.now(UTC), settings)
    assert [p["text"].split(" since ")[0] for p in hook.posts] == ["Source flaky failing"]
    assert config.rules(conn) == [{"source": "flaky", "failures": 1}]


def test_a_refusing_mail_server_is_recorded_and_retried_with_backoff(conn, settings, receivers):
    box, options, hook = receivers
    station(conn, "Kestrel Ridge")
    setup_targets(conn, options, settings)
    s = dataclasses.replace(settings, alert_retry_wait_s=60, alert_send_attempts=3)
    tick(conn, OK, s)
    box.refuse = True
    hook.status = 500
    assert tick(conn, LATE, s)["sent"] == {"sent": 0, "retried": 2, "failed": 0}
    log = {m["target_name"]: m for m in alerts.messages(conn)}
    assert log["mail"]["status"] == "pending" and log["mail"]["attempts"] == 1
    assert "451" in log["mail"]["error"] and "try again later" in log["mail"]["error"]
    assert log["teams"]["error"].startswith("webhook answered 500")
    assert "T0KEN" not in log["teams"]["error"]
    # not before its wait (60 s), then again; the second failure waits twice as long
    assert tick(conn, LATE + timedelta(seconds=30), s)["sent"] == {"sent": 0, "retried": 0, "failed": 0}
    assert tick(conn, LATE + timedelta(seconds=61), s)["sent"]["retried"] == 2
    assert tick(conn, LATE + timedelta(seconds=61 + 100), s)["sent"]["retried"] == 0
    box.refuse = False  # the mail server is back; the webhook still fails, for the last time
    assert tick(conn, LATE + timedelta(seconds=61 + 121), s)["sent"] == {"sent": 1, "retried": 0, "failed": 1}
    assert [m["subject"] for m in box.messages] == ["[StationManager] Kestrel Ridge is late"]
    log = {m["target_name"]: m for m in alerts.messages(conn)}
    assert (log["mail"]["status"], log["mail"]["attempts"]) == ("sent", 3)
    assert (log["teams"]["status"], log["teams"]["attempts"]) == ("failed", 3)


def test_starttls_with_a_login_from_the_secrets_file(conn, settings, tmp_path):
    with smtp_server(tmp_path, "starttls") as (box, options), webhook_server() as hook:
        secrets(settings, mailer={"username": SMTP_USER, "password": SMTP_PASSWORD}, teams={"url": hook.url})
        with conn.transaction():
            config.add_target(conn, "admin", "mail", "email", "mailer", **options)
        ids = alerts.queue_tests(conn, "admin", to="ops@example.com")
        assert alerts.deliver(conn, ids=ids)["sent"] == 1
        assert box.logins == [SMTP_USER] and box.messages[0]["to"] == ["ops@example.com"]
        # a certificate the target does not trust: refused, and said so
        with conn.transaction():
            config.add_target(conn, "admin", "untrusting", "email", "mailer",
                              **{**options, "ca_file": None})
        ids = alerts.queue_tests(conn, "admin", target="untrusting", to="ops@example.com")
        assert alerts.deliver(conn, ids=ids) == {"sent": 0, "retried": 0, "failed": 1}
        (row,) = alerts.messages(conn, ids=ids)
        assert "certificate not trusted" in row["error"] and SMTP_PASSWORD not in row["error"]
        with conn.transaction():
            config.add_target(conn, "admin", "teams", "webhook", "teams")
        alerts.deliver(conn, ids=alerts.queue_tests(conn, "admin", target="teams"))
        assert len(hook.posts) == 1
        stored = dump(conn, ["alert_target", "alert_subscription", "alert_message", "alert_event", "alert_state",
                             "audit"])
        assert "mailer" in stored and "teams" in stored  # the names of the secrets, not the secrets
        assert SMTP_PASSWORD not in stored and "T0KEN" not in stored


def test_implicit_tls(conn, settings, tmp_path):
    with smtp_server(tmp_path, "tls") as (box, options):
        secrets(settings, mailer={"username": SMTP_USER, "password": SMTP_PASSWORD})
        with conn.transaction():
            config.add_target(conn, "admin", "mail", "email", "mailer", **options)
        assert alerts.deliver(conn, ids=alerts.queue_tests(conn, "admin", to="ops@example.com"))["sent"] == 1
        assert box.logins == [SMTP_USER]


def test_the_daily_digest_once_a_day_at_the_subscriber_s_hour(conn, settings, receivers):
    box, options, hook = receivers
    station(conn, "Kestrel Ridge")
    station(conn, "Curlew Point")
    setup_targets(conn, options, settings, digest_hour=11, stations=["Kestrel Ridge"])
    tick(conn, OK)  # 06:10: before the digest hour
    tick(conn, LATE)  # 11:00 UTC: Kestrel Ridge late, and the digest is due
    digests = [m for m in box.messages if "Daily summary" in m["subject"]]
    assert len(digests) == 1
    body = digests[0]["body"]
    assert "- Kestrel Ridge: late (newest reading 5 h old" in body
    assert "Curlew Point" not in body  # not this subscriber's
    assert "Kestrel Ridge is late: newest reading 5 h old" in body.split("Changes in the last day:")[1]
    tick(conn, LATE + timedelta(hours=3))
    assert len([m for m in box.messages if "Daily summary" in m["subject"]]) == 1  # once a day
    tick(conn, LATE + timedelta(days=1))
    assert len([m for m in box.messages if "Daily summary" in m["subject"]]) == 2
    assert len([p for p in hook.posts if p["kind"] == "digest"]) == 2


def test_refused_configurations(conn, settings):
    with pytest.raises(config.ConfigError, match="in clear"):
        config.add_target(conn, "admin", "m", "email", host="smtp.example.com", security="none", **{"from": "a@b.c"})
    with pytest.raises(config.ConfigError, match="token"):
        config.add_target(conn, "admin", "w", "webhook")
    secrets(settings, hook={"url": "http://hooks.example.com/x"})
    with pytest.raises(config.ConfigError, match="https"):
        config.webhook_url("hook", settings)
    with pytest.raises(config.ConfigError, match="not one email address"):
        config.check_address("ops@example.com; boss@example.com")
    with pytest.raises(config.ConfigError, match="no email address"):
        config.add_target(conn, "admin", "mail", "email", host="127.0.0.1", security="none", **{"from": "a@b.c"})
        config.subscribe(conn, "admin", "nobody", ["mail"], settings=settings)


def test_cli_alerts_test_against_the_loopback_servers(db_url, settings, receivers):
    box, options, hook = receivers
    env = env_for(db_url, settings.home)
    r = run(["alerts", "targets", "add", "mail", "--kind", "email", "--host", "127.0.0.1", "--port",
             str(options["port"]), "--security", "none", "--from", "sm@example.com"], env)
    assert r.returncode == 0, r.stderr
    r = run(["alerts", "targets", "add", "teams", "--kind", "webhook", "--credentials", "teams"], env)
    assert r.returncode == 0, r.stderr
    r = run(["alerts", "subscribe", "ops@example.com", "--target", "mail", "--target", "teams"], env)
    assert r.returncode == 0, r.stderr
    r = run(["alerts", "test", "--to", "ops@example.com"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mail (ops@example.com): sent" in r.stdout and "teams: sent" in r.stdout
    assert box.messages[0]["to"] == ["ops@example.com"] and hook.posts[0]["test"] is True
    assert hook.url not in r.stdout  # the webhook URL is a secret

    hook.status = 403
    r = run(["alerts", "test", "--json"], env)
    assert r.returncode == 1
    import json

    out = {m["target"]: m for m in json.loads(r.stdout)}
    assert out["mail"]["status"] == "sent" and out["teams"]["status"] == "failed"
    assert out["teams"]["error"].startswith("webhook answered 403")

    r = run(["alerts", "list", "--json"], env)
    listed = json.loads(r.stdout)
    assert [s["subscriber"] for s in listed["subscriptions"]] == ["ops@example.com"]
    assert [t["name"] for t in listed["targets"]] == ["mail", "teams"]
    assert len(listed["log"]) == 4
    r = run(["alerts", "unsubscribe", "ops@example.com"], env)
    assert r.returncode == 0 and json.loads(run(["alerts", "list", "--json"], env).stdout)["subscriptions"] == []


def test_the_worker_s_periodic_task_alerts_a_late_station(conn, db_url, settings, receivers):
    from tests.integration.test_sources import wait_until
    from tests.integration.test_workers import start_worker, stop

    box, options, hook = receivers
    st = make_station(conn, "Kestrel Ridge", ("WS_80m_NE_Avg",))
    newest = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=5)
    readings(conn, st["ch"]["WS_80m_NE_Avg"], newest - timedelta(days=1), newest + timedelta(minutes=10))
    setup_targets(conn, options, settings)
    worker = start_worker(db_url, settings.home)
    try:
        wait_until(lambda: len(hook.posts) == 1 and len(box.messages) == 1, 150, "the worker's alert")
    finally:
        stop(worker)
    assert hook.posts[0]["text"].startswith("Kestrel Ridge is late: newest reading 5 h old")


def test_subscriptions_refuse_unknown_targets_stations_and_hours(conn, settings):
    from core.errors import NotFound

    with conn.transaction():
        config.add_target(conn, "admin", "mail", "email", host="127.0.0.1", security="none", **{"from": "a@b.c"})
    with pytest.raises(NotFound, match="no alert target called 'pager'"):
        config.subscribe(conn, "admin", "ops@example.com", ["pager"], settings=settings)
    with pytest.raises(NotFound, match="no station called 'Nowhere'"):
        config.subscribe(conn, "admin", "ops@example.com", ["mail"], stations=["Nowhere"], settings=settings)
    with pytest.raises(config.ConfigError, match="0 to 23"):
        config.subscribe(conn, "admin", "ops@example.com", ["mail"], digest_hour=24, settings=settings)
    with pytest.raises(config.ConfigError, match="exists already"):
        config.add_target(conn, "admin", "mail", "email", host="127.0.0.1", security="none", **{"from": "a@b.c"})
    assert config.subscriptions(conn) == []
