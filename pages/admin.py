"""Admin: database versions, storage level, connections, row counts, migrations; users and
their live sign-in sessions; alerts (targets, subscriptions, thresholds, a test, the log)."""

from __future__ import annotations

import streamlit as st

from core import alerts, auth, schema, sessions, sources, webdata
from core.alerts import config as alert_config
from core.settings import get_settings
from pages.common import (connection, current_user, database_url, notify, pool, require_role, show_errors,
                          show_notice)
from pages.common import live as live_fragment

require_role("admin")
st.title("Admin")

with show_errors(), st.spinner("Reading the database status…"):
    status = schema.status(database_url())

st.subheader("Database")
a, b, c = st.columns(3)
a.metric("PostgreSQL", status["postgresql"])
b.metric("TimescaleDB", status["timescaledb"] or "not installed",
         help=f"edition: {status['timescaledb_edition'] or '–'}; "
              f"available: {status['timescaledb_available'] or 'no'}")
c.metric("Storage level", status["storage_level"], help=status["storage_level_name"])
st.caption(f"{status['database']} · storage level {status['storage_level']}: "
           f"{status['storage_level_name']} (this server offers level {status['offered_level']})")
if status["level_note"]:
    st.info(status["level_note"][0].upper() + status["level_note"][1:] + ".", icon=":material/upgrade:")
if status["rollup_ranges_pending"]:
    st.info(f"{status['rollup_ranges_pending']} imported range(s) wait for their rollups to be refreshed "
            "(the worker catches up within a minute).")

conns = status["connections"]
stats = pool().get_stats()
st.progress(
    min(conns["server_total"] / conns["max_connections"], 1.0),
    text=f"Connections: {conns['server_total']} of {conns['max_connections']} on the server "
         f"({conns['this_database']} to this database; this app's pool holds "
         f"{stats.get('pool_size', 0)}, {stats.get('pool_available', 0)} idle)",
)

if status["pending_migrations"]:
    st.warning("Pending migrations: " + ", ".join(status["pending_migrations"])
               + ". Run `stationmanager db upgrade`.")
else:
    st.success("The schema is up to date.", icon=":material/check_circle:")

rows, people = st.columns([2, 3])
rows.subheader("Rows")
rows.dataframe(
    [{"table": t, "rows": n} for t, n in status["row_counts"].items()],
    hide_index=True, width="content",
    column_config={"rows": st.column_config.NumberColumn(format="localized")},
)

people.subheader("Users")
settings = get_settings()
with show_errors(), connection() as conn:
    users = auth.users(settings.users_file)
    signed_in = {r["username"]: r for r in sessions.live(conn, idle_minutes=settings.session_idle_minutes)}
for u in users:
    live = signed_in.get(u["name"])
    u["sessions"], u["last seen"] = (live["sessions"], live["last_seen_at"]) if live else (0, None)
people.dataframe(users, hide_index=True, width="stretch")
people.caption("Add or change users with `stationmanager users add NAME --role ROLE`; "
               "`stationmanager users logout NAME` signs a user out in every browser.")

# --- alerts ------------------------------------------------------------------------------------
# Targets, subscriptions and thresholds; a test message is sent by the worker (never here).

st.subheader("Alerts")
with show_errors(), connection() as conn:
    alert_targets = alert_config.targets(conn)
    alert_subs = alert_config.subscriptions(conn)
    alert_rules = alert_config.rules(conn)
    alert_states = alerts.states(conn)
    alert_log = alerts.messages(conn, limit=100)
    source_names = [s["name"] for s in sources.list_sources(conn)]
    station_names = webdata.station_names(conn)
target_names = [t["name"] for t in alert_targets]
me = current_user() or "admin"


def _change(done: str, action, *a, **kw) -> None:
    """Run a configuration change in one transaction, then show ``done`` on the next run."""
    with show_errors(), connection() as conn, conn.transaction():
        action(conn, me, *a, **kw)
    notify(done, key="_alerts_notice")
    st.rerun()


show_notice("_alerts_notice")
tab_targets, tab_subs, tab_rules, tab_test, tab_log = st.tabs(
    ["Targets", "Subscriptions", "Thresholds", "Send a test", "Log"])

with tab_targets:
    st.dataframe([alert_config.public_target(t) for t in alert_targets], hide_index=True, width="stretch",
                 column_order=("name", "kind", "credentials", "where"))
    st.caption("Secrets stay in HOME/secrets.toml (mode 0600): the mail server's `username` and `password`, "
               "or the webhook's `url`, under the section named as the target's credentials.")
    with st.form("alert_target_add", clear_on_submit=True):
        st.markdown("**Add a target**")
        a, b = st.columns(2)
        t_name = a.text_input("Name", key="alert_target_name")
        t_kind = b.radio("Kind", alert_config.KINDS, horizontal=True, key="alert_target_kind")
        t_creds = a.text_input("Credentials (section of secrets.toml)", key="alert_target_credentials",
                               help="A webhook: the section holding its url. A mail server: the section holding "
                                    "its username and password (leave empty for none).")
        t_host = b.text_input("Mail server host", key="alert_target_host")
        t_port = a.number_input("Port (0: the security's default)", 0, 65535, 0, key="alert_target_port")
        t_security = b.selectbox("Security", alert_config.SECURITY, key="alert_target_security")
        t_from = a.text_input("From address", key="alert_target_from")
        if st.form_submit_button("Add target"):
            opts = ({"host": t_host, "port": t_port or None, "security": t_security, "from": t_from}
                    if t_kind == "email" else {})
            _change(f"Target {t_name} added.", alert_config.add_target, t_name, t_kind, t_creds or None, **opts)
    if target_names:
        a, b = st.columns([3, 1], vertical_alignment="bottom")
        gone = a.selectbox("Target", target_names, key="alert_target_remove")
        if b.button("Remove target", key="alert_target_remove_button"):
            _change(f"Target {gone} removed.", alert_config.remove_target, gone)

