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
from urllib.parse import quote_plus

import psycopg
import requests
from playwright.async_api import TimeoutError as PlaywrightTimeout

#: The readings of a station, streamed as Parquet (the API's route; query parameters added).
READINGS = "/api/v1/readings"
#: A drawn line of the station page's Plotly chart.
CHART_LINE = ".js-plotly-plot g.trace.scatter path.js-line"
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
    """What browser sessions saw: page times (seconds) by page, and errors."""

    station: Outcomes = field(default_factory=Outcomes)
    overview: Outcomes = field(default_factory=Outcomes)
    errors: list[str] = field(default_factory=list)


#: Chromium as the e2e tests launch it (Debian's; Playwright's own download is not used).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def browse(app_url: str, users: list[tuple[str, str]], stations: list[str], *, sessions: int,
           loads: int | None = None, seconds: float | None = None, overview: bool = True,
           signed_in: Callable[[], None] | None = None, timeout_ms: int = 90_000) -> Browsing:
    """``sessions`` browser sessions at once (one Chromium, a context each), signed in as
    ``users`` (user, password) in turn, each
    opening in turn the Overview (with ``overview``) and the Station page of each of
    ``stations``, ``loads`` times or for ``seconds``, counted once every session has signed in
    (then ``signed_in()`` is called: start the rest of the load there). A page's time runs
    from the request until its content is drawn: the station cards of the Overview, a drawn
    line of the station chart. Errors the pages show are collected.

    Many sessions may share one user: its sign-ins at once take turns (:mod:`core.signin`),
    as many checked at once as ``STATIONMANAGER_SIGN_IN_MAX_FAILURES``.
    """
    return asyncio.run(_browse(app_url, users, stations, sessions, loads, seconds, overview, signed_in, timeout_ms))


async def _browse(app_url: str, users: list[tuple[str, str]], stations: list[str], sessions: int,
                  loads: int | None, seconds: float | None, overview: bool,
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
                         timeout_ms, seen)
                for i in range(sessions)))
        finally:
            await browser.close()
    return seen


async def _session(browser, app_url: str, user: str, password: str, stations: list[str], i: int,
                   loads: int | None, all_signed_in, overview: bool, timeout_ms: int, seen: Browsing) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(timeout_ms)
    page = await context.new_page()
    targets = ([("overview", app_url)] if overview else []) + [
        ("station", f"{app_url}/station?station={quote_plus(s)}") for s in stations]
    step = i  # the sessions start at different pages
    signed = False
    try:
        await page.goto(app_url)
        for attempt in range(3):  # on a loaded machine a click can land before the page listens
            await page.get_by_role("textbox", name="Username").fill(user)
            await page.get_by_role("textbox", name="Password").fill(password)
            await page.get_by_role("button", name="Login").click()
            try:
                await page.wait_for_function("() => document.cookie.includes('stationmanager_auth=')",
                                             timeout=timeout_ms // 3)
                break
            except PlaywrightTimeout:
                if attempt == 2 or not await page.get_by_role("button", name="Login").is_visible():
                    raise
        signed = True
        until = await all_signed_in()
        done = 0
        while (loads is None or done < loads) and (until is None or time.monotonic() < until):
            kind, url = targets[step % len(targets)]
            step, done = step + 1, done + 1
            t0 = time.monotonic()
            await page.goto(url)
            drawn = page.locator(CHART_LINE) if kind == "station" else page.get_by_test_id("stMetric")
            await drawn.first.wait_for(state="visible")
            (seen.station if kind == "station" else seen.overview).ok(time.monotonic() - t0)
            seen.errors.extend(f"{kind} page: {t.strip()[:300]}"
                               for t in await page.locator(PAGE_ERRORS).all_inner_texts())
    except Exception as exc:  # noqa: BLE001 - a session's failure is a finding, reported with the others
        shown = ""
        with contextlib.suppress(Exception):
            shown = " ".join((await page.locator("[data-testid=stMain]").inner_text(timeout=2_000)).split())[:200]
        seen.errors.append(f"session {i} at {page.url}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]} "
                           f"(the page showed: {shown!r})")
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
