"""What alerts go where: targets, subscriptions and per-source rules (all audited).

A **target** is an email server or a webhook (Slack, Teams, anything that takes a JSON
POST). Its secrets stay in ``HOME/secrets.toml`` (mode 0600) or ``STATIONMANAGER_SECRET_*``
variables, under the section the target names: ``username``/``password`` of the mail
server, the webhook's ``url`` (it embeds a token). The mail server's host, port, security
(``starttls``, ``tls``, or ``none``, allowed only on the loopback) and From address are
plain options, kept in the database.

A **subscription** is a user (address from the user file) or a typed address, the targets
to use, every station or a list, and an optional daily digest hour.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from core import auth, credentials, db
from core.errors import ConfigError, NotFound
from core.settings import Settings

_sql = db.SqlFile("alerts.sql")
KINDS = ("email", "webhook")
SECURITY = ("starttls", "tls", "none")
EMAIL_OPTIONS = ("host", "port", "security", "from", "ca_file")
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine (the only place plain SMTP and HTTP are allowed).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("mail.example.com")
    (True, True, True, False)
    """
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_address(address: str) -> str:
    """An email address as stored, or a :class:`ConfigError`.

    >>> check_address(" ops@example.com ")
    'ops@example.com'
    >>> check_address("ops@example.com, boss@example.com")
    Traceback (most recent call last):
    core.errors.ConfigError: 'ops@example.com, boss@example.com' is not one email address
    """
    address = address.strip()
    if not _ADDRESS.match(address):
        raise ConfigError(f"{address!r} is not one email address")
    return address


