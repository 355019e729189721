"""Load benchmark: many users at once on loopback, bounded in time.

The stack as ``stationmanager up`` runs it, on 127.0.0.1 — the web app (``streamlit run
app.py``), the HTTP API and two workers — over the demo site (``core.demo``: three masts,
the last ``--days`` days up to now, imported first). Then, for ``--seconds``:

- the two workers import a stream of new daily files (the three masts' days before the
  site's first day, one day's three files received and queued every ``--every`` seconds);
- ``--sessions`` signed-in Chromium sessions (Debian's ``/usr/bin/chromium``, one context
  each; all signed in at once as one user, as a team sharing an account, or as ``--users``
  users in turn) browse in turn the Overview and the Station page of each mast inside the
  app, as a user does after signing in (the sidebar, a station card's link, the station
  selector: Streamlit reruns only the page's script), or with ``--reload`` by a full page
  load of each view. A view's time runs from the click (or the request) until it is drawn:
  the Overview's station cards, or a drawn line of the chosen station's chart (goal: ≤ 1.5 s
  p95). Each session's first full load (the app, its sign-in, the Overview drawn) and, in
  the app, its first Station view (which fetches and compiles plotly's script) are reported
  apart;
- the server's connections to the database (``pg_stat_activity``) are counted every 0.5 s;
  their peak is compared with the connection budget (``core.budget``) of this installation.

Errors the pages show (Streamlit exception boxes, ``st.error``) and failed imports are
counted. Results are printed as Markdown and written to ``docs/benchmarks.md`` (section
``<!-- bench:load-level<N>-<kind> -->``). The machine's load average is reported: other
work on it makes the page times noisy.

    .venv/bin/python benchmarks/load.py                       # embedded PostgreSQL, 10 sessions, 60 s
    .venv/bin/python benchmarks/load.py --database-url postgresql://postgres@127.0.0.1:5433/postgres
    .venv/bin/python benchmarks/load.py --sessions 3 --seconds 20 --days 7 --no-doc   # a quick check
    .venv/bin/python benchmarks/load.py --users 10            # one user per session
    .venv/bin/python benchmarks/load.py --reload              # a full page load per view
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, p)

import ingest as bench  # noqa: E402  (benchmarks/ingest.py: servers, machine, docs)

import core.settings  # noqa: E402
from core import auth, budget, db, demo, ingest, jobs, schema  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.e2e.conftest import _free_port as free_port  # noqa: E402  (the browser tests' own)
from tests.load import ConnectionSampler, browse, percentile  # noqa: E402

#: the users the sessions sign in as, in turn (``--users`` of them)
USERS = [(f"load{i}", f"load-password-{i}") for i in range(1, 101)]
LEVELS = {0: "PostgreSQL", 1: "TimescaleDB Apache", 2: "TimescaleDB community"}
log = bench.log


def start(name: str, argv: list[str], env: dict[str, str], home: Path) -> subprocess.Popen:
    out = (home / f"{name}.log").open("wb")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_http(url: str, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


def statuses(url: str, ids: list[int]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM source_file WHERE id = ANY(%s) GROUP BY status",
                                 (ids,)).fetchall())


def wait_imported(url: str, ids: list[int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = statuses(url, ids)
        if not counts.get("queued") and not counts.get("importing") or time.monotonic() > deadline:
            return counts
        time.sleep(1)


def feed(url: str, settings: Settings, days: list[list[Path]], every_s: float, stop: threading.Event,
         ids: list[int]) -> None:
    """Receive and queue one day's files every ``every_s`` seconds until stopped."""
    by_slug = {s.slug: s.name for s in demo.STATIONS}
    with db.connect(url) as conn:
        for files in days:
            with conn.transaction():
                new = [ingest.receive(conn, p, station=by_slug[p.parent.name], origin="load", actor="load",
                                      settings=settings).id for p in files]
            jobs.queue_imports(url, new)
            ids.extend(new)
            if stop.wait(every_s):
                return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", help="server to use (a scratch database is created and dropped on it); "
                   "default: an embedded PostgreSQL in a temporary STATIONMANAGER_HOME")
    p.add_argument("--sessions", type=int, default=10, help="browser sessions at once (default 10)")
    p.add_argument("--users", type=int, default=1, choices=range(1, len(USERS) + 1), metavar="N",
                   help="user names the sessions sign in as, in turn (default 1: every session signs in "
                   "as the same user at once, as a team sharing an account)")
    p.add_argument("--seconds", type=float, default=60, help="how long the load runs (default 60)")
    p.add_argument("--days", type=int, default=30, help="days of the demo site imported first (default 30)")
    p.add_argument("--every", type=float, default=2.0, help="seconds between two new days of files (default 2)")
    p.add_argument("--reload", action="store_true", help="a full page load (page.goto) per view instead of "
                   "moving inside the app")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--keep", action="store_true", help="keep the scratch database and the temporary home")
    args = p.parse_args(argv)
    command = "python benchmarks/load.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    home = Path(tempfile.mkdtemp(prefix="smload-"))
    try:
        return run(args, command, home)
    finally:
        if not args.keep:
            bench.remove_home(home)


