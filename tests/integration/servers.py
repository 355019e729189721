"""Real file servers on 127.0.0.1 for the source tests: SFTP (asyncssh), FTP and FTPS
(pyftpdlib, with a self-signed certificate made here), HTTP with basic auth (http.server,
a directory listing, optionally throttled), S3 (moto's server, with IAM auth on), a folder.

Each :class:`Server` serves one folder (S3: one bucket) and knows how to put a file there
with a given modification time. Everything starts in threads of the test process and stops
within seconds.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import errno
import functools
import ipaddress
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

USER, PASSWORD = "met", "s3cret-Pa55-word"


class Server:
    """A running server: ``kind``, ``url`` and, for SFTP, its ``host_key`` line.

    Servers that can (SFTP, FTP, HTTP) count the downloads of each file (:meth:`fetched`)
    and send the files made slow by :meth:`slow` at that many bytes a second.
    """

    def __init__(self, kind: str, url: str, root: Path | None, **extra) -> None:
        self.kind, self.url, self.root = kind, url, root
        self.options: dict = {}
        self.host_key: str | None = None
        self.throttle: dict[str, float] = {}  # path relative to the root -> bytes/s
        self.fetches: collections.Counter[str] = collections.Counter()  # path -> downloads started
        self.__dict__.update(extra)

    def slow(self, rel: str, rate: float | None) -> None:
        """Send ``rel`` at ``rate`` bytes/s from now on (None: at full speed)."""
        if rate is None:
            self.throttle.pop(rel, None)
        else:
            self.throttle[rel] = rate

    def fetched(self, rel: str) -> int:
        """How many downloads of ``rel`` began."""
        return self.fetches[rel]

    def put(self, rel: str, data: bytes, mtime: float | None = None) -> None:
        """Write ``rel`` (appending is a new put) with modification time ``mtime``."""
        assert self.root is not None
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if mtime is not None:
            os.utime(p, (mtime, mtime))

    def exists(self, rel: str) -> bool:
        assert self.root is not None
        return (self.root / rel).exists()


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (also its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False), True)
        .add_extension(ski, False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


# --- folder -------------------------------------------------------------------------------


@contextmanager
def folder_server(root: Path) -> Iterator[Server]:
    root.mkdir(parents=True, exist_ok=True)
    yield Server("folder", str(root), root)


@functools.cache
def fuse_unavailable() -> str | None:
    """Why a folder cannot be served through FUSE here (None: it can; tried once)."""
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse on this machine"
    if not shutil.which("fusermount3"):
        return "fusermount3 is not installed (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse)
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse: {exc}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with slow_folder_server(Path(tmp, "try")):
                pass
        except RuntimeError as exc:  # e.g. a container without the right to mount
            return str(exc)
    return None


@contextmanager
def slow_folder_server(root: Path) -> Iterator[Server]:
    """A folder source whose reads can be slowed: ``root``'s files, read-only, through a FUSE
    file system served by a thread of this process (mounted beside ``root``). Opens are
    counted as downloads; a file made slow by :meth:`Server.slow` is read at that many bytes
    a second past its first :data:`FUSE_FAST_BYTES`, 4 KiB at a time, so a copy of it is
    under way for as long as the test needs."""
    import mfusepy

    root.mkdir(parents=True, exist_ok=True)
    mount = root.with_name(root.name + "-mounted")
    mount.mkdir()
    server = Server("folder", str(mount), root)
    ops = type("SlowFolderOperations", (_SlowFolder, mfusepy.Operations), {})(root, server)
    fuse = threading.Thread(
        target=mfusepy.FUSE, args=(ops, str(mount)), name="fuse-folder", daemon=True,
        # one request at a time, nothing cached: each read comes here, in order
        kwargs={"foreground": True, "nothreads": True, "ro": True, "max_read": 4096,
                "attr_timeout": 0, "entry_timeout": 0, "negative_timeout": 0})
    fuse.start()
    deadline = time.monotonic() + 10
    while not os.path.ismount(mount):
        if not fuse.is_alive() or time.monotonic() > deadline:
            fuse.join(timeout=1)
            raise RuntimeError(f"a FUSE folder did not mount at {mount} (see the test's output)")
        time.sleep(0.02)
    try:
        yield server
    finally:
        ops.closing = True
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False, capture_output=True)
        fuse.join(timeout=10)


#: A slow file's first bytes come at full speed: the kernel copies a file 64 KiB at a time
#: (its pipe), so a copy writes nothing before that much is read.
FUSE_FAST_BYTES = 64 * 1024


class _SlowFolder:
    """The FUSE operations of :func:`slow_folder_server`: a read-only pass-through (the
    others are mfusepy's defaults, mixed in once mfusepy has loaded libfuse)."""

    use_ns = True  # times in nanoseconds (mfusepy's float seconds are deprecated)

    def __init__(self, root: Path, server: Server) -> None:
        self.root, self.server = root, server
        self.closing = False

    def init_with_config(self, conn_info, config) -> None:
        if conn_info is not None:  # libfuse 3 asks the file system too (mount option max_read)
            conn_info.max_read = 4096
            conn_info.max_readahead = 4096

    def _real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path: str, fh=None) -> dict:
        import mfusepy

        try:
            st = os.lstat(self._real(path))
        except FileNotFoundError:
            raise mfusepy.FuseOSError(errno.ENOENT) from None
        return {"st_mode": st.st_mode, "st_size": st.st_size, "st_nlink": st.st_nlink, "st_uid": st.st_uid,
                "st_gid": st.st_gid, "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns,
                "st_ctime": st.st_ctime_ns}

    def readdir(self, path: str, fh) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def open(self, path: str, flags) -> int:
        self.server.fetches[path.lstrip("/")] += 1
        return os.open(self._real(path), os.O_RDONLY)

    def read(self, path: str, size: int, offset: int, fh) -> bytes:
        rate = self.server.throttle.get(path.lstrip("/"))
        if rate and offset >= FUSE_FAST_BYTES and not self.closing:
            time.sleep(size / rate)
        return os.pread(fh, size, offset)

    def release(self, path: str, fh) -> int:
        os.close(fh)
        return 0