def email_options(options: dict[str, Any]) -> dict[str, Any]:
    """A mail server's options, checked: host, port (default by security), security, from.

    >>> email_options({"host": "smtp.example.com", "from": "sm@example.com"})["port"]
    587
    >>> email_options({"host": "smtp.example.com", "from": "sm@example.com", "security": "none"})
    Traceback (most recent call last):
    core.errors.ConfigError: security 'none' sends mail in clear: only to this machine (127.0.0.1); use starttls or tls
    """
    unknown = set(options) - set(EMAIL_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown email option(s) {', '.join(sorted(unknown))}: use {', '.join(EMAIL_OPTIONS)}")
    out = {k: v for k, v in options.items() if v not in (None, "")}
    if not out.get("host"):
        raise ConfigError("an email target needs the mail server's host")
    out["security"] = out.get("security") or "starttls"
    if out["security"] not in SECURITY:
        raise ConfigError(f"security {out['security']!r}: use {', '.join(SECURITY)}")
    if out["security"] == "none" and not is_loopback(out["host"]):
        raise ConfigError("security 'none' sends mail in clear: only to this machine (127.0.0.1); "
                          "use starttls or tls")
    out["port"] = int(out.get("port") or {"starttls": 587, "tls": 465, "none": 25}[out["security"]])
    out["from"] = check_address(str(out.get("from") or ""))
    return out


def add_target(conn: psycopg.Connection, actor: str, name: str, kind: str, credentials_name: str | None = None,
               **options: Any) -> dict:
    """Define a target. A webhook needs ``credentials_name`` (its URL is a secret)."""
    if not name.strip():
        raise ConfigError("a target needs a name")
    if kind not in KINDS:
        raise ConfigError(f"unknown target kind {kind!r}: use {' or '.join(KINDS)}")
    if kind == "email":
        options = email_options(options)
    else:
        if options:
            raise ConfigError("a webhook takes no options: its URL goes in the secrets file, as `url`")
        if not credentials_name:
            raise ConfigError("a webhook's URL holds a token: put it in secrets.toml ([NAME] url = \"https://…\") "
                              "and give that NAME as its credentials")
    if get_target(conn, name, missing_ok=True):
        raise ConfigError(f"a target called {name!r} exists already")
    row = _sql.fetch_one(conn, "insert_target", name=name.strip(), kind=kind, credentials=credentials_name or None,
                         options=Jsonb(options))
    assert row is not None
    db.audit(conn, actor, "create", "alert target", row["id"], name=name, kind=kind, credentials=credentials_name,
             **options)
    return row


def remove_target(conn: psycopg.Connection, actor: str, name: str) -> None:
    row = _sql.fetch_one(conn, "delete_target", name=name)
    if row is None:
        raise NotFound(f"no alert target called {name!r}")
    db.audit(conn, actor, "delete", "alert target", row["id"], name=name)


def get_target(conn: psycopg.Connection, name: str, *, missing_ok: bool = False) -> dict:
    row = _sql.fetch_one(conn, "target_by_name", name=name)
    if row is None and not missing_ok:
        raise NotFound(f"no alert target called {name!r} (stationmanager alerts targets)")
    return row  # type: ignore[return-value]


def targets(conn: psycopg.Connection) -> list[dict]:
    return _sql.fetch_all(conn, "list_targets")


def subscribe(conn: psycopg.Connection, actor: str, subscriber: str, targets_: list[str], *,
              email: str | None = None, stations: list[str] | None = None, digest_hour: int | None = None,
              settings: Settings) -> dict:
    """Create or replace the subscription of ``subscriber`` (a user name, or an address).

    An email target needs an address: ``email``, else the user's in the user file, else
    ``subscriber`` itself when it is an address.
    """
    subscriber = subscriber.strip()
    if not subscriber:
        raise ConfigError("who subscribes? give a user name or an email address")
    if not targets_:
        raise ConfigError("a subscription needs at least one target (stationmanager alerts targets)")
    kinds = {get_target(conn, t)["kind"] for t in targets_}
    email = check_address(email) if email else None
    if "email" in kinds and email is None and address_of(subscriber, settings) is None:
        raise ConfigError(f"{subscriber!r} has no email address: give one (--email), or add it to the user file")
    if digest_hour is not None and not 0 <= digest_hour <= 23:
        raise ConfigError("the digest hour is 0 to 23")
    names = sorted(set(stations)) if stations else None
    if names:
        known = {r["name"] for r in db.fetch_all(conn, "stations")}
        missing = [s for s in names if s not in known]
        if missing:
            raise NotFound(f"no station called {', '.join(map(repr, missing))}")
    row = _sql.fetch_one(conn, "upsert_subscription", subscriber=subscriber, email=email,
                         targets=sorted(set(targets_)), stations=names, digest_hour=digest_hour)
    assert row is not None
    db.audit(conn, actor, "subscribe", "alert subscription", row["id"], subscriber=subscriber, email=email,
             targets=row["targets"], stations=names, digest_hour=digest_hour)
    return row


def unsubscribe(conn: psycopg.Connection, actor: str, subscriber: str) -> None:
    row = _sql.fetch_one(conn, "delete_subscription", subscriber=subscriber)
    if row is None:
        raise NotFound(f"{subscriber!r} has no subscription")
    db.audit(conn, actor, "unsubscribe", "alert subscription", row["id"], subscriber=subscriber)


def subscriptions(conn: psycopg.Connection) -> list[dict]:
    return _sql.fetch_all(conn, "list_subscriptions")


def address_of(subscriber: str, settings: Settings, email: str | None = None) -> str | None:
    """Where a subscriber's mail goes: the typed address, else the user's address in the
    user file (read now, so a changed address applies), else the subscriber when it is an
    address."""
    if email:
        return email
    entry = auth.user(auth.load_cached(settings.users_file), subscriber)
    if entry and _ADDRESS.match(str(entry.get("email") or "")):
        return str(entry["email"])
    return subscriber if _ADDRESS.match(subscriber) else None


def set_rule(conn: psycopg.Connection, actor: str, source: str, failures: int | None) -> None:
    """How many failed runs in a row make ``source`` failing (None: the setting's number)."""
    from core import sources

    src = sources.get_source(conn, source)
    if failures is None:
        conn.execute(_sql.q("clear_rule"), {"source_id": src["id"]})
    else:
        if failures < 1:
            raise ConfigError("the number of failed runs must be at least 1")
        conn.execute(_sql.q("set_rule"), {"source_id": src["id"], "failures": failures})
    db.audit(conn, actor, "alert rule", "source", src["id"], failures=failures)


def rules(conn: psycopg.Connection) -> list[dict]:
    return _sql.fetch_all(conn, "list_rules")


def public_target(t: dict[str, Any]) -> dict[str, Any]:
    """A target as shown: its options and the NAME of its secrets, never a secret."""
    o = t["options"] or {}
    where = f"{o.get('host')}:{o.get('port')} ({o.get('security')}), from {o.get('from')}" if t["kind"] == "email" \
        else "URL in the secrets file"
    return {"name": t["name"], "kind": t["kind"], "credentials": t["credentials"], "where": where, **o}


def public_subscription(s: dict[str, Any]) -> dict[str, Any]:
    return {"subscriber": s["subscriber"], "email": s["email"], "targets": s["targets"],
            "stations": s["stations"] or "all", "digest_hour": s["digest_hour"]}


# --- secrets ---------------------------------------------------------------------------------


def webhook_url(name: str, settings: Settings) -> str:
    """The URL of a webhook target: ``url`` in section ``name`` of the secrets file, or
    ``STATIONMANAGER_SECRET_<NAME>_URL``; https, or http on the loopback only."""
    url = os.environ.get(credentials.env_name(name, "url")) or str(
        credentials.read_file(settings.secrets_file).get(name, {}).get("url") or "")
    if not url:
        raise ConfigError(f"no webhook URL called {name!r}: add `url = \"https://…\"` to the [{name}] section of "
                          f"{settings.secrets_file} or set {credentials.env_name(name, 'url')}")
    u = urlsplit(url)
    if u.scheme != "https" and not (u.scheme == "http" and is_loopback(u.hostname)):
        raise ConfigError(f"the webhook URL of {name!r} must be https:// (plain http only to 127.0.0.1)")
    return url


def smtp_login(name: str | None, settings: Settings) -> credentials.Credentials | None:
    """The mail server's login (username, password) from the secrets, or None without one."""
    return credentials.lookup(name, settings.secrets_file) if name else None