def run(args: argparse.Namespace, command: str, home: Path) -> int:
    server = bench.Server(args.database_url, home)
    name, url = server.create("load")
    procs: list[subprocess.Popen] = []
    try:
        port, api_port = free_port(), free_port()
        stack = {"STATIONMANAGER_HOME": str(home), "STATIONMANAGER_DATABASE_URL": url, "STATIONMANAGER_WORKERS": "2",
                 "STATIONMANAGER_API_PORT": str(api_port), "STATIONMANAGER_LOG_LEVEL": "WARNING"}
        os.environ.update(stack)  # core.demo.load_demo reads the settings of this process
        core.settings.reload()
        settings = Settings(home=home, database_url=url, workers=2)
        schema.upgrade(url, settings)
        users = USERS[:args.users]
        for user, password in users:
            auth.add_user(settings.users_file, user, password, "viewer")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_") or k in stack}
        env["PYTHONUNBUFFERED"] = "1"
        procs += [start(f"worker{i}", [sys.executable, "-m", "ingest_worker"], env, home) for i in (1, 2)]
        procs.append(start("streamlit", [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
            "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none"], env, home))
        procs.append(start("api", [sys.executable, "-m", "api", "--port", str(api_port)], env, home))
        app_url = f"http://127.0.0.1:{port}"
        wait_http(f"{app_url}/_stcore/health")
        wait_http(f"http://127.0.0.1:{api_port}/api/v1/status")

        t0 = time.monotonic()
        site = demo.load_demo(days=args.days)
        counts = wait_imported(url, site["file_ids"], timeout=1800)
        log(f"demo site: {len(site['file_ids'])} files {counts} in {time.monotonic() - t0:.0f} s")
        first = site["start"]
        n_days = int(args.seconds / args.every) + 2
        older = demo.generate(home / "older", start=first - timedelta(days=n_days), days=n_days,
                              year_start=first - timedelta(days=n_days))
        days: dict[str, list[Path]] = {}
        for path in older:
            days.setdefault(path.stem[-8:], []).append(path)
        stream = [days[d] for d in sorted(days, reverse=True)]  # the days just before the site's first, going back
        with db.connect(url) as conn:
            allowed = budget.measure(conn, settings)
            # the masts with readings (Curlew Point's start within the last month)
            charted = {r["name"]: r["id"] for r in conn.execute(
                "SELECT name, id FROM station s WHERE EXISTS (SELECT FROM channel c JOIN reading r "
                "ON r.channel_id = c.id WHERE c.station_id = s.id) ORDER BY name").fetchall()}
        warm = browse(app_url, users, charted, sessions=1, loads=2)  # imports, caches
        log(f"warm-up: {warm.station.seconds} {warm.errors}")

        stop, fed = threading.Event(), []
        feeder = threading.Thread(target=feed, args=(url, settings, stream, args.every, stop, fed), daemon=True)
        load0 = os.getloadavg()[0]
        with ConnectionSampler(server.admin_url, name, every_s=0.5) as sampler:
            seen = browse(app_url, users, charted, sessions=args.sessions, seconds=args.seconds,
                          reload=args.reload, signed_in=feeder.start)
            stop.set()
            feeder.join()
            done = statuses(url, fed)
        load1 = os.getloadavg()[0]
        final = wait_imported(url, fed, timeout=600)
        ctx = {
            "title": f"{LEVELS[server.level]} (level {server.level}, "
                     f"{'embedded PostgreSQL' if server.embedded else 'external server'}) — "
                     f"{args.sessions} sessions, {args.seconds:g} s{', a full page load per view' if args.reload else ''}",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": bench.machine(),
            "command": command, "days": args.days, "readings": site_readings(url), "seen": seen,
            "sampler": sampler, "budget": allowed, "fed": len(fed), "done": done, "final": final,
            "load": (load0, load1), "sessions": args.sessions, "users": args.users, "seconds": args.seconds, "charted": charted,
            "reload": args.reload,
        }
        bench.publish(f"load-{server.tag}" + ("-reload" if args.reload else ""), render(ctx), not args.no_doc)
        return 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        db.close_pools()
        if args.keep:
            log(f"kept database {name} and home {home}")
        else:
            server.drop(name)


