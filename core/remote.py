"""Listing and fetching files where they wait: a folder, SFTP, FTP/FTPS, HTTP(S), S3.

Each kind is a thin client over a well-kept library — paramiko (SFTP), ftplib (FTP and
FTPS, standard library), requests (HTTP directory listings), boto3 (any S3-compatible
store) — with the same four operations: :meth:`Remote.list` (every file under the URL,
recursively, with size and modification time), :meth:`Remote.download`,
:meth:`Remote.move` and :meth:`Remote.delete`.

SFTP checks the server's host key BEFORE it sends a password: an unknown key raises
:class:`RemoteError` ``host key unknown``, a different one ``host key changed``; either way
the offered key is on the error for the caller to record.

:func:`classify` turns any failure into one of :data:`ERROR_CLASSES` in plain words.
"""

from __future__ import annotations

import base64
import errno
import ftplib
import hashlib
import os
import posixpath
import shlex
import shutil
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from core.errors import StationManagerError
from core.credentials import Credentials

AUTH = "authentication failed"
UNREACHABLE = "host unreachable"
TIMEOUT = "timeout"
PERMISSION = "permission denied"
NOT_FOUND = "not found"
DISK_FULL = "disk full"
BAD_ARCHIVE = "bad archive"
HOST_KEY_UNKNOWN = "host key unknown"
HOST_KEY_CHANGED = "host key changed"
TLS = "certificate not trusted"
SERVER = "server error"
CONFIG = "configuration"
OTHER = "error"
ERROR_CLASSES = (AUTH, UNREACHABLE, TIMEOUT, PERMISSION, NOT_FOUND, DISK_FULL, BAD_ARCHIVE,
                 HOST_KEY_UNKNOWN, HOST_KEY_CHANGED, TLS, SERVER, CONFIG, OTHER)
#: Worth trying again after a pause.
TRANSIENT = frozenset({UNREACHABLE, TIMEOUT, SERVER})

HINTS = {
    AUTH: "check the source's credentials (secrets.toml or STATIONMANAGER_SECRET_*)",
    UNREACHABLE: "check the host name, port and network",
    TIMEOUT: "the server did not answer in time; it will be tried again",
    PERMISSION: "the account may not read (or move/delete) there",
    NOT_FOUND: "check the source's URL or path",
    DISK_FULL: "free space under STATIONMANAGER_HOME",
    HOST_KEY_UNKNOWN: "check the fingerprint with the server's owner, then run  stationmanager source trust NAME",
    HOST_KEY_CHANGED: "the server's host key is not the one accepted before (a new server, or someone in "
                      "between): check it, then run  stationmanager source trust NAME",
    TLS: "the server's certificate is not trusted; give its CA as the source's ca_file option",
}


class RemoteError(StationManagerError):
    """A source could not be read."""

    def __init__(self, error_class: str, message: str, *, offered_key: str | None = None) -> None:
        self.error_class = error_class
        self.offered_key = offered_key
        super().__init__(message)


@dataclass(frozen=True)
class RemoteFile:
    path: str                 # relative to the source's URL, with "/" separators
    size: int | None
    mtime: datetime | None    # UTC; None when the server does not say