# --- SFTP (asyncssh) --------------------------------------------------------------------------


@contextmanager
def sftp_server(root: Path) -> Iterator[Server]:
    import asyncssh

    connections: list = []

    class Auth(asyncssh.SSHServer):
        def connection_made(self, conn) -> None:
            connections.append(conn)

        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return username == USER and password == PASSWORD

    class Files(asyncssh.SFTPServer):
        """Counts the files opened for reading; reads a slow file's blocks one at a time."""

        def __init__(self, chan, chroot: bytes) -> None:
            super().__init__(chan, chroot=chroot)
            self.files: dict[int, tuple] = {}  # id -> (file, path relative to the root)
            sessions.append(self)

        def open(self, path: bytes, pflags: int, attrs):
            f = super().open(path, pflags, attrs)
            rel = path.decode().lstrip("/")
            if pflags & asyncssh.FXF_READ:
                s.fetches[rel] += 1
            self.files[id(f)] = (f, rel)
            return f

        def close(self, file_obj) -> None:
            self.files.pop(id(file_obj), None)
            super().close(file_obj)

        def exit(self) -> None:
            self.close_all()
            super().exit()

        def close_all(self) -> None:
            for f, _ in self.files.values():
                f.close()
            self.files.clear()

        async def read(self, file_obj, offset: int, size: int) -> bytes:
            rate = s.throttle.get(self.files.get(id(file_obj), (None, ""))[1])
            if not rate:
                return super().read(file_obj, offset, size)
            async with slow_reads:  # the client asks for many blocks at once: one at a time
                data = super().read(file_obj, offset, size)
                await asyncio.sleep(len(data) / rate)
                return data

    root.mkdir(parents=True, exist_ok=True)
    s = Server("sftp", "", root)
    sessions: list[Files] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-sftp", daemon=True)
    thread.start()
    key = asyncssh.generate_private_key("ssh-ed25519")

    async def start():
        return asyncio.Lock(), await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[key], server_factory=Auth,
            sftp_factory=lambda chan: Files(chan, chroot=str(root).encode()))

    slow_reads, server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    port = server.sockets[0].getsockname()[1]
    try:
        s.url = f"sftp://{USER}@127.0.0.1:{port}/"
        s.host_key = " ".join(key.export_public_key("openssh").decode().split()[:2])
        yield s
    finally:
        async def stop():
            server.close()
            await server.wait_closed()
            for conn in connections:  # the server's side of each client connection
                conn.close()
                await conn.wait_closed()
            for session in sessions:  # a killed client's session may not be cleaned up yet
                session.close_all()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --- FTP and FTPS (pyftpdlib) -----------------------------------------------------------------


