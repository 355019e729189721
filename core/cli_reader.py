"""``stationmanager db reader-role NAME`` — a read-only PostgreSQL role for notebooks
(see ``core.reader_roles`` and ``docs/notebooks.md``)."""

from __future__ import annotations

import argparse
import sys

from core import db, reader_roles
from core.cli import _print_json  # core.cli imports this module lazily: no cycle
from core.errors import StationManagerError


def cmd_reader_role(args: argparse.Namespace) -> int:
    url = db.database_url()
    with db.connect(url, autocommit=True) as conn:
        if args.drop:
            result = reader_roles.drop(conn, args.name)
            if args.json:
                _print_json(result)
            elif result["dropped"]:
                print(f"reader role {args.name} dropped (its sessions here ended)")
            else:
                print(f"reader role {args.name}: access to this database removed; {result['note']}")
            return 0
        password = _password_stdin() if args.password_stdin else None
        result = reader_roles.ensure(conn, args.name, connections=args.connections,
                                     statement_timeout_s=args.statement_timeout, work_mem_mb=args.work_mem,
                                     password=password)
    shown = result["password"] if result["created"] and not args.password_stdin else None
    result["url"] = reader_roles.reader_url(url, args.name, shown)
    if args.json:
        _print_json({**result, "password": shown})
        return 0
    s = result["settings"]
    print(f"reader role {args.name} {'created' if result['created'] else 'updated'}: reads the tidy views only, "
          f"at most {result['connections']} connections, statement timeout {int(s['statement_timeout']) / 1000:g} s, "
          f"work_mem {s['work_mem']}, read-only transactions")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"connection URL{' (the password is shown only now)' if shown else ''}:")
    print(result["url"])
    return 0


def _password_stdin() -> str:
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise StationManagerError("--password-stdin: no password on the standard input")
    return password


def add_parser(dbp: argparse._SubParsersAction) -> None:
    """``db reader-role`` under the ``db`` command's sub-commands."""
    s = dbp.add_parser("reader-role", help="create or update a read-only role that sees only the tidy views "
                       "(for notebooks; docs/notebooks.md); run again to change its limits")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--connections", type=int, metavar="N",
                   help="most connections at once (default: STATIONMANAGER_READER_CONNECTIONS)")
    s.add_argument("--statement-timeout", type=float, metavar="S",
                   help="seconds a query may run (default: STATIONMANAGER_READER_STATEMENT_TIMEOUT_S)")
    s.add_argument("--work-mem", type=int, metavar="MB",
                   help="MiB per sort or hash step (default: STATIONMANAGER_READER_WORK_MEM_MB)")
    s.add_argument("--password-stdin", action="store_true",
                   help="read the password from the standard input (default: a random one for a new role, "
                   "the same one for an existing role)")
    s.add_argument("--drop", action="store_true", help="end its sessions, remove its access and drop it")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_reader_role)
