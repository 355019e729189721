"""StationManager web app: sign-in, then the pages the user's role allows.

Run it with ``stationmanager up`` (database, worker and this app) or
``streamlit run app.py``. Each page checks the role again itself (``require_role``):
a page left out of the navigation can still be reached by its URL. Every run first checks
the signed-in user against the user file and the sign-in session in the database
(``check_signed_in``; see docs/security.md, "Sign-in, sessions and roles").
"""

from __future__ import annotations

import streamlit as st
from streamlit_authenticator.utilities import LoginError

from core import auth
from pages.common import (AFTER_SIGN_IN, CHECKED, SIGNED_OUT, check_signed_in, current_role, current_user, end_session,
                          plain, set_sign_in_cookie, show_errors, sign_in_widgets, storage_level, users_config)

st.set_page_config(page_title="StationManager", page_icon=":material/air:", layout="wide")

#: (script, title, icon, role needed); the first is the landing page.
PAGES = (
    ("pages/overview.py", "Overview", ":material/dashboard:", "viewer"),
    ("pages/station.py", "Station", ":material/show_chart:", "viewer"),
    ("pages/flags.py", "Flags", ":material/flag:", "viewer"),
    ("pages/upload.py", "Upload", ":material/upload:", "analyst"),
    ("pages/files.py", "Files", ":material/folder_open:", "viewer"),
    ("pages/sources.py", "Sources", ":material/cloud_sync:", "viewer"),
    ("pages/metadata.py", "Metadata", ":material/sensors:", "viewer"),
    ("pages/calibrations.py", "Calibrations", ":material/tune:", "viewer"),
    ("pages/exports.py", "Exports", ":material/file_export:", "viewer"),
    ("pages/explore.py", "Explore", ":material/query_stats:", "viewer"),
    ("pages/admin.py", "Admin", ":material/admin_panel_settings:", "admin"),
)


def pages_for(role: str | None) -> list[st.Page]:
    """Every page, hidden from the navigation when the role may not use it."""
    return [
        st.Page(path, title=title, icon=icon, default=(i == 0),
                visibility="visible" if auth.allowed(role, needed) else "hidden")
        for i, (path, title, icon, needed) in enumerate(PAGES)
    ]


# Every run: a user removed, demoted, logged out elsewhere or idle too long is seen now,
# before the role decides the pages (pages.common.check_signed_in).
check_signed_in()
# Register the pages first: a rerun (the cookie component triggers one) that interrupts
# this run before st.navigation would lose the page asked for in the URL.
role = current_role()
page = st.navigation(pages_for(role), position="sidebar" if role else "hidden")

config = users_config()
authenticator = sign_in_widgets(config)

if role is None:
    if st.session_state.pop("_delete_auth_cookie", False):
        authenticator.cookie_controller.delete_cookie()
    with st.columns([1, 2, 1])[1]:
        st.title("StationManager")
        st.caption("Met-mast data for wind-energy analysts. Please sign in.")
        if not config["credentials"]["usernames"]:
            st.info("No users yet. Create one with `stationmanager users add NAME --role admin`.")
        if st.session_state.get(SIGNED_OUT):
            st.info(st.session_state[SIGNED_OUT], icon=":material/logout:")
        try:
            with show_errors():
                authenticator.login(location="main")
        except LoginError as exc:
            st.error(plain(str(exc)))
        if st.session_state.get("authentication_status"):
            check_signed_in()  # signed in from the cookie: its session may have ended
            if not st.session_state.get("authentication_status"):
                st.rerun()  # the login form, with why; a link opened before is kept
        if st.session_state.get("authentication_status"):
            # Signed in just now: draw the app without the login form, and set the
            # remember-me cookie in that run (a component dropped by st.rerun never runs).
            st.session_state["_set_auth_cookie"] = True
            wanted = st.session_state.pop(AFTER_SIGN_IN, None)  # a link opened before signing in
            if wanted and wanted[0] in {path for path, *_ in PAGES}:
                st.switch_page(wanted[0], query_params=wanted[1])
            st.rerun()
        if st.session_state.get("authentication_status") is False:
            st.error("Username or password is incorrect")
    st.stop()

with show_errors():  # on the page, not in the sidebar: "the database is not answering" belongs there
    level, level_name = storage_level()
with st.sidebar:
    st.markdown(f"**{plain(current_user())}** · {role}")
    authenticator.logout("Log out", location="sidebar", key="logout_button", callback=end_session)
    if not st.session_state.get("authentication_status"):
        st.session_state["_delete_auth_cookie"] = True
        st.rerun()
    st.caption(f"Storage level {level}", help=level_name)
    if st.session_state.pop("_set_auth_cookie", False):
        # last in the sidebar, so it shifts no element of the page between runs
        set_sign_in_cookie(authenticator, config)
st.session_state[CHECKED] = True  # the page's require_role need not check again
page.run()
