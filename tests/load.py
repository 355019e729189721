"""Helpers of the load checks (``tests/integration/test_load.py``, ``tests/e2e/test_load.py``,
``benchmarks/load.py``): the server's connections sampled while a load runs, API readers
streaming a station's readings, and browser sessions timing a station chart until drawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote_plus, urlsplit

import psycopg
import requests
from playwright.async_api import TimeoutError as PlaywrightTimeout

#: The readings of a station, streamed as Parquet (the API's route; query parameters added).
READINGS = "/api/v1/readings"
#: A drawn line of the station page's Plotly chart.
CHART_LINE = ".js-plotly-plot g.trace.scatter path.js-line"
#: A drawn line of the chart of one station (``id``): the page's chart is keyed by the station.
CHART_KEYED = ".st-key-chart_{id} " + CHART_LINE
#: Streamlit has stopped running the page's script and stayed idle for ``arg`` ms (a
#: ``wait_for_function`` condition; ``tests.e2e.conftest.settle``).
SETTLED_JS = """(quiet) => {
    const app = document.querySelector('[data-testid="stApp"]');
    const now = performance.now();
    if (!app || app.dataset.testScriptState !== 'notRunning') { window.__smBusy = now; return false; }
    if (window.__smBusy === undefined) window.__smBusy = now;
    return now - window.__smBusy >= quiet;
}"""
#: What Streamlit shows for an uncaught exception, and for ``st.error`` (the pages' errors).
PAGE_ERRORS = "[data-testid=stException], [data-testid=stAlertContentError]"


class ConnectionSampler:
    """Counts the server's connections to one database every ``every_s`` seconds, in a
    thread, until stopped (``with ConnectionSampler(url, db) as s: …; s.peak``). Its own
    connection is not counted."""

    def __init__(self, admin_url: str, datname: str, every_s: float = 0.5) -> None:
        self.admin_url, self.datname, self.every_s = admin_url, datname, every_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connection-sampler", daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while True:
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                 "AND pid <> pg_backend_pid()", (self.datname,)).fetchone()[0]
                self.samples.append(n)
                if self._stop.wait(self.every_s):
                    return

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class Outcomes:
    """What concurrent clients saw: durations of what went well, and errors (thread-safe)."""

    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float) -> None:
        with self._lock:
            self.seconds.append(seconds)

    def error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)


def read_readings(api_url: str, token: str, station: str, outcomes: Outcomes, times: int = 1, *,
                  timeout_s: float = 120) -> None:
    """Stream the whole station's readings as Parquet ``times`` times, one after another; each
    answer's duration in ``outcomes``, or its status and message as an error."""
    for _ in range(times):
        t0 = time.monotonic()
        try:
            with requests.get(api_url + READINGS, params={"station": station, "format": "parquet"},
                              headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=timeout_s) as r:
                size = sum(len(chunk) for chunk in r.iter_content(1 << 16))
                if r.status_code != 200 or not size:
                    outcomes.error(f"readings: HTTP {r.status_code}, {size} bytes: {r.text[:300] if size < 4096 else ''}")
                    continue
        except requests.RequestException as exc:
            outcomes.error(f"readings: {exc}")
            continue
        outcomes.ok(time.monotonic() - t0)


def in_threads(target: Callable[..., None], args: list[tuple]) -> list[threading.Thread]:
    """Start one thread per argument tuple; returns them (join them)."""
    threads = [threading.Thread(target=target, args=a, daemon=True) for a in args]
    for t in threads:
        t.start()
    return threads


@dataclass
class Browsing:
    """What browser sessions saw: page times (seconds) by page, and errors.

    ``first`` is each session's first full load, from ``page.goto`` of the app until its
    landing page (the Overview) is drawn once signed in, of which ``sign_in`` from the click on
    "Login". In-app (not ``reload``), a session's first Station view also fetches and compiles
    plotly's script: it is kept apart in ``station_first``, the later ones in ``station``.
    ``clicked_again`` counts views whose first click was lost (clicked once more).
    """

    station: Outcomes = field(default_factory=Outcomes)
    overview: Outcomes = field(default_factory=Outcomes)
    station_first: Outcomes = field(default_factory=Outcomes)
    first: Outcomes = field(default_factory=Outcomes)
    sign_in: Outcomes = field(default_factory=Outcomes)
    clicked_again: int = 0
    errors: list[str] = field(default_factory=list)