@contextmanager
def ftp_server(root: Path, *, tls: bool = False, mlsd: bool = True) -> Iterator[Server]:
    """pyftpdlib; without ``mlsd`` it answers MLSD as vsftpd does ("500 not understood")."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

    root.mkdir(parents=True, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
    attrs: dict = {"authorizer": authorizer, "banner": "test ftp"}
    certfile = None
    if tls:
        certfile, keyfile = self_signed_cert(root.parent)
        attrs.update(certfile=str(certfile), keyfile=str(keyfile), tls_control_required=True,
                     tls_data_required=True)
    base = TLS_FTPHandler if tls else FTPHandler
    if not mlsd:
        attrs["proto_cmds"] = {k: v for k, v in base.proto_cmds.items() if k not in ("MLSD", "MLST")}
    s = Server("ftps" if tls else "ftp", "", root)

    def rel(path: str) -> str:
        return Path(path).relative_to(root).as_posix()

    class Counting(base):  # type: ignore[misc,valid-type]
        def ftp_RETR(self, file: str):
            s.fetches[rel(file)] += 1
            return super().ftp_RETR(file)

    class SlowData(base.dtp_handler):  # type: ignore[misc,name-defined]
        """Sends a slow file in small blocks, pausing after each (the server is the test's
        alone: a pause of its one thread slows nothing else that matters)."""

        def use_sendfile(self) -> bool:
            return False

        def send(self, data) -> int:
            rate = s.throttle.get(rel(self.file_obj.name)) if self.file_obj is not None else None
            if not rate:
                return super().send(data)
            sent = super().send(data[:4096])
            time.sleep(sent / rate)
            return sent

    attrs["dtp_handler"] = SlowData
    handler = type("Handler", (Counting,), attrs)
    server = FTPServer(("127.0.0.1", 0), handler)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)

    thread = threading.Thread(target=serve, name="test-ftp", daemon=True)
    thread.start()
    port = server.socket.getsockname()[1]
    try:
        s.url = f"{s.kind}://{USER}@127.0.0.1:{port}/"
        if certfile:
            s.options = {"ca_file": str(certfile)}
        yield s
    finally:
        stop.set()
        thread.join(10)
        server.close_all()


# --- HTTP with basic auth (http.server) ---------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    """A directory listing behind basic auth; counts GETs; sends throttled files slowly."""

    def _allowed(self) -> bool:
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") == want:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="loggers"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self) -> None:
        if self.server.fail_next > 0:  # type: ignore[attr-defined]
            self.server.fail_next -= 1  # type: ignore[attr-defined]
            self.send_error(503, "busy (test)")
            return
        if self._allowed():
            self.server.gets[self.path] += 1  # type: ignore[attr-defined]
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._allowed():
            super().do_HEAD()

    def copyfile(self, source, outputfile) -> None:
        rate = self.server.throttle.get(self.path)  # type: ignore[attr-defined]
        if not rate:
            return super().copyfile(source, outputfile)
        while chunk := source.read(8192):
            outputfile.write(chunk)
            outputfile.flush()
            time.sleep(len(chunk) / rate)

    def log_message(self, format: str, *args) -> None:
        pass


class HttpServer(Server):
    """Counts and throttles by URL path (``httpd.gets``, ``httpd.throttle``)."""

    def slow(self, rel: str, rate: float | None) -> None:
        path = "/" + quote(rel)
        if rate is None:
            self.httpd.throttle.pop(path, None)
        else:
            self.httpd.throttle[path] = rate

    def fetched(self, rel: str) -> int:
        return self.httpd.gets["/" + quote(rel)]


@contextmanager
def http_server(root: Path) -> Iterator[Server]:
    root.mkdir(parents=True, exist_ok=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    httpd.daemon_threads = True
    httpd.gets = collections.Counter()  # type: ignore[attr-defined]
    httpd.throttle = {}  # type: ignore[attr-defined]  # URL path -> bytes/s
    httpd.fail_next = 0  # type: ignore[attr-defined]  # answer this many GETs with 503
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield HttpServer("http", f"http://127.0.0.1:{httpd.server_address[1]}/", root, httpd=httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# --- S3 (moto's server, IAM auth on) --------------------------------------------------------------


class S3Server(Server):
    def put(self, rel: str, data: bytes, mtime: float | None = None) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + rel, Body=data)  # modified: now

    def exists(self, rel: str) -> bool:
        return "Contents" in self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + rel)


class _CountingS3:
    """WSGI middleware before moto: counts the GETs of each object of the server's bucket
    and prefix, and sends a slow object's body in small blocks, pausing after each (each
    request has its own thread)."""

    def __init__(self, app, server: S3Server) -> None:
        self.app, self.server = app, server

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        head = f"/{self.server.bucket}/{self.server.prefix}"
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] != "GET" or not path.startswith(head) or path == head:
            return body
        rel = path[len(head):]
        self.server.fetches[rel] += 1
        rate = self.server.throttle.get(rel)
        return self._slowly(body, rate) if rate else body

    @staticmethod
    def _slowly(body, rate: float):
        try:
            for chunk in body:
                for i in range(0, len(chunk), 4096):
                    yield chunk[i:i + 4096]
                    time.sleep(len(chunk[i:i + 4096]) / rate)
        finally:
            if hasattr(body, "close"):
                body.close()


@contextmanager
def s3_server() -> Iterator[S3Server]:
    import boto3
    import requests
    from moto import settings as moto_settings
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    s = S3Server("s3", "s3://loggers/incoming", None, bucket="loggers", prefix="incoming/")

    class Moto(ThreadedMotoServer):
        def _server_entry(self) -> None:  # ThreadedMotoServer's, with the middleware
            app = _CountingS3(DomainDispatcherApplication(create_backend_app), s)
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    server = Moto(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://127.0.0.1:%d" % server.get_host_and_port()[1]
    before = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    # moto keeps its state per process, not per server: start from nothing
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    try:
        root = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="root",
                    aws_secret_access_key="root")
        iam = boto3.client("iam", **root)
        iam.create_user(UserName=USER)
        iam.put_user_policy(UserName=USER, PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'))
        key = iam.create_access_key(UserName=USER)["AccessKey"]
        iam.close()
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        client.create_bucket(Bucket="loggers")
        s.client, s.access_key, s.secret_key = client, key["AccessKeyId"], key["SecretAccessKey"]
        s.options = {"endpoint_url": endpoint}
        yield s
        client.close()
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=str(before).encode(), timeout=10)
        server.stop()


def start(kind: str, root: Path):
    """The server of ``kind`` (a source kind, or "ftp without MLSD") serving ``root`` (S3:
    its own bucket), as a context manager."""
    if kind == "folder":
        return folder_server(root)
    if kind == "sftp":
        return sftp_server(root)
    if kind.startswith("ftp"):
        return ftp_server(root, tls=kind == "ftps", mlsd="MLSD" not in kind)
    if kind == "http":
        return http_server(root)
    return s3_server()
