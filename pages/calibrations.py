"""Calibrations: each measurement point's slope/offset periods, and what recalibration does.

Everyone may read them; an analyst may add, change and delete periods (audited). Exports
recalibrate with these: ``raw = (logged − logger offset) / logger slope``, then
``raw × certificate slope + certificate offset``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from core import auth, calibrations
from core.calibrations import CalibrationError
from pages.common import connection, current_user, plain, require_role, show_errors, station_picker

role = require_role("viewer")
may_edit = auth.allowed(role, "analyst")
user = current_user() or ""
NOTICE = "_calibrations_notice"
CONFIRM = "_calibrations_delete"
SELECT = "_calibrations_select"  # (point id, period id) to show after a rerun
DATETIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", width="medium")
NUMBER = st.column_config.NumberColumn(format="%g")  # calibration values exactly as stored
VALUE = st.column_config.NumberColumn(format="%.4f")
EARLIEST, LATEST = datetime(1980, 1, 1), datetime(2100, 1, 1)

title = st.empty()
if notice := st.session_state.pop(NOTICE, None):
    st.success(plain(notice), icon=":material/check_circle:")

name = station_picker(title="Calibrations", width=360,
                      empty="No stations yet. Import a Task 43 document on the Metadata page, or upload logger files.")
title.title(f"Calibrations · {plain(name)}")

with show_errors(), connection() as conn:
    points = calibrations.list_points(conn, name)
    rows = calibrations.list_calibrations(conn, name)

st.caption("Each period states the slope/offset programmed in the logger and those of the sensor's "
           "calibration certificate. Exports recalibrate averages, minima, maxima and gusts as "
           "(logged − logger offset) / logger slope × certificate slope + certificate offset, and scale "
           "standard deviations by |certificate slope / logger slope|. Times are UTC; a period ends "
           "where the next begins.")
if rows:
    st.dataframe(calibrations.table(rows), hide_index=True, placeholder="open",
                 height=min(36 * (len(rows) + 1) + 16, 600), column_config={
        "valid from": DATETIME, "valid to": DATETIME, "logger slope": NUMBER, "logger offset": NUMBER,
        "certificate slope": NUMBER, "certificate offset": NUMBER, "certificate": st.column_config.TextColumn(
            width="medium"), "id": st.column_config.NumberColumn(format="%d", width="small")})
else:
    st.caption("No calibration periods yet.")
without = [p["name"] for p in points if not p["calibrations"]]
if without:
    st.info(plain(f"No calibration for {', '.join(without)}: their values are exported as logged."),
            icon=":material/info:")
if not points:
    st.stop()

st.subheader("Edit a period" if may_edit else "Effect of a period")
by_point = {p["id"]: p for p in points}
point_id = st.selectbox("Measurement point", list(by_point), format_func=lambda i: by_point[i]["name"],
                        key=f"cal_point_{name}", width=360)
periods = [r for r in rows if r["measurement_point_id"] == point_id]
by_id = {r["id"]: r for r in periods}
choices: list[int | None] = [*by_id, None] if may_edit else list(by_id)
if not choices:
    st.caption("This point has no calibration period.")
    st.stop()
if (pending := st.session_state.pop(SELECT, None)) is not None and pending[0] == point_id:
    st.session_state[f"cal_period_{point_id}"] = pending[1] if pending[1] in choices else choices[0]
chosen = st.selectbox("Period", choices, key=f"cal_period_{point_id}",
                      format_func=lambda i: "New period" if i is None else calibrations.describe(by_id[i]))
row = by_id.get(chosen) if chosen is not None else None


def _preview(period: calibrations.CalPeriod, label: str) -> None:
    """A few logged vs recalibrated values of the point's channels at the start of ``period``."""
    st.markdown(f"**Effect of {label}**")
    with show_errors(), connection() as conn:
        frame = calibrations.preview(conn, point_id, period)
    if frame.empty:
        st.caption("No readings of this point in the period.")
        return
    st.dataframe(frame, hide_index=True, height=min(36 * (len(frame) + 1) + 3, 480), column_config={
        "column_name": "column", "time": DATETIME, "logged": VALUE, "recalibrated": VALUE})


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else t.replace(tzinfo=UTC)


