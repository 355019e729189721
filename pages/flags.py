"""Flags: a station's flags (filter; an analyst edits, deletes and undeletes them; each with its
audit trail), the suggestions of the quality checks (accepted or dismissed in bulk), and
cleaning logs imported and exported."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from core import auth, cleaning_log, flags, qc, stations, webdata
from pages.common import connection, current_role, current_user, plain, require_role, show_errors, station_picker
from pages.flag_exchange import render as render_exchange

require_role("viewer")
can_edit = auth.allowed(current_role(), "analyst")
actor = current_user() or ""
FROM_RULE = "as each rule implies"
EARLIEST = date(1980, 1, 1)  # the date picker's first day (its default is ten years ago)
#: Times of the tables, in UTC to the minute.
TIMES: dict[str, Any] = {c: st.column_config.DatetimeColumn(c, format="YYYY-MM-DD HH:mm")
                         for c in ("start (UTC)", "end (UTC)", "created", "when (UTC)")}
TIMES["channels"] = st.column_config.TextColumn("channels", width="medium")

title, pick = st.columns([3, 1], vertical_alignment="bottom")
name = station_picker(pick, title="Flags")
title.title(f"Flags · {plain(name)}")

with show_errors(), connection() as conn:
    station = stations.station(conn, name)
    channels = stations.channels(conn, station["id"])
sid = station["id"]
by_column = {c["column_name"]: c["id"] for c in sorted(channels, key=lambda c: c["column_name"])}

for kind, text in st.session_state.pop("flags_messages", []):
    (st.success if kind == "success" else st.error)(plain(text))


def _done(*messages: str) -> None:
    """Show ``messages`` after a fresh run, with the table selections cleared."""
    st.session_state["flags_messages"] = [("success", m) for m in messages]
    st.session_state["flags_table_version"] = st.session_state.get("flags_table_version", 0) + 1
    st.rerun()


def _channels_text(row: dict[str, Any]) -> str:
    return "whole station" if row.get("whole_station") else ", ".join(row["columns"]) or "–"


version = st.session_state.get("flags_table_version", 0)
tab_flags, tab_suggested, tab_exchange = st.tabs(["Flags", "Suggested flags", "Import / export"])

# --- flags ---------------------------------------------------------------------------

with tab_flags:
    f1, f2, f3 = st.columns([2, 3, 2], vertical_alignment="bottom")
    categories = f1.multiselect("Category", flags.CATEGORIES, key=f"flag_categories_{sid}")
    columns = f2.multiselect("Channel", list(by_column), key=f"flag_channels_{sid}")
    f4, f5, _ = st.columns([2, 2, 3], vertical_alignment="center")
    period = f3.date_input("Period (UTC)", value=(), key=f"flag_period_{sid}", min_value=EARLIEST,
                           max_value=date.today() + timedelta(days=3660))
    source = f4.segmented_control("Source", ("manual", "rule"), key=f"flag_source_{sid}",
                                  help="Flags made by people, or accepted from the quality checks; none = both")
    deleted = f5.toggle("Show deleted", key=f"flag_deleted_{sid}")
    start, end = webdata.dates_to_range(period) if period else (None, None)
    with show_errors(), connection() as conn:
        rows = flags.list_flags(conn, sid, start, end, [by_column[c] for c in columns] or None,
                                categories or None, include_deleted=deleted)
    rows = [r for r in rows if source is None or r["source"] == source]
    if not rows:
        st.info("No flags match." if (categories or columns or period or source) else
                "No flags on this station yet. Flag a range on the Station page, accept suggested flags, "
                "or import a cleaning log.")
    else:
        table = pd.DataFrame([{
            "id": r["id"], "start (UTC)": r["start_time"], "end (UTC)": r["end_time"], "category": r["category"],
            "note": r["note"], "channels": _channels_text(r), "source": r["source"], "rule": r["rule"] or "",
            "author": r["author"], "created": r["created_at"],
            "deleted": f"{r['deleted_by']} {webdata.format_time(r['deleted_at'])}" if r["deleted_at"] else "",
        } for r in rows])
        event = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", column_config=TIMES,
                             selection_mode="multi-row", key=f"flags_table_{sid}_{version}")
        picked = [rows[i] for i in event.selection.rows]
        st.caption(f"{len(rows)} flag{'s' if len(rows) != 1 else ''}. Select rows to "
                   + ("edit, delete or restore them, and " if can_edit else "") + "see their history.")
        live = [r for r in picked if r["deleted_at"] is None]
        gone = [r for r in picked if r["deleted_at"] is not None]
        if picked and can_edit:
            b1, b2, _ = st.columns([1, 1, 4])
            if b1.button(f"Delete {len(live)}", icon=":material/delete:", disabled=not live, key="flags_delete"):
                with show_errors(), connection() as conn, conn.transaction():
                    for r in live:
                        flags.delete_flag(conn, r["id"], actor)
                _done(f"{len(live)} flag{'s' if len(live) != 1 else ''} deleted (kept, and can be restored).")
            if b2.button(f"Undelete {len(gone)}", icon=":material/undo:", disabled=not gone, key="flags_undelete"):
                with show_errors(), connection() as conn, conn.transaction():
                    for r in gone:
                        flags.undelete_flag(conn, r["id"], actor)
                _done(f"{len(gone)} flag{'s' if len(gone) != 1 else ''} restored.")
        if can_edit and len(live) == 1:
            flag = live[0]
            with st.form(f"flag_edit_{flag['id']}"):
                st.markdown(f"**Edit flag {flag['id']}**")
                e1, e2, e3 = st.columns([1, 1, 1])
                category = e1.selectbox("Category", flags.CATEGORIES, index=flags.CATEGORIES.index(flag["category"]))
                new_start = e2.text_input("Start (UTC)", cleaning_log.format_time(flag["start_time"]))
                new_end = e3.text_input("End (UTC, exclusive)", cleaning_log.format_time(flag["end_time"]))
                whole = st.checkbox("Whole station (also channels added later)", value=flag["whole_station"])
                chosen = st.multiselect("Channels", list(by_column), default=[c for c in flag["columns"]
                                                                               if c in by_column])
                note = st.text_area("Note", flag["note"])
                if st.form_submit_button("Save changes", type="primary"):
                    with show_errors(), connection() as conn:
                        s = cleaning_log.parse_time(new_start, "Start")
                        e = cleaning_log.parse_time(new_end, "End")
                        chans = "station" if whole else [by_column[c] for c in chosen]
                        flags.update_flag(conn, flag["id"], actor, category=category, note=note, start=s, end=e,
                                          channel_ids=chans)
                    _done(f"Flag {flag['id']} saved.")
        elif can_edit and len(live) > 1:
            c1, c2, _ = st.columns([1.5, 1, 2], vertical_alignment="bottom")
            category = c1.selectbox("Category of the selected flags", flags.CATEGORIES, key="flags_bulk_category")
            if c2.button(f"Set for {len(live)} flags", key="flags_bulk_set"):
                with show_errors(), connection() as conn, conn.transaction():
                    for r in live:
                        flags.update_flag(conn, r["id"], actor, category=category)
                _done(f"{len(live)} flags set to {category}.")
        if len(picked) == 1:
            with show_errors(), connection() as conn:
                history = flags.flag_history(conn, picked[0]["id"])
            st.markdown(f"**History of flag {picked[0]['id']}**")
            st.dataframe(pd.DataFrame([{
                "when (UTC)": h["at"], "who": h["actor"], "what": h["action"],
                "details": json.dumps(h["details"], ensure_ascii=False),
            } for h in history]), hide_index=True, width="stretch", column_config=TIMES)

# --- suggested flags -----------------------------------------------------------------

with tab_suggested:
    with show_errors(), connection() as conn:
        open_rows = flags.list_suggestions(conn, sid, "open")
    rules = sorted({r["rule"] for r in open_rows})
    s1, s2 = st.columns([3, 2], vertical_alignment="bottom")
    s1.markdown(f"**{len(open_rows)} open suggestion{'s' if len(open_rows) != 1 else ''}** from the quality "
                "checks, waiting for an analyst.")
    shown_rules = s2.multiselect("Rule", rules, key=f"suggestion_rules_{sid}")
    shown = [r for r in open_rows if not shown_rules or r["rule"] in shown_rules]
    if not shown:
        st.info("Nothing to decide." if not open_rows else "No open suggestion of these rules.")
    else:
        table = pd.DataFrame([{
            "id": r["id"], "rule": r["rule"], "channels": ", ".join(r["columns"]) or "all (time axis)",
            "start (UTC)": r["start_time"], "end (UTC)": r["end_time"], "severity": r["severity"],
            "message": r["message"],
        } for r in shown])
        if not can_edit:
            st.dataframe(table, hide_index=True, width="stretch", column_config=TIMES)
            st.caption("Accepting or dismissing suggestions needs the analyst role.")
        else:
            event = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", column_config=TIMES,
                                 selection_mode="multi-row", key=f"suggestions_table_{sid}_{version}")
            every = st.checkbox(f"Select all shown ({len(shown)})", key=f"suggestions_all_{sid}_{version}")
            chosen = shown if every else [shown[i] for i in event.selection.rows]
            a1, a2, a3, _ = st.columns([2.2, 0.9, 0.9, 1.5], vertical_alignment="bottom")
            implied = ", ".join(f"{rule} → {cat}" for rule, cat in flags.RULE_CATEGORY.items())
            category = a1.selectbox("Category of the flags", (FROM_RULE, *flags.CATEGORIES), key="suggestions_category",
                                    help=f"By default each rule's: {implied}; other rules → suspect. "
                                         f"A gap ({qc.RULE_TEXT['gap']}) is acknowledged, not flagged.")
            ids = [r["id"] for r in chosen]
            if a2.button(f"Accept {len(ids)}", type="primary", disabled=not ids, icon=":material/check:",
                         key="suggestions_accept"):
                with show_errors(), connection() as conn:
                    made = flags.accept_suggestions(conn, ids, actor,
                                                    category=None if category == FROM_RULE else category)
                n_flags = sum(1 for f in made.values() if f is not None)
                acknowledged = len(made) - n_flags
                _done(f"{len(made)} suggestion{'s' if len(made) != 1 else ''} accepted: {n_flags} "
                      f"flag{'s' if n_flags != 1 else ''} made"
                      + (f", {acknowledged} gap{'s' if acknowledged != 1 else ''} acknowledged" if acknowledged else "")
                      + f". {len(open_rows) - len(made)} open suggestions left.")
            if a3.button(f"Dismiss {len(ids)}", disabled=not ids, icon=":material/close:", key="suggestions_dismiss"):
                with show_errors(), connection() as conn:
                    n = flags.dismiss_suggestions(conn, ids, actor)
                _done(f"{n} suggestion{'s' if n != 1 else ''} dismissed (not suggested again). "
                      f"{len(open_rows) - n} open suggestions left.")

# --- cleaning logs -------------------------------------------------------------------

with tab_exchange:
    render_exchange(name)
