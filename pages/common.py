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
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import psycopg_pool
import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.utilities import LoginError

from core import auth, db, demo_home, schema, sessions, signin
from core.errors import AccountLocked, DatabaseError, DatabaseUnavailable, SignInBusy, StationManagerError
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
        st.error(plain(str(exc)), icon=":material/error:")  # messages quote names
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
    st.success(plain(text), icon=":material/check_circle:")


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

#: Session keys: the sign-in session's id (core.sessions), why the user was signed out, and
#: "app.py checked this run" (set just before it runs the page).
SESSION = "_sign_in_session"
SIGNED_OUT = "_signed_out_because"
CHECKED = "_signed_in_checked"


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


def users_config() -> dict:
    """The user file, read again only when it changed."""
    with show_errors():
        return auth.load_cached(get_settings().users_file)


def check_signed_in() -> None:
    """On every run, before the role decides anything: sign out a user removed from the user
    file, given a new password, whose session was ended (log out, ``stationmanager users
    logout``) or left idle too long; else take the role the user file gives now.

    A session signed in from the remember-me cookie by streamlit-authenticator takes the
    session id the cookie carries.
    """
    name = current_user()
    if name is None:
        return
    settings = get_settings()
    config = users_config()
    entry = auth.user(config, name)
    sid = st.session_state.get(SESSION) or _cookie_session(config, name)
    with show_errors(), connection() as conn:
        ended = sessions.check(conn, sid, name, entry and auth.password_fingerprint(entry),
                               idle_minutes=settings.session_idle_minutes,
                               max_age_days=float(config["cookie"]["expiry_days"]))
    if ended is not None or entry is None:
        _sign_out(sessions.ended_message(ended or "removed", settings.session_idle_minutes))
        return
    st.session_state[SESSION] = sid
    st.session_state["roles"] = entry.get("roles")


def _cookie_session(config: dict, name: str) -> str | None:
    claims = sessions.read_token(st.context.cookies.get(config["cookie"]["name"]), config["cookie"]["key"])
    return claims.get("sid") if claims and claims.get("username") == name else None


def _sign_out(reason: str) -> None:
    # as streamlit-authenticator's logout leaves the session; 'logout' stops it signing in
    # again from the cookie this session was opened with (st.context.cookies)
    st.session_state["logout"] = True
    for key in ("name", "username", "authentication_status", "email", "roles"):
        st.session_state[key] = None
    st.session_state.pop(SESSION, None)
    st.session_state["_delete_auth_cookie"] = True
    st.session_state[SIGNED_OUT] = reason


def _client() -> str:
    # None when the browser is on this machine (and behind a reverse proxy: the proxy's)
    return st.context.ip_address or "local"


def sign_in_widgets(config: dict) -> stauth.Authenticate:
    """streamlit-authenticator's login and logout widgets, with StationManager's password
    check (core.signin: lock, client delay, equal time for unknown names) and sessions.

    Its own cookie is turned off (an expiry of 0 days): it would be written without the
    session id, without ``Secure``. :func:`set_sign_in_cookie` writes it; its cookie
    sign-in still reads it.
    """
    cookie = config["cookie"]
    widgets = stauth.Authenticate(config["credentials"], cookie["name"], cookie["key"], 0, auto_hash=False)

    def check_credentials(username: str, password: str) -> bool:
        try:
            sid = signin.sign_in(connection, get_settings(), config, username, password, client=_client())
        except (AccountLocked, SignInBusy) as exc:
            raise LoginError(str(exc)) from exc
        if sid is None:
            return False
        st.session_state[SESSION] = sid
        st.session_state.pop(SIGNED_OUT, None)
        return True

    widgets.authentication_controller.authentication_model.check_credentials = check_credentials
    return widgets


def end_session(_details: dict | None = None) -> None:
    """The log-out button's callback: end the session in the database, so that its cookie,
    even copied elsewhere, signs nobody in again."""
    with show_errors(), connection() as conn:
        sessions.end(conn, st.session_state.pop(SESSION, None), "logout")


def set_sign_in_cookie(widgets: stauth.Authenticate, config: dict) -> None:
    """Write the remember-me cookie: SameSite=Strict, Secure when served over TLS. It is set
    from JavaScript (streamlit-authenticator's cookie component), so it cannot be HttpOnly."""
    cookie = config["cookie"]
    days = float(cookie["expiry_days"])
    name, sid = current_user(), st.session_state.get(SESSION)
    if not (name and sid and days > 0):
        return
    secure = sessions.secure_cookie(st.context.url, st.context.headers.get("X-Forwarded-Proto"),
                                    st.get_option("server.sslCertFile"))
    widgets.cookie_controller.cookie_model.cookie_manager.set(
        cookie["name"], sessions.cookie_token(name, sid, cookie["key"], days),
        expires_at=datetime.now() + timedelta(days=days), secure=secure, same_site="strict")


#: Session key of the (page, query parameters) asked for before signing in.
AFTER_SIGN_IN = "_after_sign_in"


def require_role(needed: str) -> str:
    """Refuse the page (``st.error`` + stop) unless the user has ``needed``; return the role.

    Every page calls this first: hiding a page from the navigation is not protection,
    since anyone can type its URL. A page run on its own (see below) checks who is signed in
    itself; run by app.py, that was done at the start of the run.
    """
    if not st.session_state.pop(CHECKED, False):
        check_signed_in()
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
        return db.pool(url, kind="web", wait_s=get_settings().connect_timeout_s)


def pool() -> psycopg_pool.ConnectionPool:
    """The app process's one connection pool."""
    return _pool(database_url())


@contextlib.contextmanager
def _connect(url: str) -> Iterator[psycopg.Connection]:
    with db.pooled(_pool(url)) as conn:
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
                raise DatabaseError(f"the database answers, but {exc}") from exc
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


# --- names shown as plain text -----------------------------------------------------------


def plain(text: object) -> str:
    """``text`` shown literally by an element that renders Markdown (``st.title``, ``st.markdown``,
    ``st.caption``, ``st.error`` …, widget labels and help, tab and expander labels, badges).

    Use it for every string a user or a file provided — station, channel, point, logger and
    file names, notes, user names, and messages that hold them — so that ``![x](http://…)``
    or ``<b>`` in a name shows as typed instead of loading an image or a link. Not for
    elements that show text as it is (``st.text``, ``st.code``, dataframes, select options).
    See :func:`core.webdata.escape_markdown`.
    """
    from core import webdata

    return webdata.escape_markdown("" if text is None else str(text))
