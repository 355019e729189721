"""What every page shares: the signed-in role, the pooled database connection, error display.

Pages import it as ``from pages.common import ...`` (``streamlit run app.py`` puts the
folder of ``app.py`` on ``sys.path``). Nothing here holds business logic: that is in
``core``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import psycopg_pool
import streamlit as st

from core import auth, db, demo_home, schema
from core.errors import DatabaseError, DatabaseUnavailable, StationManagerError
from core.settings import get_settings

# --- errors --------------------------------------------------------------------------


@contextlib.contextmanager
def show_errors() -> Iterator[None]:
    """``with show_errors():`` — a :class:`StationManagerError` becomes ``st.error`` and stops the page.

    Other exceptions are bugs and propagate (Streamlit shows the traceback).
    """
    try:
        yield
    except StationManagerError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()


# --- live status ---------------------------------------------------------------------


NOTICE_SECONDS = 15.0  # how long a notice outlives the rerun that set it


def notify(text: str, key: str = "_notice") -> None:
    """Keep ``text`` to show as a success message by :func:`show_notice` on the next runs."""
    st.session_state[key] = (text, time.monotonic())


def show_notice(key: str = "_notice") -> None:
    """Show the notice :func:`notify` kept, on every run for ``NOTICE_SECONDS``: a rerun that
    the user did not ask for (the sign-in cookie's, another widget's) must not swallow it."""
    kept = st.session_state.get(key)
    if kept is None:
        return
    text, at = kept
    if time.monotonic() - at > NOTICE_SECONDS:
        del st.session_state[key]
        return
    st.success(text, icon=":material/check_circle:")


def live(render: Callable[[], bool], *, pending: Callable[[], bool], key: str, every: float) -> None:
    """Draw ``render()`` in a fragment that redraws itself every ``every`` seconds while the
    worker has something to do (``pending()``), and stops polling once ``render()`` (which
    returns what ``pending()`` would) says it is done.

    Streamlit fixes a fragment's ``run_every`` when the page runs, so ``pending()`` is asked
    first; when the work is done the page reruns once, which stops the timer and redraws the
    rest of the page with the new state.
    """
    busy = f"_live_{key}"
    st.session_state[busy] = bool(pending())

    def body() -> None:
        now = bool(render())
        if now != st.session_state.get(busy):  # finished (or, rarely, new work since pending())
            st.session_state[busy] = now
            st.rerun()

    st.fragment(body, run_every=every if st.session_state[busy] else None, key=key)()


# --- who is signed in ----------------------------------------------------------------


def current_user() -> str | None:
    """The signed-in user name (set by streamlit-authenticator), or None."""
    if not st.session_state.get("authentication_status"):
        return None
    return st.session_state.get("username")


def current_role() -> str | None:
    """The signed-in user's role, or None when nobody is signed in."""
    if current_user() is None:
        return None
    return auth.role_of({"roles": st.session_state.get("roles")})


#: Session key of the (page, query parameters) asked for before signing in.
AFTER_SIGN_IN = "_after_sign_in"


def require_role(needed: str) -> str:
    """Refuse the page (``st.error`` + stop) unless the user has ``needed``; return the role.

    Every page calls this first: hiding a page from the navigation is not protection,
    since anyone can type its URL.
    """
    role = current_role()
    if role is None:
        # app.py runs pages only for signed-in users, so this page was run on its own:
        # until a session has run app.py's st.navigation, Streamlit serves the pages/
        # folder by itself (a fresh server's first deep link). Sign in through app.py,
        # which then opens this page again, with its query parameters.
        page = Path(sys._getframe(1).f_code.co_filename)
        st.session_state[AFTER_SIGN_IN] = (f"pages/{page.name}", st.query_params.to_dict())
        st.switch_page("app.py")
    with show_errors():
        auth.require(role, needed)
    assert role is not None
    return role


# --- database ------------------------------------------------------------------------

#: Seconds between two tries while the database is not answering.
RETRY_S = 2.0


@st.cache_resource(show_spinner=False)
def _database_url(configured: str | None, home: str) -> str:
    # keyed on the settings that decide the URL; starts/joins the embedded server once
    with db.translate():
        return db.database_url(get_settings())