#: Chromium as the e2e tests launch it (Debian's; Playwright's own download is not used).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: The Overview drawn: its station cards, and no station chart left from the page before.
OVERVIEW_DRAWN = """() => document.querySelector('[data-testid=stMain] [data-testid=stMetric]')
    && !document.querySelector('[data-testid=stMain] .js-plotly-plot')"""


def browse(app_url: str, users: list[tuple[str, str]], stations: dict[str, int], *, sessions: int,
           loads: int | None = None, seconds: float | None = None, overview: bool = True, reload: bool = False,
           signed_in: Callable[[], None] | None = None, timeout_ms: int = 90_000) -> Browsing:
    """``sessions`` browser sessions at once (one Chromium, a context each), signed in as
    ``users`` (user, password) in turn, each viewing in turn the Overview (with ``overview``)
    and the Station page of each of ``stations`` (name → id: the id keys the page's chart),
    ``loads`` times or for ``seconds``, counted once every session has signed in (then
    ``signed_in()`` is called: start the rest of the load there).

    A session signs in with one full load of the app, then moves between the views inside
    the app as a user does: the Overview by the sidebar, a station from the Overview by its
    card's link and from another station by the station selector; Streamlit then reruns only
    the page's script. With ``reload``, every view is a full page load (``page.goto`` of its
    URL) instead. A view's time runs from the click (or the request) until its content is
    drawn: the Overview's station cards once no station chart is left, a drawn line of the
    chosen station's chart (``.st-key-chart_<id>``, so that the chart of the station before
    cannot count). Errors the pages show are collected.

    Many sessions may share one user: its sign-ins at once take turns (:mod:`core.signin`),
    as many checked at once as ``STATIONMANAGER_SIGN_IN_MAX_FAILURES``.
    """
    views = len(stations) + overview
    if not reload and views < 2 and loads != 1:
        raise ValueError("browsing inside the app needs two views to move between (or loads=1)")
    return asyncio.run(_browse(app_url, users, stations, sessions, loads, seconds, overview, reload, signed_in,
                               timeout_ms))


async def _browse(app_url: str, users: list[tuple[str, str]], stations: dict[str, int], sessions: int,
                  loads: int | None, seconds: float | None, overview: bool, reload: bool,
                  signed_in: Callable[[], None] | None, timeout_ms: int) -> Browsing:
    from playwright.async_api import async_playwright

    seen = Browsing()
    ready, until = asyncio.Barrier(sessions), []

    async def all_signed_in() -> float | None:
        if await ready.wait() == 0:  # one session (the barrier's first) starts the load
            if signed_in is not None:
                signed_in()
            until.append(None if seconds is None else time.monotonic() + seconds)
        await ready.wait()
        return until[0]

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await asyncio.gather(*(
                _session(browser, app_url, *users[i % len(users)], stations, i, loads, all_signed_in, overview,
                         reload, timeout_ms, seen)
                for i in range(sessions)))
        finally:
            await browser.close()
    return seen