def fingerprint(key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a host key line ``"type base64"`` (as ``ssh-keygen -l`` shows it).

    >>> fingerprint("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
    'SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU'
    """
    raw = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


class Remote:
    """Where files wait. Subclasses connect in ``__init__`` and let go in :meth:`close`."""

    can_move = True

    def list(self) -> list[RemoteFile]:
        raise NotImplementedError

    def download(self, path: str, target: Path, size: int | None = None) -> None:
        """Copy the file at ``path`` to ``target``; ``size`` is its listed size, when known
        (a download may save a round trip with it; a file that changed since is still
        copied whole)."""
        raise NotImplementedError

    def move(self, path: str, folder: str) -> None:
        raise NotImplementedError

    def delete(self, path: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(int(ts), UTC)


# --- folder -------------------------------------------------------------------------------


class FolderRemote(Remote):
    def __init__(self, url: str, **_: Any) -> None:
        self.root = Path(urlsplit(url).path if url.startswith("file://") else url).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such folder", str(self.root))

    def list(self) -> list[RemoteFile]:
        found = []
        for folder, dirs, names in os.walk(self.root):
            for name in names:
                p = Path(folder, name)
                st = p.stat()
                found.append(RemoteFile(p.relative_to(self.root).as_posix(), st.st_size, _utc(st.st_mtime)))
        return found

    def download(self, path: str, target: Path, size: int | None = None) -> None:
        shutil.copyfile(self.root / path, target)

    def move(self, path: str, folder: str) -> None:
        dest = self.root / folder / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / path, dest)

    def delete(self, path: str) -> None:
        (self.root / path).unlink()


# --- SFTP (paramiko) ---------------------------------------------------------------------


class SftpRemote(Remote):
    def __init__(self, url: str, *, credentials: Credentials | None, timeout: float,
                 host_key: str | None = None, **_: Any) -> None:
        import paramiko

        u = urlsplit(url)
        self.root = unquote(u.path) or "."
        user = u.username or (credentials.username if credentials else None)
        sock = socket.create_connection((u.hostname, u.port or 22), timeout=timeout)
        # SFTP is request and answer: without this, a small request that follows unanswered
        # data waits for the peer's delayed acknowledgement (Nagle), up to 40 ms on Linux
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = paramiko.Transport(sock)
        try:
            self.transport.banner_timeout = self.transport.handshake_timeout = timeout
            self.transport.auth_timeout = timeout
            self.transport.start_client(timeout=timeout)
            key = self.transport.get_remote_server_key()
            offered = f"{key.get_name()} {key.get_base64()}"
            if host_key is None:
                raise RemoteError(HOST_KEY_UNKNOWN, f"{HOST_KEY_UNKNOWN}: {u.hostname} offers {fingerprint(offered)}",
                                  offered_key=offered)
            if host_key.split()[:2] != offered.split()[:2]:
                raise RemoteError(HOST_KEY_CHANGED, f"{HOST_KEY_CHANGED}: {u.hostname} now offers "
                                  f"{fingerprint(offered)}, not {fingerprint(host_key)}", offered_key=offered)
            if credentials and credentials.key_file:
                pkey = paramiko.PKey.from_path(credentials.key_file, credentials.passphrase)
                self.transport.auth_publickey(user, pkey)
            else:
                self.transport.auth_password(user, credentials.password if credentials else "")
            self.sftp = paramiko.SFTPClient.from_transport(self.transport)
            self.sftp.get_channel().settimeout(timeout)
        except BaseException:
            self.transport.close()
            raise

    def list(self) -> list[RemoteFile]:
        import stat

        found, todo = [], [""]
        while todo:
            rel = todo.pop()
            for a in self.sftp.listdir_attr(posixpath.join(self.root, rel) if rel else self.root):
                child = posixpath.join(rel, a.filename) if rel else a.filename
                if stat.S_ISDIR(a.st_mode or 0):
                    todo.append(child)
                elif stat.S_ISREG(a.st_mode or 0):
                    found.append(RemoteFile(child, a.st_size, _utc(a.st_mtime) if a.st_mtime else None))
        return found

    def download(self, path: str, target: Path, size: int | None = None) -> None:
        remote_path = posixpath.join(self.root, path)
        with target.open("wb") as fh:
            if size is None:
                self.sftp.getfo(remote_path, fh)  # asks for the size first
                return
            # the listed size saves getfo's stat (a quarter of a small file's round trips);
            # reads go on past it to the end, so a file that grew since comes whole
            with self.sftp.open(remote_path, "rb") as fr:
                fr.prefetch(size)
                shutil.copyfileobj(fr, fh, 1 << 16)

    def move(self, path: str, folder: str) -> None:
        dest = posixpath.join(self.root, folder, path)
        self._makedirs(posixpath.dirname(dest))
        self.sftp.posix_rename(posixpath.join(self.root, path), dest)

    def _makedirs(self, folder: str) -> None:
        parts = folder.split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d:
                try:
                    self.sftp.stat(d)
                except FileNotFoundError:
                    self.sftp.mkdir(d)

    def delete(self, path: str) -> None:
        self.sftp.remove(posixpath.join(self.root, path))

    def close(self) -> None:
        self.transport.close()


# --- FTP and FTPS (ftplib) --------------------------------------------------------------------


def _ftp_time(text: str) -> datetime | None:
    """An FTP time value (MLSD ``modify``, MDTM; always UTC).

    >>> _ftp_time("20250301120000.123"), _ftp_time("")
    (datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.timezone.utc), None)
    """
    try:
        return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def tls_context(options: dict) -> ssl.SSLContext:
    """Certificates checked against the system's CAs, or the source's ``ca_file``."""
    return ssl.create_default_context(cafile=options.get("ca_file"))


class FtpRemote(Remote):
    def __init__(self, url: str, *, credentials: Credentials | None, timeout: float,
                 options: dict, **_: Any) -> None:
        u = urlsplit(url)
        self.root = unquote(u.path) or "/"
        tls = u.scheme == "ftps"
        self.ftp = ftplib.FTP_TLS(context=tls_context(options), timeout=timeout) if tls else ftplib.FTP(timeout=timeout)
        try:
            self.ftp.connect(u.hostname or "", u.port or 21)
            user = u.username or (credentials.username if credentials else None) or "anonymous"
            self.ftp.login(user, (credentials.password if credentials else None) or "")
            if tls:
                self.ftp.prot_p()  # the data connections are encrypted too
            self.ftp.set_pasv(bool(options.get("passive", True)))
        except BaseException:
            self.ftp.close()
            raise

    def _abs(self, path: str) -> str:
        return posixpath.join(self.root, path)

    def list(self) -> list[RemoteFile]:
        try:
            return self._list_mlsd()
        except ftplib.error_perm as exc:
            if not str(exc).startswith(("500", "501", "502", "504")):
                raise
            return self._list_nlst()  # a server without MLSD (RFC 3659), e.g. vsftpd

    def _list_nlst(self) -> list[RemoteFile]:
        """Names (NLST), then each one's SIZE (a folder has none) and MDTM."""
        found, todo = [], [""]
        while todo:
            rel = todo.pop()
            entries = self.ftp.nlst(self._abs(rel))
            self.ftp.voidcmd("TYPE I")  # SIZE counts bytes only in binary mode (NLST left ASCII)
            for entry in entries:
                name = posixpath.basename(entry.rstrip("/"))
                if name in ("", ".", ".."):
                    continue
                child = posixpath.join(rel, name) if rel else name
                try:
                    size = self.ftp.size(self._abs(child))
                except ftplib.error_perm:
                    todo.append(child)
                    continue
                try:
                    mod = self.ftp.voidcmd(f"MDTM {self._abs(child)}")[4:].strip()
                except ftplib.error_perm:
                    mod = ""
                found.append(RemoteFile(child, size, _ftp_time(mod)))
        return found

    def _list_mlsd(self) -> list[RemoteFile]:
        found, todo = [], [""]
        while todo:
            rel = todo.pop()
            for name, facts in self.ftp.mlsd(self._abs(rel), facts=["type", "size", "modify"]):
                child = posixpath.join(rel, name) if rel else name
                kind = facts.get("type", "").lower()
                if kind == "dir":
                    todo.append(child)
                elif kind == "file":
                    found.append(RemoteFile(child, int(facts["size"]) if "size" in facts else None,
                                            _ftp_time(facts.get("modify", ""))))
        return found

    def download(self, path: str, target: Path, size: int | None = None) -> None:
        with target.open("wb") as fh:
            self.ftp.retrbinary(f"RETR {self._abs(path)}", fh.write, blocksize=1 << 16)

    def move(self, path: str, folder: str) -> None:
        dest = posixpath.join(self.root, folder, path)
        parts = posixpath.dirname(dest).split("/")
        for i in range(2, len(parts) + 1):
            try:
                self.ftp.mkd("/".join(parts[:i]))
            except ftplib.error_perm:
                pass  # exists already (or cannot be made: the rename below says so)
        self.ftp.rename(self._abs(path), dest)

    def delete(self, path: str) -> None:
        self.ftp.delete(self._abs(path))

    def close(self) -> None:
        try:
            self.ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            self.ftp.close()


# --- HTTP(S) directory listings (requests) -------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def links_below(page_url: str, html: str) -> list[str]:
    """The links of a directory listing that point below it (no parent, no sort links).

    >>> links_below("http://h/d/", '<a href="../">up</a><a href="?C=M">s</a>'
    ...             '<a href="a.dat">a</a><a href="sub/">sub</a><a href="http://x/y">y</a>')
    ['http://h/d/a.dat', 'http://h/d/sub/']
    """
    parser = _Links()
    parser.feed(html)
    out = []
    for href in parser.hrefs:
        full = urljoin(page_url, href).split("#")[0]
        if "?" in full or not full.startswith(page_url) or full == page_url:
            continue  # a sort link, a parent or the page itself, another site
        if full not in out:
            out.append(full)
    return out


class HttpRemote(Remote):
    can_move = False

    def __init__(self, url: str, *, credentials: Credentials | None, timeout: float,
                 options: dict, **_: Any) -> None:
        import requests

        self.base = url if url.endswith("/") else url + "/"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = options.get("ca_file") or True
        if credentials and credentials.username:
            self.session.auth = (credentials.username, credentials.password or "")
        self._get(self.base).close()  # connect and log in now: errors belong to the connection

    def _get(self, url: str, **kw: Any):
        r = self.session.get(url, timeout=self.timeout, **kw)
        r.raise_for_status()
        return r

    def list(self) -> list[RemoteFile]:
        found, todo, seen = [], [self.base], {self.base}
        while todo:
            page = todo.pop()
            for link in links_below(page, self._get(page).text):
                if link.endswith("/"):
                    if link not in seen:
                        seen.add(link)
                        todo.append(link)
                    continue
                head = self.session.head(link, timeout=self.timeout, allow_redirects=True)
                head.raise_for_status()
                size = head.headers.get("Content-Length")
                mod = head.headers.get("Last-Modified")
                found.append(RemoteFile(unquote(link[len(self.base):]), int(size) if size else None,
                                        parsedate_to_datetime(mod).astimezone(UTC) if mod else None))
        return found

    def download(self, path: str, target: Path, size: int | None = None) -> None:
        with self._get(urljoin(self.base, path), stream=True) as r, target.open("wb") as fh:
            for chunk in r.iter_content(1 << 15):
                fh.write(chunk)
            expected = r.headers.get("Content-Length")
        if expected is not None and target.stat().st_size != int(expected):
            raise ConnectionError(f"{path}: the connection ended after {target.stat().st_size} of {expected} bytes")

    def close(self) -> None:
        self.session.close()


# --- S3 (boto3) --------------------------------------------------------------------------------


class S3Remote(Remote):
    def __init__(self, url: str, *, credentials: Credentials | None, timeout: float,
                 options: dict, **_: Any) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        u = urlsplit(url)
        self.bucket = u.hostname or ""
        self.prefix = u.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1},
                        signature_version=None if credentials else UNSIGNED)
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=options.get("endpoint_url"), region_name=options.get("region") or "us-east-1",
            aws_access_key_id=credentials.username if credentials else None,
            aws_secret_access_key=credentials.password if credentials else None,
            verify=options.get("ca_file"), config=config)
        # log in now (a GET: unlike HEAD, its error says whether the key or the permission is wrong)
        self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)

    def list(self) -> list[RemoteFile]:
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    found.append(RemoteFile(obj["Key"][len(self.prefix):], obj["Size"],
                                            obj["LastModified"].astimezone(UTC).replace(microsecond=0)))
        return found

    def download(self, path: str, target: Path, size: int | None = None) -> None:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + path)["Body"]
        with target.open("wb") as fh:
            for chunk in body.iter_chunks(1 << 16):
                fh.write(chunk)

    def move(self, path: str, folder: str) -> None:
        key = self.prefix + path
        self.client.copy_object(Bucket=self.bucket, Key=self.prefix + posixpath.join(folder, path),
                                CopySource={"Bucket": self.bucket, "Key": key})
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + path)

    def close(self) -> None:
        self.client.close()


