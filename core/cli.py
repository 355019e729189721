"""``stationmanager`` — the command-line interface over ``core``.

Run ``stationmanager --help`` (or ``stationmanager COMMAND --help``) for the commands.
Errors are printed as one line and the exit code is non-zero.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from core import auth, db, flags, schema
from core.errors import StationManagerError
from core.logs import setup_logging
from core.settings import describe, get_settings

log = logging.getLogger(__name__)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c, "") or "")) for r in rows]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "") if r.get(c) is not None else "").ljust(widths[c]) for c in columns))


# --- commands ------------------------------------------------------------------------


def cmd_settings(args: argparse.Namespace) -> int:
    rows = describe()
    current = get_settings()
    for r in rows:
        r["value"] = str(getattr(current, r["env"].removeprefix("STATIONMANAGER_").lower()))
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['env']} = {r['value']}\n    {r['help']} (default: {r['default']})")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    result = schema.upgrade()
    if args.json:
        _print_json(result)
    else:
        print(f"storage level {result['level']}: {schema.LEVEL_NAMES[result['level']]}")
        print("applied: " + (", ".join(result["applied"]) if result["applied"] else "nothing (up to date)"))
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    st = schema.status()
    if args.json:
        _print_json(st)
        return 0
    print(f"database        {st['database']}")
    print(f"PostgreSQL      {st['postgresql']}")
    ts = st["timescaledb"] or (f"available {st['timescaledb_available']}, not installed" if st["timescaledb_available"] else "not available")
    print(f"TimescaleDB     {ts}" + (f" ({st['timescaledb_edition']})" if st["timescaledb_edition"] else ""))
    print(f"storage level   {st['storage_level']}: {st['storage_level_name']}")
    if st["level_note"]:
        print(f"                {st['level_note']}")
    elif st["offered_level"] != st["storage_level"]:
        print(f"                (this server offers level {st['offered_level']})")
    if st["rollup_ranges_pending"]:
        print(f"rollups         {st['rollup_ranges_pending']} range(s) waiting for a refresh (the worker catches up)")
    c = st["connections"]
    print(f"connections     {c['this_database']} to this database, {c['server_total']} of {c['max_connections']} on the server")
    b = st["budget"]
    print(f"budget          {b['needed']} of the {b['allowed']} the server allows "
          f"({b['max_connections']} − {b['reserved']} reserved for superusers): " + ("fits" if b["ok"] else "DOES NOT FIT"))
    for part in b["parts"]:
        print(f"  {part['what']:<30}{part['connections']:>4}  ({part['setting']})")
    for problem in b["problems"]:
        print(f"  problem: {problem}")
    print("pending         " + (", ".join(st["pending_migrations"]) or "none"))
    for table, n in st["row_counts"].items():
        print(f"  {table:<14}{n:>12,}")
    return 0


def cmd_db_raise_level(args: argparse.Namespace) -> int:
    result = schema.raise_level(to=args.to)
    if args.json:
        _print_json(result)
    elif result["changed"]:
        print(f"storage level {result['from']} -> {result['level']}: {schema.LEVEL_NAMES[result['level']]}")
    else:
        print(f"storage level {result['level']}: already the best this server offers (nothing changed)")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from core import ingest, jobs

    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise StationManagerError(f"no such file: {', '.join(missing)}")
    url = db.database_url()
    schema.upgrade(url)
    received = []
    with db.connect(url) as conn, db.translate():
        for p in paths:
            with conn.transaction():
                received.append(ingest.receive(conn, p, station=args.station, origin="cli", actor=args.actor))
    jobs.queue_imports(url, [r.id for r in received if r.status == "queued"])
    ids = [r.id for r in received]
    if args.wait:
        _wait_for_files(url, ids, quiet=args.json, timeout=args.timeout)
    with db.connect(url) as conn:
        rows = db.fetch_all(conn, "source_files_by_ids", ids=ids)
    _report_files(rows, args.json)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _wait_for_files(url: str, ids: list[int], *, quiet: bool, timeout: float = 3600) -> None:
    from core import jobs

    report = None if quiet else (lambda line: print(f"waiting: {line}", file=sys.stderr))
    jobs.wait_for_files(url, ids, report=report, timeout=timeout)


def _report_files(rows: list[dict[str, Any]], as_json: bool) -> None:
    out = [
        {
            "id": r["id"], "file": r["original_name"], "station": r["station"], "status": r["status"],
            "format": r["format"], "readings": r["n_readings"], "changed": r["n_changed"],
            "first_time": r["first_time"], "last_time": r["last_time"],
            "message": _message(r), "warnings": r.get("warnings") or [],
        }
        for r in rows
    ]
    if as_json:
        _print_json(out)
    else:
        for r in out:
            r["warnings"] = "; ".join(r["warnings"])
        _table(out, ["id", "file", "station", "status", "readings", "first_time", "last_time", "message",
                     "warnings"])


def _message(r: dict[str, Any]) -> str:
    if r["status"] == "failed":
        where = f"line {r['error_line']}: " if r["error_line"] else ""
        return f"{where}{r['error']}"
    if r["status"] == "duplicate":
        return f"same content as file {r['duplicate_of']}; nothing imported"
    if r["status"] == "needs station":
        return r["error"] or "no station matched; assign one"
    if r["status"] == "unpacked":
        return f"archive of {r['n_rows']} files"
    return ""


def cmd_files(args: argparse.Namespace) -> int:
    from core import files

    with db.connect() as conn, db.translate():
        rows = files.list_files(conn, station=args.station, status=args.status, limit=args.limit)
    _report_files(list(reversed(rows)), args.json)
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    from core import files

    for i in args.ids:
        files.requeue(i, actor=args.actor, station=args.station)
    url = db.database_url()
    if args.wait:
        _wait_for_files(url, args.ids, quiet=args.json, timeout=args.timeout)
    with db.connect(url) as conn:
        _report_files(files.files_by_ids(conn, args.ids), args.json)
    return 0


def cmd_mapping_set(args: argparse.Namespace) -> int:
    from core import ingest
    from core.formats.generic import GenericMapping

    mapping = GenericMapping.from_json(Path(args.file).read_text(encoding="utf-8"))
    with db.connect() as conn, db.translate(), conn.transaction():
        ingest.set_file_mapping(conn, args.station, mapping, args.actor)
    print(f"file mapping saved for {args.station}: {mapping.to_json()}")
    return 0


def cmd_logger_set(args: argparse.Namespace) -> int:
    from core import metadata

    is_end = {"true": True, "false": False, "unknown": None}[args.timestamp_is_end]
    with db.connect() as conn, db.translate(), conn.transaction():
        rows = metadata.set_timestamp_convention(conn, args.station, is_end, args.actor, serial=args.serial)
    if args.json:
        _print_json(rows)
    else:
        what = {True: "the end of the period", False: "the start of the period",
                None: "what each file says (else the start)"}[is_end]
        print(f"{args.station}: {len(rows)} logger configuration{'s' if len(rows) != 1 else ''} "
              f"now read stamps as {what}; files imported before keep their times until imported "
              "again (stationmanager requeue)")
    return 0


def cmd_import_metadata(args: argparse.Namespace) -> int:
    from core import iea43

    report = iea43.import_metadata_file(Path(args.file), actor=args.actor)
    if args.json:
        _print_json(report.as_dict())
    else:
        print(report.summary())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if args.check:
        return _worker_check()
    from ingest_worker.worker import run

    run(args.concurrency, wait=not args.once)
    return 0


#: ``worker --check``: a worker is alive when its heartbeat (every 10 s) is this recent.
WORKER_CHECK_S = 60.0


def _worker_check() -> int:
    """A health check for service managers and containers: 0 when the database answers and a
    worker's heartbeat is recent, 1 when none is, 2 (an error) when the database is away."""
    from core import exports

    with db.connect() as conn, db.translate():
        alive = exports.worker_alive(conn, seconds=WORKER_CHECK_S)
    if not alive:
        print(f"no worker is running: no heartbeat in the last {WORKER_CHECK_S:g} s", file=sys.stderr)
        return 1
    print("ok: the database answers and a worker is running")
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    password = _read_password()
    auth.add_user(get_settings().users_file, args.name, password, args.role, email=args.email or "")
    print(f"user {args.name} saved with role {args.role}")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise StationManagerError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def cmd_users_list(args: argparse.Namespace) -> int:
    rows = auth.users(get_settings().users_file)
    _print_json(rows) if args.json else _table(rows, ["name", "role", "email"])
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    auth.remove_user(get_settings().users_file, args.name)
    print(f"user {args.name} removed (an open session is signed out at its next click)")
    return 0