async def _sign_in(page, app_url: str, user: str, password: str, timeout_ms: int, seen: Browsing) -> None:
    """The first full load: the app, its sign-in form, then the Overview drawn once signed in;
    waits until Streamlit has stopped rerunning (the remember-me cookie's rerun can drop a click)."""
    t0 = time.monotonic()
    await page.goto(app_url)
    for attempt in range(3):  # on a loaded machine a click can land before the page listens
        await page.get_by_role("textbox", name="Username").fill(user)
        await page.get_by_role("textbox", name="Password").fill(password)
        clicked = time.monotonic()
        await page.get_by_role("button", name="Login").click()
        try:
            await page.wait_for_function("() => document.cookie.includes('stationmanager_auth=')",
                                         timeout=timeout_ms // 2)
            break
        except PlaywrightTimeout:
            if attempt == 2 or not await page.get_by_role("button", name="Login").is_visible():
                raise
    await page.wait_for_function(OVERVIEW_DRAWN, polling=50)
    seen.sign_in.ok(time.monotonic() - clicked)
    seen.first.ok(time.monotonic() - t0)
    await page.evaluate("() => { window.__smBusy = undefined; }")  # idle is counted from now
    await page.wait_for_function(SETTLED_JS, arg=750, polling=100)


async def _in_app(page, kind: str, name: str | None, shown: tuple[str, str | None], drawn,
                  timeout_ms: int) -> int:
    """Move to the view (``kind``, station ``name``) from the one ``shown`` by the app's own
    controls and wait until ``drawn(timeout)``. A click can be lost while the page reruns (the
    same happens to a person, who clicks again): when the view is not drawn yet and the app is
    idle, click again, twice at most. Returns how many clicks were lost."""
    async def click() -> None:
        if kind == "overview":
            await page.get_by_test_id("stSidebarNav").get_by_role("link", name="Overview", exact=True).click()
        elif shown[0] == "station":  # the station selector
            await page.get_by_role("combobox", name="Station").click()
            await page.get_by_role("option", name=name, exact=True).click()
        else:  # the station's card on the Overview
            await page.get_by_test_id("stMain").get_by_role("link", name=name, exact=True).click()

    def arrived() -> bool:  # the app took the click: its URL names the view
        url = urlsplit(page.url)
        if kind == "overview":
            return url.path.rstrip("/") == ""
        return url.path.endswith("/station") and parse_qs(url.query).get("station") == [name]

    deadline, lost = time.monotonic() + timeout_ms / 1000, 0
    await click()
    while True:
        left = deadline - time.monotonic()
        try:
            await drawn(max(1.0, min(left, 15.0)) * 1000)
            return lost
        except PlaywrightTimeout:
            if left <= 15.0:
                raise
        # not drawn yet: slow (the browser may still be drawing after the script ended), or lost
        state = await page.locator("[data-testid=stApp]").get_attribute("data-test-script-state")
        if state != "running" and not arrived() and lost < 2:
            lost += 1
            await click()


async def _session(browser, app_url: str, user: str, password: str, stations: dict[str, int], i: int,
                   loads: int | None, all_signed_in, overview: bool, reload: bool, timeout_ms: int,
                   seen: Browsing) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(timeout_ms)
    page = await context.new_page()
    targets: list[tuple[str, str | None]] = ([("overview", None)] if overview else []) + [
        ("station", s) for s in stations]
    step = i  # the sessions start at different pages
    signed, shown, charted = False, ("overview", None), False
    try:
        await _sign_in(page, app_url, user, password, timeout_ms, seen)
        signed = True
        until = await all_signed_in()
        done = 0
        while (loads is None or done < loads) and (until is None or time.monotonic() < until):
            kind, name = targets[step % len(targets)]
            step += 1
            if (kind, name) == shown and not reload:
                continue  # already there (the Overview, after signing in)
            done += 1
            chart = CHART_KEYED.format(id=stations[name]) if kind == "station" else ""

            async def drawn(timeout: float | None, kind=kind, chart=chart) -> None:
                if kind == "station":
                    await page.locator(chart).first.wait_for(state="visible", timeout=timeout)
                else:
                    await page.wait_for_function(OVERVIEW_DRAWN, polling=50, timeout=timeout)

            t0 = time.monotonic()
            if reload:
                await page.goto(app_url if kind == "overview" else f"{app_url}/station?station={quote_plus(name)}")
                await drawn(None)
            else:
                seen.clicked_again += await _in_app(page, kind, name, shown, drawn, timeout_ms)
            took = time.monotonic() - t0
            if kind == "overview":
                seen.overview.ok(took)
            else:
                (seen.station if reload or charted else seen.station_first).ok(took)
                charted = True
            shown = (kind, name)
            seen.errors.extend(f"{kind} page: {t.strip()[:300]}"
                               for t in await page.locator(PAGE_ERRORS).all_inner_texts())
    except Exception as exc:  # noqa: BLE001 - a session's failure is a finding, reported with the others
        text = ""
        with contextlib.suppress(Exception):
            text = " ".join((await page.locator("[data-testid=stMain]").inner_text(timeout=2_000)).split())[:200]
        seen.errors.append(f"session {i} at {page.url}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]} "
                           f"(the page showed: {text!r})")
        if not signed:
            await all_signed_in()  # the others do not wait for this one
    finally:
        await context.close()


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([1.0, 2.0, 3.0, 4.0], 95)
    (2.0, 4.0)
    """
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]
