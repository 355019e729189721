"""Sources: where logger files wait, each one's runs and sync health; admins define, test,
run and test (both queued to the worker) and trust them.

Everyone signed in sees every source (its URL never holds a password), its last run and the
chart of its runs. Only admins see the controls, and ``core.source_admin`` checks the role
again. Credentials are chosen by name; their values are never read here except to say
whether a name resolves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from core import auth, credentials, exports, remote, source_admin, sources, sync_health
from core.errors import StationManagerError
from core.settings import get_settings
from pages.common import connection, current_user, live, notify, plain, require_role, show_errors, show_notice

NOTICE = "_sources_notice"
TESTED = "_sources_tested"
AFTER = ("keep", "move", "delete")

role = require_role("viewer")
admin = auth.allowed(role, "admin")
settings = get_settings()
st.title("Sources")
st.caption("Where logger files wait. The worker fetches each enabled source on its schedule "
           "and receives its new files like the inbox's.")
show_notice(NOTICE)


def _health() -> list[dict[str, Any]]:
    with show_errors(), connection() as conn:
        return sync_health.sources(conn)


def _credentials() -> dict[str, str]:
    try:
        return credentials.names(settings.secrets_file)
    except StationManagerError as exc:
        st.error(plain(str(exc)), icon=":material/key:")
        return {}


def _table(rows: list[dict[str, Any]], now: datetime) -> pd.DataFrame:
    return pd.DataFrame([{
        "source": r["name"], "kind": r["kind"], "URL": r["url"], "station": r["station"] or "(by folder or header)",
        "every": f"{r['every_minutes']} min", "enabled": r["enabled"],
        "credentials": (r["credentials"] or "–") + (" (missing)" if credentials.resolves(
            r["credentials"], settings.secrets_file) else ""),
        "last run": sync_health.when(r["last_run_at"], now) if r["last_run_at"] else "never",
        "status": ("running" if r["pending"] else r["last_status"] or "–"),
        "counts": sync_health.counts(r) if r["last_status"] else "", "error": r["last_error_class"] or "",
        "failed in a row": r["failed_runs"] or 0,
        "next run": sync_health.next_run_text(r["next_due"], now),
        "health": r["reason"] or ("stopped: " + r["blocked"] if r["blocked"] else "ok"),
    } for r in rows])


def _overview() -> bool:
    """The table of sources; True while a run is queued or running (it then refreshes)."""
    rows, now = _health(), datetime.now(UTC)
    if not rows:
        st.info("No sources yet." + (" Add one below." if admin else " An admin adds them."))
        return False
    st.dataframe(_table(rows, now), hide_index=True, width="stretch", key="sources_table")
    picked = next((r for r in rows if r["name"] == st.session_state.get("source_pick")), None)
    if picked is not None:
        st.markdown(f"**{plain(picked['name'])}** · {plain(sync_health.last_run_text(picked, now))}")
    busy = [r["name"] for r in rows if r["pending"]]
    if busy:
        st.caption(f":material/autorenew: Running or queued: {plain(', '.join(busy))}; "
                   "this refreshes every 2 s.")
        with show_errors(), connection() as conn:
            alive = exports.worker_alive(conn)
        if not alive:
            st.warning("No worker is running, so no source is fetched: start one with `stationmanager worker` "
                       "(or `stationmanager up`).", icon=":material/warning:")
    return bool(busy)


live(_overview, pending=lambda: any(r["pending"] for r in _health()), key="sources_live", every=2)

names = _credentials()
with st.expander("Credentials names", icon=":material/key:"):
    st.caption(f"Sections of {plain(settings.secrets_file)} (mode 0600) and `STATIONMANAGER_SECRET_<NAME>_USERNAME` "
               "/ `_PASSWORD` variables. Values are never shown.")
    if names:
        st.dataframe(pd.DataFrame({"name": list(names), "from": list(names.values())}), hide_index=True)
    else:
        st.text("none yet")


# --- one source ------------------------------------------------------------------------------

rows = {r["name"]: r for r in _health()}
chosen = st.selectbox("Source", list(rows), index=None, key="source_pick", placeholder="Choose a source") \
    if rows else None


def _form(prefix: str, old: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fields of a source; None until submitted."""
    old = old or {}
    with st.form(f"{prefix}_form"):
        a, b = st.columns(2)
        form = {
            "name": a.text_input("Name", value=old.get("name", ""), key=f"{prefix}_name"),
            "kind": b.selectbox("Kind", sources.KINDS, index=sources.KINDS.index(old.get("kind", "sftp")),
                                key=f"{prefix}_kind"),
            "url": st.text_input("URL", value=old.get("url", ""), key=f"{prefix}_url",
                                 help="sftp://user@host:22/folder, ftp://…, https://…/listing/, s3://bucket/prefix, "
                                      "or a folder path. Never a password: choose credentials below."),
        }
        c, d = st.columns(2)
        known = [""] + list(names)
        current = old.get("credentials") or ""
        form["credentials"] = c.selectbox(
            "Credentials", known + ([current] if current not in known else []),
            index=(known + [current]).index(current), key=f"{prefix}_credentials",
            format_func=lambda n: n or "(none)", help="A name from the secrets file or the environment.")
        form["station"] = d.text_input("Station", value=old.get("station") or "", key=f"{prefix}_station",
                                       help="Empty: each file goes to the station of its first folder, "
                                            "else of its header.")
        e, f, g = st.columns(3)
        form["include"] = e.text_input("Include", value=", ".join(old.get("include") or ["*"]),
                                       key=f"{prefix}_include")
        form["exclude"] = f.text_input("Exclude", value=", ".join(old.get("exclude") or []),
                                       key=f"{prefix}_exclude")
        form["every_minutes"] = g.number_input("Every (minutes)", min_value=1, value=old.get("every_minutes", 60),
                                               key=f"{prefix}_every")
        h, i, j = st.columns(3)
        form["after_fetch"] = h.selectbox("After fetching", AFTER, index=AFTER.index(old.get("after_fetch", "keep")),
                                          key=f"{prefix}_after")
        form["move_to"] = i.text_input("Move to folder", value=old.get("move_to") or "", key=f"{prefix}_move_to")
        form["enabled"] = j.checkbox("Enabled", value=old.get("enabled", True), key=f"{prefix}_enabled")
        if not st.form_submit_button("Save source" if old else "Add source"):
            return None
    if old and not form["station"]:
        form["station"] = None  # edit: an empty station clears it
    return form


