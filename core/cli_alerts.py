"""``stationmanager alerts …`` — targets, subscriptions, per-source rules, the alert log,
and a test message to each target (see ``core.alerts``)."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from core import alerts, db
from core.alerts import config
from core.cli import _print_json, _table  # core.cli imports this module lazily: no cycle
from core.settings import get_settings


def cmd_targets(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate(), conn.transaction():
        if args.targets_cmd == "add":
            options = {k: v for k, v in (("host", args.host), ("port", args.port), ("security", args.security),
                                         ("from", args.sender), ("ca_file", args.ca_file)) if v is not None}
            config.add_target(conn, args.actor, args.name, args.kind, args.credentials, **options)
        elif args.targets_cmd == "remove":
            config.remove_target(conn, args.actor, args.name)
        rows = [config.public_target(t) for t in config.targets(conn)]
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["name", "kind", "credentials", "where"])
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate(), conn.transaction():
        row = config.subscribe(conn, args.actor, args.subscriber, args.target, email=args.email,
                               stations=args.station, digest_hour=args.digest_hour, settings=get_settings())
    out = config.public_subscription(row)
    if args.json:
        _print_json(out)
    else:
        print(f"{out['subscriber']}: {', '.join(out['targets'])}; stations: "
              f"{out['stations'] if out['stations'] == 'all' else ', '.join(out['stations'])}"
              + (f"; digest at {out['digest_hour']}:00" if out["digest_hour"] is not None else ""))
    return 0


def cmd_unsubscribe(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate(), conn.transaction():
        config.unsubscribe(conn, args.actor, args.subscriber)
    print(f"{args.subscriber}: unsubscribed")
    return 0


def cmd_rule(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate(), conn.transaction():
        config.set_rule(conn, args.actor, args.source, None if args.default else args.failures)
    n = args.failures if not args.default else f"the setting's ({get_settings().alert_source_failures})"
    print(f"{args.source}: alerted after {n} failed runs in a row")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with db.connect() as conn, db.translate():
        out = {"targets": [config.public_target(t) for t in config.targets(conn)],
               "subscriptions": [config.public_subscription(s) for s in config.subscriptions(conn)],
               "rules": config.rules(conn), "states": alerts.states(conn),
               "log": alerts.messages(conn, limit=args.limit)}
    if args.json:
        _print_json(out)
        return 0
    for title, rows, cols in (
            ("Targets", out["targets"], ["name", "kind", "credentials", "where"]),
            ("Subscriptions", out["subscriptions"], ["subscriber", "email", "targets", "stations", "digest_hour"]),
            ("Source rules", out["rules"], ["source", "failures"]),
            ("States", out["states"], ["subject_kind", "subject_name", "state", "since", "detail"]),
            ("Log", out["log"], ["created_at", "kind", "target_name", "recipient", "subject", "status", "attempts",
                                 "error"])):
        print(f"\n{title}:")
        _table(rows, cols)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Send one test message to each target now (here, not by the worker), and say how it went."""
    with db.connect(autocommit=True) as conn, db.translate():
        with conn.transaction():
            ids = alerts.queue_tests(conn, args.actor, target=args.target, to=args.to)
        alerts.deliver(conn, ids=ids)
        rows = [{"target": m["target_name"], "recipient": m["recipient"], "status": m["status"],
                 "error": m["error"]} for m in reversed(alerts.messages(conn, ids=ids))]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            to = f" ({r['recipient']})" if r["recipient"] else ""
            print(f"{r['target']}{to}: {r['status']}" + (f": {r['error']}" if r["error"] else ""))
    return 0 if all(r["status"] == "sent" for r in rows) else 1


def add_parser(sub: Any) -> None:
    ap = sub.add_parser("alerts", help="messages by email and webhook when stations or sources go wrong "
                        "and recover").add_subparsers(dest="alerts_cmd", required=True)
    actor = {"default": getpass.getuser(), "help": argparse.SUPPRESS}

    s = ap.add_parser("targets", help="list the targets (mail servers, webhooks); add or remove one")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", **actor)
    s.set_defaults(func=cmd_targets, targets_cmd=None)
    tp = s.add_subparsers(dest="targets_cmd")
    t = tp.add_parser("add", help="add a mail server or a webhook")
    t.add_argument("name")
    t.add_argument("--kind", choices=config.KINDS, required=True)
    t.add_argument("--credentials", metavar="NAME", help="section of HOME/secrets.toml: the mail server's "
                   "username and password, or the webhook's url (required for a webhook)")
    t.add_argument("--host", help="mail server")
    t.add_argument("--port", type=int, help="default 587 (starttls), 465 (tls), 25 (none)")
    t.add_argument("--security", choices=config.SECURITY, help="default starttls; none only to 127.0.0.1")
    t.add_argument("--from", dest="sender", metavar="ADDRESS", help="the mails' From address")
    t.add_argument("--ca-file", help="certificates to trust for this mail server (default: the system's)")
    t.add_argument("--json", action="store_true")
    t.add_argument("--actor", **actor)
    t = tp.add_parser("remove", help="remove a target")
    t.add_argument("name")
    t.add_argument("--json", action="store_true")
    t.add_argument("--actor", **actor)

    s = ap.add_parser("subscribe", help="who hears about which stations, through which targets "
                      "(replaces the subscriber's earlier subscription)")
    s.add_argument("subscriber", help="a user name (address from the user file) or an email address")
    s.add_argument("--target", action="append", required=True, help="a target's name (repeat for more)")
    s.add_argument("--email", help="the address to use instead of the user file's")
    s.add_argument("--station", nargs="+", help="only these stations (default: every station and source)")
    s.add_argument("--digest-hour", type=int, metavar="H", help="a daily summary at this hour "
                   "(STATIONMANAGER_ALERT_TIME_ZONE)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", **actor)
    s.set_defaults(func=cmd_subscribe)

    s = ap.add_parser("unsubscribe", help="remove a subscription")
    s.add_argument("subscriber")
    s.add_argument("--actor", **actor)
    s.set_defaults(func=cmd_unsubscribe)

    s = ap.add_parser("rule", help="failed runs in a row after which a source is alerted")
    s.add_argument("source")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--failures", type=int, metavar="N")
    g.add_argument("--default", action="store_true", help="use STATIONMANAGER_ALERT_SOURCE_FAILURES again")
    s.add_argument("--actor", **actor)
    s.set_defaults(func=cmd_rule)

    s = ap.add_parser("list", help="targets, subscriptions, rules, current states and the alert log")
    s.add_argument("--limit", type=int, default=20, help="log lines (default 20)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    s = ap.add_parser("test", help="send one test message to each target now; prints sent, or the error")
    s.add_argument("--target", help="only this target")
    s.add_argument("--to", metavar="ADDRESS", help="where an email target's test goes (default: its From)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--actor", **actor)
    s.set_defaults(func=cmd_test)
