"""``stationmanager source …`` — define, test, run and follow sources (see ``core.sources``)."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from datetime import UTC, datetime
from typing import Any

from core import db, remote, sources
from core.cli import _print_json, _table  # core.cli imports this module lazily: no cycle
from core.errors import StationManagerError


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The definition fields given on the command line (None: not given)."""
    options = None
    if args.option:
        options = {}
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep:
                raise StationManagerError(f"--option {item!r}: give KEY=VALUE")
            options[key] = {"true": True, "false": False}.get(value.lower(), value)
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError as exc:
            raise StationManagerError(f"--since {args.since!r} is not an ISO date (e.g. 2025-01-01)") from exc
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since
    enabled = None if args.enabled is None else args.enabled == "yes"
    return {
        "kind": args.kind, "url": args.url, "credentials": args.credentials, "station": args.station,
        "include": args.include, "exclude": args.exclude, "every_minutes": args.every, "since": since,
        "after_fetch": args.after_fetch, "move_to": args.move_to, "max_files": args.max_files,
        "max_bytes": args.max_mb << 20 if args.max_mb else None, "timeout_s": args.timeout,
        "connections": args.connections, "options": options, "enabled": enabled,
    }


def _show(row: dict[str, Any], as_json: bool) -> None:
    out = sources.public_row(row)
    if as_json:
        _print_json(out)
        return
    for k, v in out.items():
        if v not in (None, [], {}):
            print(f"{k:<17}{', '.join(map(str, v)) if isinstance(v, list) else v}")


def cmd_add(args: argparse.Namespace) -> int:
    if not (args.kind and args.url):
        raise StationManagerError("a new source needs --kind and --url")
    fields = {k: v for k, v in _fields(args).items() if v is not None}
    with db.connect() as conn, db.translate(), conn.transaction():
        row = sources.add_source(conn, args.actor, name=args.name, **fields)
    _show(row, args.json)
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    changes = {k: v for k, v in _fields(args).items() if v is not None}
    if args.rename:
        changes["name"] = args.rename
    if args.no_station:
        changes["station"] = None
    with db.connect() as conn, db.translate(), conn.transaction():
        row = sources.edit_source(conn, args.name, args.actor, **changes)
    _show(row, args.json)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate():
        rows = [sources.public_row(r) for r in sources.list_sources(conn)]
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["name", "kind", "url", "station", "every_minutes", "enabled", "last_status", "last_run_at",
                      "last_error_class"])
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate(), conn.transaction():
        sources.remove_source(conn, args.name, args.actor)
    print(f"source {args.name} removed (the files it brought stay)")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate():
        src = sources.get_source(conn, args.name)
        result = sources.keep_offered_key(conn, src, sources.check_source(src))
    if args.json:
        _print_json(result)
    elif result["ok"]:
        print(f"{args.name}: connected; {result['files']} file(s) match of {result['listed']} listed")
    else:
        print(f"{args.name}: {result['error']}")
    return 0 if result["ok"] else 1