def _act(action, message: str) -> None:
    """Run an admin action; its error is shown where it was asked, the page goes on."""
    try:
        with connection() as conn:
            action(conn)
    except StationManagerError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return
    st.session_state.pop(TESTED, None)  # an earlier test's result no longer holds
    notify(message, NOTICE)  # shown as plain text (show_notice)
    st.rerun()


def _test_result(name: str, job_id: int) -> dict | None:
    with show_errors(), connection() as conn:
        return source_admin.test_result(conn, role, name, job_id)


def _tested(name: str) -> None:
    """The result of the test queued for ``name``, drawn live until the worker reports it."""
    queued = st.session_state.get(TESTED)
    if not queued or queued[0] != name:
        return

    def render() -> bool:
        r = _test_result(name, queued[1])
        if r is None:
            st.info("Testing: waiting for the worker…", icon=":material/hourglass_top:")
            with show_errors(), connection() as conn:
                alive = exports.worker_alive(conn)
            if not alive:
                st.warning("No worker is running, so the test waits: start one with `stationmanager worker` "
                           "(or `stationmanager up`).", icon=":material/warning:")
            return True
        if r["ok"]:
            st.success(f"Connected: {r['files']} file(s) match of {r['listed']} listed.", icon=":material/lan:")
        else:
            st.error(plain(f"Test failed ({r['error_class']}): {r['error']}"), icon=":material/error:")
        return False

    live(render, pending=lambda: _test_result(name, queued[1]) is None, key="source_test_live", every=2)


