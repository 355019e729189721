"""Real receivers of alerts on 127.0.0.1: a mail server (aiosmtpd: plain, STARTTLS with a
certificate made in the test and a login, or implicit TLS) and a webhook receiver
(http.server) that records every JSON POST. Both run in threads of the test process."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.integration.servers import self_signed_cert

SMTP_USER, SMTP_PASSWORD = "alerts", "m4il-Pa55-word"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """What a mail server received; ``refuse`` makes it answer 451 to every message."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.refuse = False
        self.logins: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse:
            return "451 4.3.0 mailbox busy, try again later"
        from email import message_from_bytes

        msg = message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append({"to": list(envelope.rcpt_tos), "from": envelope.mail_from,
                                  "subject": msg["Subject"], "body": msg.get_payload(decode=True).decode()})
        return "250 OK"


@contextmanager
def smtp_server(tmp: Path, security: str = "none") -> Iterator[tuple[Mailbox, dict]]:
    """A mail server; yields its mailbox and the target options to reach it."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    box = Mailbox()
    port = free_port()
    options = {"host": "127.0.0.1", "port": port, "security": security, "from": "sm@example.com"}
    kw: dict = {}
    if security != "none":
        cert, key = self_signed_cert(tmp)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        options["ca_file"] = str(cert)

        def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
            ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
            if ok:
                box.logins.append(SMTP_USER)
            return AuthResult(success=ok)

        if security == "starttls":
            kw.update(authenticator=check, auth_require_tls=True, tls_context=ctx, require_starttls=True)
        else:  # the whole connection is TLS (aiosmtpd's session does not see it as such)
            kw.update(authenticator=check, auth_require_tls=False, ssl_context=ctx, server_hostname="127.0.0.1")
    controller = Controller(box, hostname="127.0.0.1", port=port, **kw)
    controller.start()
    try:
        yield box, options
    finally:
        controller.stop()


class Webhook:
    """A webhook receiver: ``posts`` holds each JSON body; it answers ``status``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.posts: list[dict] = []
        self.status = 200


@contextmanager
def webhook_server() -> Iterator[Webhook]:
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if hook.status == 200:
                hook.posts.append(json.loads(body))
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok" if hook.status == 200 else b"nope")

        def log_message(self, format: str, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0KEN-abc123"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