def cmd_trust(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate():
        src = sources.get_source(conn, args.name)
        key = src["pending_host_key"] or sources.offered_host_key(src)
        fp = remote.fingerprint(key)
        if src["host_key"] == key and not src["blocked"]:
            print(f"{args.name}: host key {fp} is accepted already")
            return 0
        print(f"{args.name}: {urlhost(src['url'])} offers the host key {key.split()[0]} {fp}")
        if src["host_key"]:
            print(f"  (instead of {remote.fingerprint(src['host_key'])}, accepted before)")
        if not args.yes:
            if not sys.stdin.isatty():
                raise StationManagerError("check the fingerprint with the server's owner, then run again with --yes")
            if input("accept it? [y/N] ").strip().lower() not in ("y", "yes"):
                print("not accepted")
                return 1
        with conn.transaction():
            sources.trust_host_key(conn, args.name, args.actor, key)
    print(f"{args.name}: host key {fp} accepted")
    return 0


def urlhost(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


def _run_out(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "status", "trigger", "started_at", "duration_s", "n_listed", "n_new", "n_waiting", "n_fetched",
            "n_failed", "bytes", "error_class", "error", "file_ids")
    out = {k: row.get(k) for k in keys}
    if out["duration_s"] is not None:
        out["duration_s"] = round(float(out["duration_s"]), 3)
    return out


def cmd_sync(args: argparse.Namespace) -> int:
    from core import exports, jobs

    url = db.database_url()
    with db.connect(url, autocommit=True) as conn, db.translate():
        src = sources.get_source(conn, args.name)
        if exports.worker_alive(conn):
            since = sources.last_run_id(conn, src["id"])
            app = jobs.make_app(url)
            with app.open():
                jobs.defer_sync(app, src["id"], trigger="cli")
            if not args.wait:
                print(f"{args.name}: run queued for the worker")
                return 0
            row = _wait_for_run(conn, src["id"], since, args.wait_timeout)
        else:
            if not args.json:
                print("no worker is running: fetching here (the imports wait for a worker)", file=sys.stderr)
            row = sources.sync(src["id"], trigger="cli", url=url)
            if row.get("status") == "busy":
                raise StationManagerError(f"{args.name} is running already")
            jobs.queue_imports(url, row["queue"])
    out = _run_out(row)
    if args.json:
        _print_json(out)
    else:
        print(f"{args.name}: {out['status']}: {out['n_listed']} listed, {out['n_fetched']} fetched "
              f"({out['bytes']:,} bytes), {out['n_waiting']} waiting, {out['n_failed']} failed"
              + (f"; {out['error']}" if out["error"] else ""))
    return 0 if out["status"] in ("ok", "partial") else 1


def _wait_for_run(conn: Any, source_id: int, after: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = sources.finished_run_after(conn, source_id, after)
        if row:
            return row
        time.sleep(0.5)
    raise StationManagerError(f"gave up waiting after {timeout:g} s: is the worker busy? (stationmanager source runs)")


def cmd_runs(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate():
        rows = [_run_out(r) for r in sources.runs(conn, args.name, args.limit)]
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["id", "started_at", "duration_s", "status", "n_listed", "n_new", "n_fetched", "n_waiting",
                      "n_failed", "bytes", "error_class", "error"])
    return 0


def _definition_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--kind", choices=sources.KINDS)
    s.add_argument("--url", help="folder path, or sftp://[user@]host[:port]/path, ftp(s)://host/path, "
                   "http(s)://host/path/, s3://bucket/prefix (never a password: see --credentials)")
    s.add_argument("--credentials", metavar="NAME", help="section of HOME/secrets.toml (or "
                   "STATIONMANAGER_SECRET_NAME_USERNAME/_PASSWORD) with the login")
    s.add_argument("--station", help="every file is this station's (default: routed like the inbox)")
    s.add_argument("--include", nargs="+", metavar="GLOB", help="file name (or path, with /) patterns; default *")
    s.add_argument("--exclude", nargs="+", metavar="GLOB")
    s.add_argument("--every", type=int, metavar="MINUTES", help="run every N minutes (default 60)")
    s.add_argument("--since", metavar="ISO", help="leave files modified before this alone")
    s.add_argument("--after-fetch", choices=("keep", "move", "delete"), help="what to do at the source "
                   "with a fetched file (default keep)")
    s.add_argument("--move-to", metavar="FOLDER", help="with --after-fetch move: folder under the URL")
    s.add_argument("--max-files", type=int, help="most files per run (default STATIONMANAGER_SOURCE_MAX_FILES)")
    s.add_argument("--max-mb", type=int, help="a run starts no new file after this many MiB "
                   "(default STATIONMANAGER_SOURCE_MAX_MB)")
    s.add_argument("--timeout", type=float, metavar="S", help="per network step (default "
                   "STATIONMANAGER_SOURCE_TIMEOUT_S)")
    s.add_argument("--connections", type=int, help="most connections to the host at once")
    s.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="endpoint_url, region (s3); ca_file (ftps, https, s3); passive (ftp)")
    s.add_argument("--enabled", choices=("yes", "no"))
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("source", help="where logger files wait (folder, SFTP, FTP(S), HTTP(S), S3)").add_subparsers(
        dest="source_cmd", required=True)
    s = sp.add_parser("add", help="define a source")
    s.add_argument("name")
    _definition_options(s)
    s.set_defaults(func=cmd_add)
    s = sp.add_parser("edit", help="change a source (only the options given)")
    s.add_argument("name")
    _definition_options(s)
    s.add_argument("--rename", metavar="NEW_NAME")
    s.add_argument("--no-station", action="store_true", help="route files like the inbox again")
    s.set_defaults(func=cmd_edit)
    s = sp.add_parser("list", help="the sources and their last run")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)
    s = sp.add_parser("remove", help="forget a source (the files it brought stay)")
    s.add_argument("name")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_remove)
    s = sp.add_parser("test", help="connect and list: how many files match, or what went wrong")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_test)
    s = sp.add_parser("sync", help="run a source now (here when no worker runs, else queued for the worker)")
    s.add_argument("name")
    s.add_argument("--wait", action="store_true", help="with a worker: wait for the run to end")
    s.add_argument("--timeout", dest="wait_timeout", type=float, default=3600, metavar="SECONDS",
                   help="with --wait: give up after this long (default 3600)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sync)
    s = sp.add_parser("runs", help="the last runs of a source")
    s.add_argument("name")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_runs)
    s = sp.add_parser("trust", help="show an SFTP server's host key and accept it")
    s.add_argument("name")
    s.add_argument("--yes", action="store_true", help="accept without asking")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_trust)