def _host_key(src: dict[str, Any]) -> None:
    if not src["pending_host_key"]:
        return
    fp = remote.fingerprint(src["pending_host_key"])
    kind = src["pending_host_key"].split()[0]
    st.warning(f"The server offers the host key **{kind} {fp}**"
               + (f" instead of {remote.fingerprint(src['host_key'])}, accepted before" if src["host_key"] else "")
               + ". Check it with the server's owner before accepting.", icon=":material/key:")
    if st.button("Accept host key", key="source_accept_key"):
        _act(lambda conn: source_admin.accept_host_key(conn, current_user(), role, src["name"], fp),
             f"{src['name']}: host key {fp} accepted")


def _admin_controls(src: dict[str, Any]) -> None:
    name = src["name"]
    test, sync, toggle, _ = st.columns([1, 1, 1, 3])
    if test.button("Test", key="source_test", icon=":material/lan:",
                   help="The worker connects and lists, nothing else"):
        try:
            with connection() as conn:
                st.session_state[TESTED] = (name, source_admin.queue_test(conn, current_user(), role, name))
        except StationManagerError as exc:
            st.error(plain(str(exc)), icon=":material/error:")
    if sync.button("Sync now", key="source_sync", icon=":material/sync:", help="Queue a run for the worker"):
        _act(lambda conn: source_admin.queue_sync(conn, current_user(), role, name), f"{name}: run queued")
    label = "Disable" if src["enabled"] else "Enable"
    if toggle.button(label, key="source_toggle"):
        _act(lambda conn: source_admin.set_enabled(conn, current_user(), role, name, not src["enabled"]),
             f"{name}: {label.lower()}d")
    _tested(name)
    _host_key(src)
    with st.expander("Edit", icon=":material/edit:"):
        with show_errors(), connection() as conn:
            full = sources.get_source(conn, name)
        form = _form(f"edit_{src['id']}", full)
        if form is not None:
            _act(lambda conn: source_admin.edit(conn, current_user(), role, name, form), f"{form['name']}: saved")
    with st.expander("Remove", icon=":material/delete:"):
        st.caption("Forgets the source and its runs; the files it brought stay.")
        if st.checkbox(f"Yes, remove {plain(name)}", key="source_remove_sure") and st.button("Remove", key="source_remove"):
            st.session_state.pop("source_pick", None)
            _act(lambda conn: source_admin.remove(conn, current_user(), role, name), f"{name}: removed")


if chosen is not None:
    src = rows[chosen]
    st.subheader(plain(chosen))
    missing = credentials.resolves(src["credentials"], settings.secrets_file)
    if missing:
        st.warning(plain(missing), icon=":material/key:")
    if src["reason"]:
        st.markdown(f":red-badge[{plain(src['reason'])}]")
    if admin:
        _admin_controls(src)
    with show_errors(), connection() as conn:
        runs = sources.runs(conn, chosen, limit=200)
    if runs:
        st.plotly_chart(sync_health.runs_chart(runs, chosen), key="source_runs_chart")
        st.dataframe(pd.DataFrame([{
            "started": r["started_at"], "trigger": r["trigger"], "status": r["status"],
            "seconds": round(float(r["duration_s"] or 0), 1), "listed": r["n_listed"], "fetched": r["n_fetched"],
            "waiting": r["n_waiting"], "failed": r["n_failed"], "bytes": r["bytes"], "error": r["error"] or ""}
            for r in runs]), hide_index=True, key="source_runs_table")
    else:
        st.caption("No run yet.")

if admin:
    with st.expander("Add a source", icon=":material/add:", expanded=not rows):
        form = _form("add", None)
        if form is not None:
            _act(lambda conn: source_admin.add(conn, current_user(), role, form), f"{form['name']}: added")
