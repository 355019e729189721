"""Archive kinds through the worker's import: 7z, tar (plain and compressed), bz2 and xz,
nested across kinds, bombs of each kind, hostile tar members, and encrypted archives
fetched from a source that holds their password."""

from __future__ import annotations

import bz2
import io
import lzma
import tarfile
import time
from pathlib import Path

import pytest

from core import home, sources
from tests.bombs import MiB, PeakSize, aes_zip, sevenz_bytes, tar_bytes, tar_of_zeros, zip_bytes, zipcrypto_zip
from tests.integration import servers
from tests.integration.test_hostile_files import small_budget  # noqa: F401 — a fixture
from tests.integration.test_hostile_files import receive, records, run_queue, stored, temp_files

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAY = (ROOT / "tests" / "data" / "toa5" / "TestLogger_Hourly_1.dat").read_bytes()


def _7z(tmp_path: Path, entries: dict[str, bytes], **kw) -> bytes:
    return sevenz_bytes(tmp_path / "made.7z", entries, **kw).read_bytes()


@pytest.mark.parametrize(("name", "make", "leaf"), [
    ("upload.7z", lambda t: _7z(t, {"2025/day.dat": DAY}), "upload.7z/2025/day.dat"),
    ("upload.tar", lambda t: tar_bytes({"2025/day.dat": DAY}), "upload.tar/2025/day.dat"),
    ("upload.tgz", lambda t: tar_bytes({"2025/day.dat": DAY}, "w:gz"), "upload.tgz/2025/day.dat"),
    ("upload.tar.bz2", lambda t: tar_bytes({"2025/day.dat": DAY}, "w:bz2"), "upload.tar.bz2/2025/day.dat"),
    ("upload.tar.xz", lambda t: tar_bytes({"2025/day.dat": DAY}, "w:xz"), "upload.tar.xz/2025/day.dat"),
    ("day.dat.bz2", lambda t: bz2.compress(DAY), "day.dat"),
    ("day.dat.xz", lambda t: lzma.compress(DAY), "day.dat"),
])
def test_each_kind_imports_its_logger_file(conn, settings, tmp_path, name, make, leaf):
    file_id = receive(conn, settings, name, make(tmp_path), tmp_path)
    run_queue([file_id])
    got = records(conn)
    assert list(got) == [name, leaf]
    assert got[name]["status"] == "unpacked" and got[name]["format"] == "archive"
    assert got[leaf]["status"] == "imported" and got[leaf]["n_readings"] == 15 and got[leaf]["parent_id"] == file_id
    assert temp_files(settings) == []


def test_a_tar_gz_in_a_7z_in_a_zip_is_unpacked_in_one_pass(conn, settings, tmp_path):
    seven = _7z(tmp_path, {"logs.tar.gz": tar_bytes({"day.dat": DAY}, "w:gz")})
    file_id = receive(conn, settings, "outer.zip", zip_bytes({"inner.7z": seven}), tmp_path)
    run_queue([file_id])
    got = records(conn)
    assert list(got) == ["outer.zip", "outer.zip/inner.7z/logs.tar.gz/day.dat"]
    assert got["outer.zip/inner.7z/logs.tar.gz/day.dat"]["status"] == "imported"


@pytest.mark.parametrize("kind", ["7z", "tar.xz"])
def test_a_bomb_of_each_kind_is_refused_within_the_budget_and_nothing_of_it_is_stored(
        conn, small_budget, tmp_path, kind):
    if kind == "7z":
        data = _7z(tmp_path, {"day.dat": DAY, "a.dat": bytes(32 * MiB), "b.dat": bytes(32 * MiB)})
    else:
        data = tar_of_zeros(tmp_path / "made.tar.xz", 64, mode="w:xz").read_bytes()
    assert len(data) < MiB
    file_id = receive(conn, small_budget, f"bomb.{kind}", data, tmp_path)
    with PeakSize(home.tmp_root(small_budget)) as peak:
        run_queue([file_id])
    row = records(conn)[f"bomb.{kind}"]
    assert row["status"] == "failed" and row["error"].startswith("unpacks to more than 4 MiB")
    assert peak.peak <= 4 * MiB
    assert list(records(conn)) == [f"bomb.{kind}"]  # not even the day file within it
    assert len(stored(small_budget)) == 1
    assert temp_files(small_budget) == []


