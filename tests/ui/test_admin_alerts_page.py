"""The Admin page's alerts: an administrator adds a webhook target, subscribes an address,
sets a source's threshold and sends a test, which a real worker sends to a webhook
receiver on 127.0.0.1; other roles see none of it."""

from __future__ import annotations

import time

import pytest

from core import alerts, sources
from core.alerts import config
from tests.integration.alert_servers import webhook_server
from tests.integration.test_alerts import secrets
from tests.integration.test_workers import start_worker, stop
from tests.ui.test_pages import show, signed_in, texts

pytestmark = pytest.mark.integration


def click(at, label: str):
    next(b for b in at.button if b.label == label).click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_an_admin_configures_alerts_and_a_worker_sends_the_test(conn, db_url, settings, tmp_path):
    with conn.transaction():
        sources.add_source(conn, "admin", name="provider-x", kind="folder", url=str(tmp_path / "in"))
    with webhook_server() as hook:
        secrets(settings, teams={"url": hook.url})
        at = show(signed_in("admin"), "pages/admin.py")
        assert "Alerts" in [h.value for h in at.subheader]

        at.text_input(key="alert_target_name").set_value("teams")
        at.radio(key="alert_target_kind").set_value("webhook")
        at.text_input(key="alert_target_credentials").set_value("teams")
        click(at, "Add target")
        assert [t["name"] for t in config.targets(conn)] == ["teams"]
        assert "Target teams added." in texts(at)
        assert hook.url not in texts(at)

        at.text_input(key="alert_sub_who").set_value("ops@example.com")
        at.multiselect(key="alert_sub_targets").set_value(["teams"])
        click(at, "Subscribe")
        assert [(s["subscriber"], s["targets"], s["stations"]) for s in config.subscriptions(conn)] == [
            ("ops@example.com", ["teams"], None)]

        at.number_input(key="alert_rule_failures").set_value(2)
        click(at, "Save threshold")
        assert config.rules(conn) == [{"source": "provider-x", "failures": 2}]

        click(at, "Send test")
        assert "teams: waiting for the worker…" in texts(at)  # queued: the app sends nothing
        assert hook.posts == []
        worker = start_worker(db_url, settings.home)
        try:
            deadline = time.monotonic() + 90
            while not hook.posts and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop(worker)
        assert [p["test"] for p in hook.posts] == [True]
        at.run()
        assert "teams: sent" in texts(at)
        assert [(m["kind"], m["status"]) for m in alerts.messages(conn)] == [("test", "sent")]


def test_an_analyst_sees_no_alert_settings(conn):
    at = show(signed_in("analyst"), "pages/admin.py")
    assert "Alerts" not in [h.value for h in at.subheader]
    assert not [b for b in at.button if b.label in ("Add target", "Send test")]