def database_url() -> str:
    """URL of the StationManager database (resolved once per process).

    Refuses (``st.error`` + stop) while the user file still has the demo logins, unless
    the app runs as the demo (``stationmanager up --demo``).
    """
    settings = get_settings()
    with show_errors():
        demo_home.refuse_demo_logins(settings)
    where = db.redact(settings.database_url) if settings.database_url else str(settings.pgdata)
    with _answering(where, lambda: _unresolved(settings)):
        return _database_url(settings.database_url, str(settings.home))


def _unresolved(settings) -> str | None:
    """Why the database URL cannot be resolved (the embedded server cannot be reached), or None."""
    try:
        _database_url(settings.database_url, str(settings.home))
    except DatabaseUnavailable as exc:
        return str(exc)
    return None


@st.cache_resource(show_spinner=False, validate=lambda p: not p.closed)
def _pool(url: str) -> psycopg_pool.ConnectionPool:
    with db.translate():
        return db.pool(url, wait_s=get_settings().connect_timeout_s)


def pool() -> psycopg_pool.ConnectionPool:
    """The app process's one connection pool."""
    return _pool(database_url())


@contextlib.contextmanager
def _connect(url: str) -> Iterator[psycopg.Connection]:
    with db.translate(), _pool(url).connection() as conn:
        yield conn


@contextlib.contextmanager
def connection() -> Iterator[psycopg.Connection]:
    """``with connection() as conn:`` — a pooled connection, database errors translated.

    While the database is not answering, the page says so instead, and runs again by itself
    once it answers (see :func:`_answering`).
    """
    url = database_url()
    with _answering(db.redact(url), lambda: db.probe(url), url=url), _connect(url) as conn:
        yield conn


@contextlib.contextmanager
def _answering(where: str, probe: Callable[[], str | None], *, url: str | None = None) -> Iterator[None]:
    """Let a :class:`DatabaseUnavailable` raised inside through only if the server answers
    (``probe()`` is None: the query failed for another reason, or the pool was busy).
    Otherwise forget the pool and the URL (they may be dead), say on the page that the
    database at ``where`` is not answering and why, try ``probe()`` every ``RETRY_S``
    seconds, and run the page again as soon as it answers. Every try updates the page, so
    a click elsewhere (or closing the tab) ends the wait at once."""
    try:
        yield
    except DatabaseUnavailable as exc:
        reason = probe()
        if reason is None:
            if isinstance(exc.__cause__, psycopg_pool.PoolTimeout):
                raise DatabaseError(
                    f"the database answers, but every connection of the web app stayed busy for "
                    f"{get_settings().connect_timeout_s:g} s; try again in a moment") from exc
            raise
        if url is not None:
            db.discard_pool(url)
        _pool.clear()
        _database_url.clear()
        st.error(f"The database at {where} is not answering (retrying): {reason}", icon=":material/cloud_off:")
        status = st.empty()
        since = time.monotonic()
        while reason is not None:
            status.caption(f"Tried again {time.monotonic() - since:.0f} s after the first failure: {reason}")
            time.sleep(RETRY_S)
            reason = probe()
        st.rerun()


@st.cache_data(ttl=300, show_spinner=False)
def _storage_level(url: str) -> int | None:
    with _connect(url) as conn:
        return schema.stored_level(conn)


def storage_level() -> tuple[int | None, str]:
    """The database's storage level and its name (cached for 5 minutes)."""
    url = database_url()
    with _answering(db.redact(url), lambda: db.probe(url), url=url):
        level = _storage_level(url)
    return level, schema.LEVEL_NAMES.get(level, "not migrated")


# --- the station picker -------------------------------------------------------------------

NO_STATIONS = "No stations yet. Import logger files with `stationmanager ingest FILE --station NAME`."


def station_picker(where=None, *, title: str, empty: str = NO_STATIONS, **selectbox) -> str:
    """The station choice of a page, kept in the ``station`` query parameter so that a link,
    a reload or another page opens the same station. With no station yet, shows ``title``
    and ``empty`` and stops the page. ``where`` is a column or container (default: the page).
    """
    from core import webdata

    with show_errors(), connection() as conn:
        names = webdata.station_names(conn)
    if not names:
        st.title(title)
        st.info(empty)
        st.stop()
    wanted = st.query_params.get("station")
    name = (where or st).selectbox("Station", names, index=names.index(wanted) if wanted in names else 0,
                                   **selectbox)
    st.query_params["station"] = name
    return name