def _naive(t: datetime | None) -> datetime | None:
    return None if t is None else t.astimezone(UTC).replace(tzinfo=None)


if not may_edit:
    if row:
        _preview(calibrations.as_period(row), "this period")
    st.caption("Read-only: an analyst can add, change and delete calibration periods.")
    st.stop()

base = row or (periods[-1] if periods else {})
with st.form(f"cal_form_{point_id}_{chosen}"):
    st.markdown("**Change this period**" if row else f"**New period for {plain(by_point[point_id]['name'])}**")
    if row and row["source"] == "iea43":
        st.caption("From a Task 43 import: importing the document again restores the document's values.")
    a, b = st.columns(2)
    valid_from = a.datetime_input("Valid from (UTC)", value=_naive(row["valid_from"]) if row else None,
                                  min_value=EARLIEST, max_value=LATEST, step=60, format="YYYY-MM-DD",
                                  help="empty: from the start of the records")
    valid_to = b.datetime_input("Valid to (UTC)", value=_naive(row["valid_to"]) if row else None,
                                min_value=EARLIEST, max_value=LATEST, step=60, format="YYYY-MM-DD",
                                help="exclusive; empty: still in force")
    a, b, c, d = st.columns(4)
    logger_slope = a.number_input("Logger slope", value=float(base.get("logger_slope", 1.0)), format="%g",
                                  step=0.0001, help="as programmed in the logger")
    logger_offset = b.number_input("Logger offset", value=float(base.get("logger_offset", 0.0)), format="%g",
                                   step=0.001)
    cal_slope = c.number_input("Certificate slope", value=float(base.get("cal_slope", 1.0)), format="%g",
                               step=0.0001, help="from the sensor's calibration certificate")
    cal_offset = d.number_input("Certificate offset", value=float(base.get("cal_offset", 0.0)), format="%g",
                                step=0.001)
    certificate = st.text_input("Certificate", value=base.get("certificate") or "",
                                help="laboratory, report number, date, sensor serial")
    a, b = st.columns([1, 5])
    save = a.form_submit_button("Save", type="primary", icon=":material/save:")
    try_it = b.form_submit_button("Preview", icon=":material/visibility:")

fields = dict(valid_from=_utc(valid_from), valid_to=_utc(valid_to), logger_slope=logger_slope,
              logger_offset=logger_offset, cal_slope=cal_slope, cal_offset=cal_offset, certificate=certificate)
if save:
    with show_errors(), connection() as conn:
        if row:
            new = calibrations.update_calibration(conn, row["id"], user, **fields)
        else:
            new = calibrations.add_calibration(conn, point_id, actor=user, **fields)
    st.session_state[NOTICE] = f"Saved calibration {calibrations.describe(new)} of {new['point']}."
    st.session_state[SELECT] = (point_id, new["id"])
    st.rerun()
if try_it:
    with show_errors():
        try:
            checked = calibrations.check_period(fields)
        except CalibrationError as exc:
            st.error(plain(str(exc)), icon=":material/error:")
            st.stop()
    _preview(calibrations.CalPeriod(None, **checked, source="manual"), "the values above (not saved)")
elif row:
    _preview(calibrations.as_period(row), "this period")

if row:
    if st.session_state.get(CONFIRM) != row["id"]:
        if st.button("Delete this period", icon=":material/delete:"):
            st.session_state[CONFIRM] = row["id"]
            st.rerun()
    else:
        st.warning(plain(f"Delete calibration {calibrations.describe(row)} of {row['point']}? Its values stay in "
                         "the audit log; exports then pass this period's values through as logged."),
                   icon=":material/warning:")
        a, b = st.columns([1, 5])
        if a.button("Yes, delete", type="primary"):
            with show_errors(), connection() as conn:
                calibrations.delete_calibration(conn, row["id"], user)
            st.session_state.pop(CONFIRM, None)
            st.session_state[SELECT] = (point_id, -1)  # the first period left
            st.session_state[NOTICE] = f"Deleted calibration #{row['id']} of {row['point']}."
            st.rerun()
        if b.button("Cancel"):
            st.session_state.pop(CONFIRM, None)
            st.rerun()