def test_links_devices_and_escaping_names_in_a_tar_are_listed_on_it(conn, settings, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, kind, link in [("data/users.dat", tarfile.SYMTYPE, "../../users.yaml"),
                                 ("data/hard.dat", tarfile.LNKTYPE, "data/day.dat"),
                                 ("data/disk", tarfile.BLKTYPE, ""), ("data/pipe", tarfile.FIFOTYPE, "")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            tf.addfile(info)
        for name in ("data/day.dat", "../../../../escaped.dat", "/tmp/sm-absolute.dat"):
            info = tarfile.TarInfo(name)
            info.size = len(DAY)
            tf.addfile(info, io.BytesIO(DAY))
    before = set(tmp_path.parent.rglob("*"))
    file_id = receive(conn, settings, "upload.tgz", buf.getvalue(), tmp_path)
    run_queue([file_id])
    got = records(conn)
    assert list(got) == ["upload.tgz", "upload.tgz/data/day.dat"]
    assert got["upload.tgz/data/day.dat"]["status"] == "imported"
    assert got["upload.tgz"]["warnings"] == [
        "skipped upload.tgz/data/users.dat: symbolic link",
        "skipped upload.tgz/data/hard.dat: hard link",
        "skipped upload.tgz/data/disk: device",
        "skipped upload.tgz/data/pipe: named pipe",
        "skipped upload.tgz/../../../../escaped.dat: the name leads out of the archive",
        "skipped upload.tgz//tmp/sm-absolute.dat: absolute path",
    ]
    new = {p for p in set(tmp_path.parent.rglob("*")) - before
           if not p.is_relative_to(settings.home.resolve()) and p != tmp_path / "upload.tgz"}
    assert new == set() and not Path("/tmp/sm-absolute.dat").exists()


# --- encrypted archives from a source ---------------------------------------------------


def _locked(tmp_path: Path) -> dict[str, bytes]:
    """The same day file in each kind of encrypted archive, all with the password ``s3cret``."""
    return {
        "aes.zip": aes_zip(tmp_path / "aes.zip", {"aes.dat": DAY.replace(b"12342", b"11111")}, b"s3cret").read_bytes(),
        "zipcrypto.zip": zipcrypto_zip(tmp_path / "zc.zip", {"zc.dat": DAY.replace(b"12342", b"22222")},
                                       b"s3cret").read_bytes(),
        "locked.7z": _7z(tmp_path, {"7z.dat": DAY.replace(b"12342", b"33333")}, password="s3cret",
                         header_encryption=True),
    }


def _source_with_password(conn, settings, root: Path, archive_password: str | None) -> None:
    secrets = settings.secrets_file
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.write_text(f'[provider]\narchive_password = "{archive_password}"\n' if archive_password
                       else '[provider]\nusername = "met"\n', encoding="utf-8")
    secrets.chmod(0o600)
    with conn.transaction():
        sources.add_source(conn, "admin", name="provider", kind="folder", url=str(root), credentials="provider")


@pytest.mark.parametrize(("password", "status"), [("s3cret", "imported"), ("wrong", "failed"), (None, "failed")])
def test_encrypted_archives_from_a_source_open_with_its_archive_password(conn, settings, tmp_path, password, status):
    with servers.folder_server(tmp_path / "remote") as server:
        for name, data in _locked(tmp_path).items():
            server.put(f"Mast E/{name}", data, time.time() - 3600)
        _source_with_password(conn, settings, tmp_path / "remote", password)
        run_queue(sources.sync("provider", settings=settings)["queue"])
    got = records(conn)
    archives = ["Mast E/aes.zip", "Mast E/locked.7z", "Mast E/zipcrypto.zip"]
    if status == "imported":
        assert sorted(got) == sorted([*archives, "Mast E/aes.zip/aes.dat", "Mast E/locked.7z/7z.dat",
                                      "Mast E/zipcrypto.zip/zc.dat"])
        assert {n: r["status"] for n, r in got.items() if n not in archives} == dict.fromkeys(
            ["Mast E/aes.zip/aes.dat", "Mast E/locked.7z/7z.dat", "Mast E/zipcrypto.zip/zc.dat"], "imported")
        assert {got[a]["status"] for a in archives} == {"unpacked"}
    else:
        assert sorted(got) == archives  # nothing imported
        reason = ("no archive password given opens it" if password else "no archive password was given: "
                  "give its source an archive_password")
        for a in archives:
            assert got[a]["status"] == "failed" and reason in got[a]["error"]
            assert "s3cret" not in got[a]["error"] and (password is None or password not in got[a]["error"])
    assert temp_files(settings) == []