KINDS = {"folder": FolderRemote, "sftp": SftpRemote, "ftp": FtpRemote, "ftps": FtpRemote,
         "http": HttpRemote, "https": HttpRemote, "s3": S3Remote}


def connect(kind: str, url: str, *, credentials: Credentials | None, timeout: float,
            options: dict | None = None, host_key: str | None = None) -> Remote:
    """Connect (and log in) to a source; raises what the library raised (see :func:`classify`)."""
    return KINDS[kind](url, credentials=credentials, timeout=timeout, options=options or {}, host_key=host_key)


# --- what went wrong, in plain words ----------------------------------------------------------


def classify(exc: BaseException) -> str:
    """The class of a failure: one of :data:`ERROR_CLASSES`.

    >>> classify(ConnectionRefusedError()), classify(TimeoutError()), classify(OSError(errno.ENOSPC, "x"))
    ('host unreachable', 'timeout', 'disk full')
    >>> classify(ftplib.error_perm("530 Login incorrect.")), classify(ftplib.error_perm("550 No such file"))
    ('authentication failed', 'not found')
    """
    if isinstance(exc, RemoteError):
        return exc.error_class
    if isinstance(exc, StationManagerError):
        return CONFIG
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("paramiko"):
        if name in ("AuthenticationException", "BadAuthenticationType", "PartialAuthentication"):
            return AUTH
        return TIMEOUT if "timeout" in str(exc).lower() else UNREACHABLE
    if isinstance(exc, ftplib.error_perm):
        code = str(exc)[:3]
        if code == "530":
            return AUTH
        text = str(exc).lower()
        return NOT_FOUND if code == "550" and ("no such" in text or "not found" in text) else PERMISSION
    if isinstance(exc, ftplib.error_temp):
        return UNREACHABLE if str(exc).startswith("421") else SERVER
    http = _http_class(exc)
    if http:
        return http
    s3 = _s3_class(exc)
    if s3:
        return s3
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLS
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TIMEOUT
    if isinstance(exc, FileNotFoundError):
        return NOT_FOUND
    if isinstance(exc, PermissionError):
        return PERMISSION
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DISK_FULL
    if isinstance(exc, (ConnectionError, socket.gaierror, EOFError)) or (
            isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)):
        return UNREACHABLE
    return OTHER


