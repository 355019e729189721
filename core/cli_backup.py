"""``stationmanager backup DIR``, ``restore DIR [--to URL]`` and ``db copy --to URL`` (see ``core.backup``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import backup, db
from core.cli import _print_json  # core.cli imports this module lazily: no cycle


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_backup(args: argparse.Namespace) -> int:
    manifest = backup.backup(Path(args.dir), link=args.link, progress=_progress)
    if args.json:
        _print_json({k: manifest[k] for k in ("made_at", "schema_version", "storage_level", "missing_files")}
                    | {"tables": {t["name"]: t["rows"] for t in manifest["tables"]}, "files": len(manifest["files"])})
    return 1 if manifest["missing_files"] else 0


def cmd_restore(args: argparse.Namespace) -> int:
    result = backup.restore(Path(args.dir), args.to, progress=_progress)
    if args.json:
        _print_json(result)
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    result = backup.copy_database(args.to, progress=_progress)
    if args.json:
        _print_json(result | {"to": db.redact(args.to)})
    return 0


def add_parser(sub: argparse._SubParsersAction, dbp: argparse._SubParsersAction) -> None:
    s = sub.add_parser("backup", help="back up the database, the original files, the users and the settings "
                       "(never the secrets) into a new folder")
    s.add_argument("dir", metavar="DIR", help="a new (or empty) folder")
    s.add_argument("--link", action="store_true",
                   help="hard-link the original files instead of copying them (same file system only)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser("restore", help="restore a backup into an empty database and this home's file store")
    s.add_argument("dir", metavar="DIR", help="a folder made by `stationmanager backup`")
    s.add_argument("--to", metavar="URL", help="the empty database (created when missing; default: "
                   "STATIONMANAGER_DATABASE_URL, else the embedded one)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_restore)

    s = dbp.add_parser("copy", help="copy this database into an empty one, e.g. from the embedded server "
                       "to a TimescaleDB server")
    s.add_argument("--to", metavar="URL", required=True, help="the empty database (created when missing)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_copy)