def cmd_users_logout(args: argparse.Namespace) -> int:
    from core import sessions

    with db.connect() as conn, db.translate():
        n = sessions.end_user(conn, args.name)
    print(f"{args.name}: {n} session{'s' if n != 1 else ''} ended (signed out at the next click; "
          "remember-me cookies no longer sign in)")
    return 0


def cmd_users_unlock(args: argparse.Namespace) -> int:
    from core import signin

    with db.connect() as conn, db.translate():
        had = signin.unlock(conn, args.name)
    print(f"{args.name}: " + ("failed sign-ins forgotten, unlocked" if had else "no failed sign-ins"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from core import demo, demo_home

    demo_home.use_demo_home()
    result = demo.load_demo(days=args.days, progress=lambda m: print(m, file=sys.stderr))
    print(
        f"demo: {result['queued']} files queued, {result['known']} already known, "
        f"stations: {', '.join(result['stations'])}"
    )
    if args.wait and result["queued"]:
        _wait_for_files(db.database_url(), result["file_ids"], quiet=False, timeout=args.timeout)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from core import supervisor

    return supervisor.up(demo=args.demo, port=args.port, days=args.days, api_port=args.api_port)


# --- flags and quality checks ---------------------------------------------------------


def _when(text: str | None) -> Any:
    """An ISO date or date-time from the command line; without a zone it is UTC."""
    from datetime import UTC, datetime

    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise StationManagerError(f"{text!r} is not an ISO date or date-time (e.g. 2025-01-27T18:00)") from exc
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _flag_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "station": r["station"], "start": r["start_time"], "end": r["end_time"],
        "category": r["category"], "channels": "whole station" if r["whole_station"] else ",".join(r["columns"]),
        "channel_ids": r["channel_ids"], "whole_station": r["whole_station"], "note": r["note"],
        "source": r["source"], "rule": r["rule"], "author": r["author"], "created_at": r["created_at"],
        "deleted_by": r["deleted_by"], "deleted_at": r["deleted_at"],
    }


def cmd_flag_add(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate(), conn.transaction():
        channels = "station" if args.station_wide else flags.channel_ids_by_name(
            conn, args.station, args.channels.split(","))
        flag_id = flags.add_flag(conn, args.station, channels, _when(args.start), _when(args.end), args.category,
                                 args.note or "", args.actor)
        row = _flag_out(flags.get_flag(conn, flag_id))
    if args.json:
        _print_json(row)
    else:
        print(f"flag {flag_id} added: {row['category']} on {row['channels']} of {row['station']}, "
              f"{row['start']} .. {row['end']}")
    return 0


def cmd_flag_list(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate():
        rows = [_flag_out(r) for r in flags.list_flags(conn, args.station, _when(args.start), _when(args.end),
                                                       include_deleted=args.deleted)]
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["id", "start", "end", "category", "channels", "source", "author", "note"]
               + (["deleted_by", "deleted_at"] if args.deleted else []))
    return 0


def cmd_flag_delete(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate(), conn.transaction():
        (flags.undelete_flag if args.undo else flags.delete_flag)(conn, args.id, args.actor)
    print(f"flag {args.id} {'restored' if args.undo else 'deleted'}")
    return 0


def _suggestion_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "station": r["station"], "rule": r["rule"], "severity": r["severity"],
        "start": r["start_time"], "end": r["end_time"], "channels": ",".join(r["columns"]),
        "channel_ids": r["channel_ids"], "status": r["status"], "message": r["message"],
        "decided_by": r["decided_by"], "flag_id": r["flag_id"],
    }


def cmd_flag_suggestions(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    with db.connect() as conn, db.translate():
        rows = [_suggestion_out(r) for r in flags.list_suggestions(conn, args.station, status)]
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["id", "rule", "severity", "start", "end", "status", "message"])
    return 0


def cmd_flag_accept(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise StationManagerError("give suggestion ids, or --all with --station")
    if args.all and not args.station:
        raise StationManagerError("--all needs --station")
    with db.connect() as conn, db.translate(), conn.transaction():
        ids = flags.open_suggestion_ids(conn, args.station) if args.all else args.ids
        if not ids:
            print(f"no open suggestions for {args.station}")
            return 0
        made = flags.accept_suggestions(conn, ids, args.actor, category=args.category)
    if args.json:
        _print_json([{"suggestion": s, "flag": f} for s, f in made.items()])
    else:
        for s, f in made.items():
            print(f"suggestion {s} accepted: " + (f"flag {f}" if f else "acknowledged (no readings to flag)"))
    return 0


def cmd_flag_dismiss(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate(), conn.transaction():
        n = flags.dismiss_suggestions(conn, args.ids, args.actor)
    print(f"{n} suggestion{'s' if n != 1 else ''} dismissed")
    return 0


def cmd_flag_import(args: argparse.Namespace) -> int:
    from core import cleaning_log

    text = _read_text(args.file)
    with db.connect() as conn, db.translate():
        try:
            result = cleaning_log.import_flags(conn, args.station, text, args.format, args.actor)
        except cleaning_log.CleaningLogError as exc:
            raise cleaning_log.CleaningLogError(exc.problems, file=args.file) from None
        conn.commit()
    if args.json:
        _print_json(result)
    else:
        print(f"{args.file}: {result['added']} flags added, {result['unchanged']} already there")
        if result["unmatched"]:
            print(f"no channel of {args.station} matches: {', '.join(result['unmatched'])}")
    return 0


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise StationManagerError(f"cannot read {path}: {exc}") from exc


def cmd_flag_export(args: argparse.Namespace) -> int:
    from core import cleaning_log

    warnings: list[str] = []
    with db.connect() as conn, db.translate():
        text = cleaning_log.export_flags(conn, args.station, args.format, warnings=warnings)
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StationManagerError(f"cannot write {args.out}: {exc}") from exc
    lines = text.count("\n") - 1
    print(f"{args.out}: {lines} line{'s' if lines != 1 else ''} ({args.format})")
    for w in warnings:
        print(f"note: {w}", file=sys.stderr)
    return 0


def cmd_qc(args: argparse.Namespace) -> int:
    from core import qc_runner

    with db.connect() as conn, db.translate():
        result = qc_runner.check_station(conn, args.station, _when(args.start), _when(args.end))
        conn.commit()
    if args.json:
        _print_json({**result, "findings": [f.__dict__ for f in result["findings"]]})
        return 0
    print(f"{result['station']}, {result['start']} .. {result['end']}: {len(result['findings'])} findings "
          f"in {result['seconds']:.1f} s")
    for f in result["findings"]:
        print(f"  {f.start} .. {f.end}  {f.rule:<11} {f.message}")
    c = result["suggestions"]
    print(f"suggestions: {c['new']} new, {c['updated']} updated, {c['unchanged']} unchanged, {c['removed']} removed "
          f"(stationmanager flag suggestions --station {result['station']!r})")
    return 0


# --- calibrations ---------------------------------------------------------------------


def _calibration_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "point": r["point"], "from": r["valid_from"], "to": r["valid_to"],
        "logger_slope": r["logger_slope"], "logger_offset": r["logger_offset"], "slope": r["cal_slope"],
        "offset": r["cal_offset"], "certificate": r["certificate"], "source": r["source"] or "manual",
        "entered_by": r.get("entered_by", ""),
    }


def cmd_calibration_list(args: argparse.Namespace) -> int:
    from core import calibrations

    with db.connect() as conn, db.translate():
        rows = [_calibration_out(r) for r in calibrations.list_calibrations(conn, args.station)]
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["id", "point", "from", "to", "logger_slope", "logger_offset", "slope", "offset", "source",
                      "certificate"])
    return 0


def cmd_calibration_add(args: argparse.Namespace) -> int:
    from core import calibrations

    with db.connect() as conn, db.translate():
        point = calibrations.point_id(conn, args.station, args.point)
        row = calibrations.add_calibration(
            conn, point, _when(args.valid_from), _when(args.valid_to), args.logger_slope, args.logger_offset,
            args.slope, args.offset, args.certificate or "", args.actor)
        conn.commit()
    if args.json:
        _print_json(_calibration_out(row))
    else:
        print(f"calibration {row['id']} added to {row['point']}: {row['valid_from']} .. {row['valid_to'] or 'open'}")
    return 0


def cmd_calibration_delete(args: argparse.Namespace) -> int:
    from core import calibrations

    with db.connect() as conn, db.translate():
        old = calibrations.delete_calibration(conn, args.id, args.actor)
        conn.commit()
    print(f"calibration {args.id} of {old['point']} deleted")
    return 0


def _calibration_parser(sub: Any) -> None:
    cp = sub.add_parser("calibration", help="calibration periods of measurement points (slope/offset)"
                        ).add_subparsers(dest="calibration_cmd", required=True)
    s = cp.add_parser("list", help="the calibration periods of a station")
    s.add_argument("--station", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_calibration_list)
    s = cp.add_parser("add", help="add a calibration period [from, to) to a measurement point")
    s.add_argument("--station", required=True)
    s.add_argument("--point", required=True, help="measurement point name (see calibration list)")
    s.add_argument("--from", dest="valid_from", required=True, help="ISO date-time, UTC unless it has a zone")
    s.add_argument("--to", dest="valid_to", help="ISO date-time (exclusive); default: open")
    s.add_argument("--logger-slope", type=float, required=True, help="slope programmed in the logger")
    s.add_argument("--logger-offset", type=float, required=True, help="offset programmed in the logger")
    s.add_argument("--slope", type=float, required=True, help="slope of the calibration certificate")
    s.add_argument("--offset", type=float, required=True, help="offset of the calibration certificate")
    s.add_argument("--certificate", help="certificate reference (lab, report, date)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_calibration_add)
    s = cp.add_parser("delete", help="delete a calibration period")
    s.add_argument("id", type=int)
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_calibration_delete)


# --- exports --------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """Request an export, wait for a worker (or build it here when none runs), copy it out."""
    import shutil

    from core import exports, limits

    limits.check_timezone(args.timezone)  # before core.exports opens it: "Europe" is a folder there
    if args.include_flagged and args.exclude:
        raise StationManagerError("give --include-flagged or --exclude, not both")
    ids = None
    with db.connect(autocommit=True) as conn, db.translate():
        if args.channels:
            ids = tuple(flags.channel_ids_by_name(conn, args.station, args.channels.split(",")))
        req = exports.ExportRequest(
            station=args.station, format=args.format, start=_when(args.start), end=_when(args.end),
            channel_ids=ids, measurement_types=tuple(args.types.split(",")) if args.types else None,
            calibrated=not args.raw,
            exclude_categories=() if args.include_flagged else (tuple(args.exclude) if args.exclude else None),
            averaging=args.averaging, timezone=args.timezone, parquet_layout=args.layout, headers=args.headers)
        row = exports.request_export(conn, req, args.actor)
        row = _wait_for_export(conn, row, quiet=args.json)
    if row["status"] != "done":
        raise StationManagerError(f"export {row['id']} {row['status']}: {row['error'] or row['message']}")
    src = exports.export_file(row)
    out = Path(args.out) if args.out else Path(row["file_name"])
    if out.is_dir():
        out = out / row["file_name"]
    shutil.copyfile(src, out)
    side = src.with_name(src.stem + ".provenance.json")
    if side.is_file():
        shutil.copyfile(side, out.with_name(out.stem + ".provenance.json"))
    result = {"id": row["id"], "status": row["status"], "reused": row["reused"], "file": str(out),
              "size_bytes": row["size_bytes"], "rows": row["n_rows"], "values": row["n_values"]}
    if args.json:
        _print_json(result)
    else:
        how = f"reused export {row['reused_from']}" if row["reused"] else f"export {row['id']}"
        print(f"{out}: {row['n_rows']:,} rows, {row['size_bytes']:,} bytes ({how})")
    return 0


def _wait_for_export(conn: Any, row: dict[str, Any], *, quiet: bool, timeout: float = 24 * 3600) -> dict[str, Any]:
    """Follow an export until it is done or failed; build it in this process if no worker runs."""
    from core import exports

    deadline = time.monotonic() + timeout
    last = ""
    while row["status"] in ("queued", "running"):
        if row["status"] == "queued" and not exports.worker_alive(conn):
            if not quiet:
                print("no worker is running: building the export here", file=sys.stderr)
            row = exports.build_export(row["id"])
            continue
        line = f"export {row['id']}: {row['status']} {row['progress'] * 100:.0f} % {row['message']}"
        if not quiet and line != last:
            print(line, file=sys.stderr)
            last = line
        if time.monotonic() > deadline:
            raise StationManagerError(f"gave up waiting for export {row['id']}")
        time.sleep(0.5)
        row = exports.get_export(conn, row["id"])
    return row


# --- parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stationmanager", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("settings", help="list the settings, their values and defaults")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_settings)

    dbp = sub.add_parser("db", help="database schema and status").add_subparsers(dest="db_cmd", required=True)
    s = dbp.add_parser("upgrade", help="apply pending migrations")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_db_upgrade)
    s = dbp.add_parser("status", help="versions, storage level, connections, row counts")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_db_status)
    s = dbp.add_parser("raise-level", help="move this database up to the best storage level the server offers "
                       "(stop the workers and the app first)")
    s.add_argument("--to", type=int, choices=(1, 2), help="the level to move to (default: the best offered)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_db_raise_level)
    from core import cli_reader

    cli_reader.add_parser(dbp)

    s = sub.add_parser("ingest", help="store logger files and queue their import")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--station", help="station the files belong to (created if new); "
                   "without it, files are routed by the logger serial or station in their header")
    s.add_argument("--wait", action="store_true", help="wait until a worker has imported them (or they failed)")
    s.add_argument("--timeout", type=float, default=3600, metavar="SECONDS",
                   help="with --wait: give up after this long (default 3600)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("files", help="list received files and their status")
    s.add_argument("--station", help="only this station ('-': files without a station)")
    s.add_argument("--status", choices=("queued", "importing", "imported", "failed", "duplicate",
                                        "needs station", "unpacked"))
    s.add_argument("--limit", type=int, default=1000, help="newest N files (default 1000)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_files)

    s = sub.add_parser("requeue", help="import files again; with --station, assign a station first")
    s.add_argument("ids", nargs="+", type=int, metavar="FILE_ID")
    s.add_argument("--station", help="station for files that need one (created if new)")
    s.add_argument("--wait", action="store_true")
    s.add_argument("--timeout", type=float, default=3600, metavar="SECONDS",
                   help="with --wait: give up after this long (default 3600)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_requeue)

    s = sub.add_parser("import-metadata", help="import an IEA Task 43 data model JSON (station, "
                       "loggers, measurement points, column mapping, calibrations)")
    s.add_argument("file", metavar="FILE.json")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_import_metadata)

    mp = sub.add_parser("mapping", help="how a station's delimited text files are laid out").add_subparsers(
        dest="mapping_cmd", required=True)
    s = mp.add_parser("set", help="save a file mapping (JSON: header_row, delimiter, timestamp, "
                      "time_format, utc_offset_minutes, timestamp_is_end, missing, decimal, ...)")
    s.add_argument("file", metavar="MAPPING.json")
    s.add_argument("--station", required=True)
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_mapping_set)

    lp = sub.add_parser("logger", help="a station's logger configuration").add_subparsers(
        dest="logger_cmd", required=True)
    s = lp.add_parser("set", help="whether the station's loggers stamp the start or the end of each period")
    s.add_argument("--station", required=True)
    s.add_argument("--serial", help="only the logger with this serial (default: every logger of the station)")
    s.add_argument("--timestamp-is-end", required=True, choices=("true", "false", "unknown"),
                   help="true: stamps mark the end of the period (Campbell); false: the start "
                   "(NRG, Windographer, brightwind); unknown: as each file says, else the start")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_logger_set)

    fp = sub.add_parser("flag", help="flags on readings, and the suggestions of the quality checks").add_subparsers(
        dest="flag_cmd", required=True)
    s = fp.add_parser("add", help="flag channels (or the whole station) over [start, end)")
    s.add_argument("--station", required=True)
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--channels", metavar="C1,C2", help="column names (or channel ids), comma-separated")
    which.add_argument("--station-wide", action="store_true",
                       help="every channel of the station, also channels added later")
    s.add_argument("--start", required=True, help="ISO date-time, UTC unless it has an offset")
    s.add_argument("--end", required=True, help="ISO date-time (exclusive)")
    s.add_argument("--category", required=True, choices=flags.CATEGORIES)
    s.add_argument("--note")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_flag_add)
    s = fp.add_parser("list", help="the flags of a station")
    s.add_argument("--station", required=True)
    s.add_argument("--start", help="only flags overlapping [start, end)")
    s.add_argument("--end")
    s.add_argument("--deleted", action="store_true", help="also deleted flags")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_flag_list)
    for name, undo, text in (("delete", False, "delete a flag (it is kept, marked deleted)"),
                             ("undelete", True, "restore a deleted flag")):
        s = fp.add_parser(name, help=text)
        s.add_argument("id", type=int, metavar="FLAG_ID")
        s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
        s.set_defaults(func=cmd_flag_delete, undo=undo)
    s = fp.add_parser("suggestions", help="what the quality checks suggest flagging")
    s.add_argument("--station", required=True)
    s.add_argument("--status", default="open", choices=("open", "accepted", "dismissed", "all"))
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_flag_suggestions)
    s = fp.add_parser("accept", help="turn suggestions into flags (a gap is acknowledged, not flagged)")
    s.add_argument("ids", nargs="*", type=int, metavar="SUGGESTION_ID")
    s.add_argument("--all", action="store_true", help="every open suggestion of --station")
    s.add_argument("--station")
    s.add_argument("--category", choices=flags.CATEGORIES, help="instead of the one the rule implies")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_flag_accept)
    s = fp.add_parser("dismiss", help="dismiss suggestions (not suggested again)")
    s.add_argument("ids", nargs="+", type=int, metavar="SUGGESTION_ID")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_flag_dismiss)
    s = fp.add_parser("import", help="add the flags of a brightwind cleaning file or a Windographer flag log "
                      "(times in UTC; importing the same file again adds nothing)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--station", required=True)
    s.add_argument("--format", required=True, choices=("brightwind", "windographer"))
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_flag_import)
    s = fp.add_parser("export", help="write a station's flags as a brightwind cleaning file or a Windographer "
                      "flag log (times in UTC)")
    s.add_argument("--station", required=True)
    s.add_argument("--format", required=True, choices=("brightwind", "windographer"))
    s.add_argument("--out", required=True, metavar="PATH")
    s.set_defaults(func=cmd_flag_export)

    s = sub.add_parser("qc", help="run the quality checks of a station now and store their suggestions")
    s.add_argument("--station", required=True)
    s.add_argument("--start", help="ISO date-time (default: the first reading)")
    s.add_argument("--end", help="ISO date-time, exclusive (default: just after the last reading)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_qc)

    s = sub.add_parser("export", help="export a station's clean data (Windographer, CSV, zip, Parquet)")
    s.add_argument("--station", required=True)
    s.add_argument("--format", required=True, choices=("windographer", "csv", "zip", "parquet"))
    s.add_argument("--start", help="ISO date-time, UTC unless it has an offset (default: the first reading)")
    s.add_argument("--end", help="ISO date-time, exclusive (default: after the last reading)")
    s.add_argument("--channels", metavar="C1,C2", help="column names (or ids); default: every mapped channel")
    s.add_argument("--types", metavar="T1,T2", help="measurement types, e.g. wind_speed,wind_direction")
    s.add_argument("--raw", action="store_true", help="values as logged, not recalibrated")
    s.add_argument("--include-flagged", action="store_true", help="keep flagged values")
    s.add_argument("--exclude", nargs="+", metavar="CATEGORY", choices=flags.CATEGORIES,
                   help="remove only the values flagged with these categories (default: every category)")
    s.add_argument("--averaging", default="10min", choices=("10min", "1h", "1d"))
    s.add_argument("--timezone", default="UTC", help="IANA time zone of the written time stamps")
    s.add_argument("--layout", default="wide", choices=("wide", "long", "tidy"),
                   help="Parquet layout: wide (a column per channel), long (time, channel, value) or tidy "
                        "(a row per value with its channel's metadata and flag, as the API's readings)")
    s.add_argument("--headers", default="descriptive", choices=("descriptive", "logger"),
                   help="column headers: descriptive (Speed 80 m N Avg [m/s]) or the logger's column "
                        "names (Spd80mN); the provenance maps one to the other either way")
    s.add_argument("--out", help="file or folder to copy the export to (default: its name, here)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("worker", help="run an ingest worker (same as python -m ingest_worker)")
    s.add_argument("--concurrency", type=int, help="jobs at once (default: STATIONMANAGER_WORKER_CONCURRENCY)")
    s.add_argument("--once", action="store_true", help="exit when the queue is empty")
    s.add_argument("--check", action="store_true",
                   help="run no worker: exit 0 if the database answers and a worker is running (health checks)")
    s.set_defaults(func=cmd_worker)

    up = sub.add_parser("users", help="manage app users").add_subparsers(dest="users_cmd", required=True)
    s = up.add_parser("add", help="add or update a user; the password is read from stdin")
    s.add_argument("name")
    s.add_argument("--role", required=True, choices=auth.ROLES)
    s.add_argument("--email")
    s.set_defaults(func=cmd_users_add)
    s = up.add_parser("list", help="list users")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_users_list)
    s = up.add_parser("remove", help="remove a user")
    s.add_argument("name")
    s.set_defaults(func=cmd_users_remove)
    s = up.add_parser("logout", help="end every session of a user, in every browser")
    s.add_argument("name")
    s.set_defaults(func=cmd_users_logout)
    s = up.add_parser("unlock", help="forget a user name's failed sign-ins (lift its lock)")
    s.add_argument("name")
    s.set_defaults(func=cmd_users_unlock)

    s = sub.add_parser("demo", help="generate the demo site in the demo home (.stationmanager-demo unless "
                       "STATIONMANAGER_HOME is set) and queue its files")
    s.add_argument("--days", type=int, default=365)
    s.add_argument("--wait", action="store_true", help="wait until a worker has imported them")
    s.add_argument("--timeout", type=float, default=3600, metavar="SECONDS",
                   help="with --wait: give up after this long (default 3600)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("up", help="run the database, a worker, the web app and the HTTP API until Ctrl-C")
    s.add_argument("--demo", action="store_true",
                   help="in the demo home (.stationmanager-demo unless STATIONMANAGER_HOME is set), "
                   "also load the demo site and demo users")
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--api-port", type=int, help="port of the HTTP API (default STATIONMANAGER_API_PORT, 8502)")
    s.add_argument("--days", type=int, default=365, help="days of demo data (default 365)")
    s.set_defaults(func=cmd_up)
    _calibration_parser(sub)
    from core import cli_sources

    cli_sources.add_parser(sub)
    from core import cli_alerts

    cli_alerts.add_parser(sub)
    from core import cli_api

    cli_api.add_parser(sub)
    from core import cli_backup

    cli_backup.add_parser(sub, dbp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(get_settings().log_level)
    # SIGTERM ends the CLI like Ctrl-C, so clean-up (and the embedded server's) runs.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return args.func(args)
    except StationManagerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if argv is None:  # the program (not a call from Python) is about to exit:
            # its exit handlers let go of the embedded server, which stops with its last
            # holder; a further Ctrl-C or SIGTERM must not cut them short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        db.close_pools()


if __name__ == "__main__":
    raise SystemExit(main())