def _http_class(exc: BaseException) -> str | None:
    try:
        import requests
    except ImportError:  # pragma: no cover - a dependency
        return None
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        return {401: AUTH, 403: PERMISSION, 404: NOT_FOUND, 410: NOT_FOUND}.get(
            code, SERVER if code >= 500 else OTHER)
    if isinstance(exc, requests.exceptions.SSLError):
        return TLS
    if isinstance(exc, requests.Timeout):
        return TIMEOUT
    if isinstance(exc, requests.ConnectionError):
        return UNREACHABLE
    return None


def _s3_class(exc: BaseException) -> str | None:
    try:
        from botocore import exceptions as bex
    except ImportError:  # pragma: no cover - a dependency
        return None
    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthFailure", "ExpiredToken",
                    "InvalidToken", "InvalidClientTokenId") or status == 401:
            return AUTH
        if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
            return PERMISSION
        if code in ("NoSuchBucket", "NoSuchKey", "404") or status == 404:
            return NOT_FOUND
        return SERVER if (status or 0) >= 500 else OTHER
    if isinstance(exc, bex.SSLError):
        return TLS
    if isinstance(exc, (bex.ConnectTimeoutError, bex.ReadTimeoutError)):
        return TIMEOUT
    if isinstance(exc, (bex.EndpointConnectionError, bex.ConnectionClosedError)):
        return UNREACHABLE
    if isinstance(exc, bex.NoCredentialsError):
        return AUTH
    return None


def describe(exc: BaseException, source: str = "NAME") -> str:
    """``class: what happened (hint)`` in one line; ``source`` names the source in the hint."""
    cls = classify(exc)
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, OSError) and exc.strerror and not text:
        text = exc.strerror
    if not text.startswith(cls):
        text = f"{cls}: {text}"
    hint = HINTS.get(cls, "").replace("trust NAME", f"trust {shlex.quote(source)}")
    return f"{text} ({hint})" if hint else text