def site_readings(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM reading").fetchone()[0]


def _times(values: list[float]) -> str:
    if not values:
        return "— | — | — | 0"
    return f"{percentile(values, 50):.2f} | {percentile(values, 95):.2f} | {max(values):.2f} | {len(values)}"


def render(c: dict) -> str:
    seen, b, m = c["seen"], c["budget"], c["machine"]
    errors = seen.errors
    lines = [
        f"## Load: {c['title']}",
        "",
        f"{c['date']} · `{c['command']}` · {m['nproc']} cores ({m['cpu']}), {m['ram']} · load average "
        f"{c['load'][0]:.1f} before, {c['load'][1]:.1f} after (other work shares the machine: page times are noisy)",
        "",
        f"Demo site: 3 masts, the last {c['days']} days ({c['readings'] / 1e6:.2f} M readings), then for "
        f"{c['seconds']:g} s: {c['sessions']} Chromium sessions ({_users(c['users'], c['sessions'])}) browsing the Overview and the Station pages of "
        f"{', '.join(c['charted'])} "
        f"while two workers import new daily files ({c['fed']} received; at the end of the load "
        f"{_counts(c['done'])}; finally {_counts(c['final'])}).",
        "",
        *_views_table(seen, c["reload"]),
        "",
        f"Connections to the database: peak **{c['sampler'].peak}** (median {percentile(c['sampler'].samples, 50)}"
        f" over {len(c['sampler'].samples)} samples, every 0.5 s); connection budget of this installation "
        f"**{b.needed}** ({', '.join(f'{w} {n}' for w, n, _ in b.parts())}); the server allows {b.allowed} "
        f"(max_connections {b.max_connections} − {b.reserved} reserved).",
        "",
        f"Errors shown by pages or sessions: **{len(errors)}**"
        + ("" if not errors else ":\n\n" + "\n".join(f"- {e}" for e in errors[:10])),
        "",
    ]
    return "\n".join(lines)


def _views_table(seen, reload: bool) -> list[str]:
    """The views' times: each kind of view, then the sessions' first loads."""
    how = (": every view a full page load (`page.goto`, `--reload`)" if reload else
           " inside the app: the sidebar to the Overview, a station card's link or the station selector to a Station page")
    rows = [
        f"Views{how}, timed from the {'request' if reload else 'click'} until drawn"
        f"{'' if reload else f' ({seen.clicked_again} lost clicks clicked again)'}:",
        "",
        "| view (until drawn) | p50 s | p95 s | max s | views |",
        "|---|---|---|---|---|",
        f"| Station (chart line of the chosen station drawn; goal p95 ≤ 1.5 s) | {_times(seen.station.seconds)} |",
    ]
    if not reload:
        rows.append(f"| Station, first of a session (fetches and compiles plotly's script) | "
                    f"{_times(seen.station_first.seconds)} |")
    return rows + [
        f"| Overview (station cards) | {_times(seen.overview.seconds)} |",
        f"| first load of a session: the app, sign-in, Overview drawn (sessions at once) | {_times(seen.first.seconds)} |",
        f"| of which from the click on Login (sign-ins of one user take turns) | {_times(seen.sign_in.seconds)} |",
    ]


def _users(users: int, sessions: int) -> str:
    """How the sessions signed in.

    >>> _users(1, 10), _users(10, 10), _users(3, 10)
    ('all signed in at once as one user', 'one user each', 'signed in as 3 users in turn')
    """
    if users == 1:
        return "all signed in at once as one user"
    return "one user each" if users >= sessions else f"signed in as {users} users in turn"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"


if __name__ == "__main__":
    raise SystemExit(main())