with tab_subs:
    st.dataframe([alert_config.public_subscription(s) for s in alert_subs], hide_index=True, width="stretch")
    with st.form("alert_subscribe", clear_on_submit=True):
        st.markdown("**Subscribe** (replaces the subscriber's earlier subscription)")
        a, b = st.columns(2)
        who = a.text_input("User name or email address", key="alert_sub_who")
        email = b.text_input("Email address (empty: the user's, from the user file)", key="alert_sub_email")
        via = a.multiselect("Targets", target_names, key="alert_sub_targets")
        only = b.multiselect("Stations (none chosen: every station and source)", station_names,
                             key="alert_sub_stations")
        hour = a.selectbox("Daily digest", [None, *range(24)], key="alert_sub_digest",
                           format_func=lambda h: "none" if h is None else f"at {h:02d}:00 "
                                                                       f"({get_settings().alert_time_zone})")
        if st.form_submit_button("Subscribe"):
            _change(f"{who} subscribed.", alert_config.subscribe, who, via, email=email or None,
                    stations=only or None, digest_hour=hour, settings=get_settings())
    if alert_subs:
        a, b = st.columns([3, 1], vertical_alignment="bottom")
        leaving = a.selectbox("Subscriber", [s["subscriber"] for s in alert_subs], key="alert_unsub_who")
        if b.button("Unsubscribe", key="alert_unsub_button"):
            _change(f"{leaving} unsubscribed.", lambda conn, actor, who: alert_config.unsubscribe(conn, actor, who),
                    leaving)

with tab_rules:
    st.markdown(f"A station is alerted when it becomes *late*, *silent* or *faulty* (its Overview status), "
                f"and when it recovers. A source is alerted after "
                f"**{get_settings().alert_source_failures}** failed runs in a row "
                "(`STATIONMANAGER_ALERT_SOURCE_FAILURES`), unless it has a number of its own:")
    st.dataframe(alert_rules, hide_index=True, width="content")
    if source_names:
        with st.form("alert_rule"):
            a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
            src = a.selectbox("Source", source_names, key="alert_rule_source")
            n = b.number_input("Failed runs in a row", 1, 1000, get_settings().alert_source_failures,
                               key="alert_rule_failures")
            default = c.checkbox("Use the default", key="alert_rule_default")
            if st.form_submit_button("Save threshold"):
                _change(f"Threshold of {src} saved.", alert_config.set_rule, src, None if default else int(n))
    st.markdown("**Current states**")
    st.dataframe(alert_states, hide_index=True, width="stretch",
                 column_order=("subject_kind", "subject_name", "state", "since", "detail"))

with tab_test:
    a, b, c = st.columns([2, 2, 1], vertical_alignment="bottom")
    test_target = a.selectbox("Target", [None, *target_names], key="alert_test_target",
                              format_func=lambda t: "every target" if t is None else t)
    own = alert_config.address_of(me, get_settings()) or ""
    test_to = b.text_input("Email targets send to", own, key="alert_test_to")
    if c.button("Send test", key="alert_test_button", disabled=not target_names):
        with show_errors(), connection() as conn:
            st.session_state["_alert_test_ids"] = alerts.test_by_worker(conn, me, target=test_target,
                                                                        to=test_to or None)
    test_ids = st.session_state.get("_alert_test_ids")

    def _test_rows() -> list[dict]:
        with connection() as conn:
            return alerts.messages(conn, ids=test_ids)

    def _test_result() -> bool:
        rows = _test_rows()
        for r in rows:
            to = f" ({r['recipient']})" if r["recipient"] else ""
            if r["status"] == "sent":
                st.success(f"{r['target_name']}{to}: sent", icon=":material/check_circle:")
            elif r["status"] == "failed":
                st.error(f"{r['target_name']}{to}: {r['error']}", icon=":material/error:")
            else:
                st.info(f"{r['target_name']}{to}: waiting for the worker…", icon=":material/hourglass_top:")
        return any(r["status"] == "pending" for r in rows)

    if test_ids:
        live_fragment(_test_result, pending=lambda: any(r["status"] == "pending" for r in _test_rows()),
                      key="alert_test", every=2)

with tab_log:
    st.dataframe(alert_log, hide_index=True, width="stretch",
                 column_order=("created_at", "kind", "target_name", "recipient", "subject", "status", "attempts",
                               "error"))
