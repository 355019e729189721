"""``stationmanager api`` (the HTTP API process) and ``stationmanager tokens …`` (its tokens)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from core import api_tokens, auth, db, schema
from core.cli import _print_json, _table  # core.cli imports this module lazily: no cycle


def cmd_api(args: argparse.Namespace) -> int:
    from api.server import serve  # the web framework stays out of core

    return serve(args.host, args.port)


def cmd_tokens_add(args: argparse.Namespace) -> int:
    url = db.database_url()
    schema.upgrade(url)
    with db.connect(url) as conn, db.translate():
        token, row = api_tokens.add(conn, args.name, args.role, args.actor)
    if args.json:
        _print_json({**row, "token": token})
    else:
        print(token)
        print(f"token {row['name']} ({row['role']}) made: the line above is shown once and never again; "
              "send it as 'Authorization: Bearer TOKEN'", file=sys.stderr)
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate():
        api_tokens.revoke(conn, args.name, args.actor)
    print(f"token {args.name} revoked: the API refuses it from now on")
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate():
        rows: list[dict[str, Any]] = api_tokens.list_tokens(conn, revoked=args.revoked)
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["name", "role", "created_by", "created_at", "last_used_at"]
               + (["revoked_by", "revoked_at"] if args.revoked else []))
    return 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser("api", help="run the HTTP API (OpenAPI at /api/v1/openapi.json) until Ctrl-C")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default STATIONMANAGER_API_PORT)")
    s.set_defaults(func=cmd_api)

    tp = sub.add_parser("tokens", help="tokens of the HTTP API").add_subparsers(dest="tokens_cmd", required=True)
    s = tp.add_parser("add", help="make a token (printed once; only its hash is kept)")
    s.add_argument("name")
    s.add_argument("--role", required=True, choices=auth.ROLES)
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_tokens_add)
    s = tp.add_parser("revoke", help="stop a token working (it stays listed with --revoked)")
    s.add_argument("name")
    s.add_argument("--actor", default=getpass.getuser(), help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_tokens_revoke)
    s = tp.add_parser("list", help="the tokens, their roles and when each was last used")
    s.add_argument("--revoked", action="store_true", help="also revoked tokens")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_tokens_list)
