"""Unpacking archives within limits: bombs, nesting, member counts, hostile member names."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

from core import archives
from core.archives import Limits
from core.errors import ParseError
from tests.bombs import (
    MiB,
    PeakSize,
    aes_zip,
    gzip_of_zeros,
    many_members,
    nested,
    sevenz_bytes,
    sevenz_renamed,
    symlink_member,
    tar_bytes,
    tar_of_zeros,
    zip_bytes,
    zipcrypto_zip,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = (ROOT / "tests" / "data" / "toa5" / "TestLogger_Hourly_1.dat").read_bytes()


def unpack(path: Path, limits: Limits, tmp: Path, passwords: tuple[str, ...] = ()) -> archives.Unpacked:
    with archives.members(path, path.name, limits, tmp, passwords=passwords) as found:
        return found


def test_a_3_mb_gzip_that_unpacks_to_3_gib_writes_no_byte_beyond_the_budget(tmp_path):
    bomb = tmp_path / "bomb.dat.gz"
    bomb.write_bytes(gzip_of_zeros(64, copies=48))  # 3 GiB of zeros
    assert bomb.stat().st_size < 4 * MiB
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # a process that may not write any file larger than the budget (SIGXFSZ kills it otherwise)
    script = (
        "import resource, sys; from pathlib import Path; from core import archives\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({8 * MiB}, {8 * MiB}))\n"
        "try:\n"
        f"    with archives.members(Path({str(bomb)!r}), 'bomb.dat.gz', archives.Limits({8 * MiB}, 3, 100), "
        f"Path({str(tmp)!r})): pass\n"
        "except archives.ParseError as exc: print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "bomb.dat.gz: unpacks to more than 8 MiB (limit: STATIONMANAGER_MAX_UNPACKED_MB" in done.stdout
    assert list(tmp.iterdir()) == []  # nothing left behind


def test_the_budget_covers_every_member_at_every_level_together(tmp_path):
    three = gzip_of_zeros(3)
    inner = zip_bytes({"c.dat.gz": three, "d.dat.gz": three})
    bomb = tmp_path / "nested.zip"
    bomb.write_bytes(zip_bytes({"a.dat.gz": three, "inner.zip": inner}))  # 9 MiB of zeros, 3 levels
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with PeakSize(tmp) as peak, pytest.raises(ParseError, match="unpacks to more than 8 MiB"):
        unpack(bomb, Limits(8 * MiB, 3, 100), tmp)
    assert 3 * MiB <= peak.peak <= 8 * MiB
    assert list(tmp.iterdir()) == []
    found = unpack(bomb, Limits(12 * MiB, 3, 100), tmp)  # within a larger budget: every leaf, none of the archives
    assert [n for n, _ in found.files] == ["nested.zip/a.dat", "nested.zip/inner.zip/c.dat", "nested.zip/inner.zip/d.dat"]
    assert found.written > 9 * MiB  # the inner zip's own bytes count too


def test_nesting_deeper_than_the_limit_is_refused(tmp_path):
    ok, deep = tmp_path / "ok.zip", tmp_path / "deep.zip"
    ok.write_bytes(nested("day.dat", DAY, 3))
    deep.write_bytes(nested("day.dat", DAY, 4))
    with archives.members(ok, "ok.zip", Limits(MiB, 3, 100), tmp_path) as found:
        assert [n for n, _ in found.files] == ["ok.zip/level2.zip/day.dat"]  # the .gz holds level2.zip
        assert found.files[0][1].read_bytes() == DAY
    with pytest.raises(ParseError, match="deep.zip: archives nested deeper than 3 levels"):
        unpack(deep, Limits(MiB, 3, 100), tmp_path)


def test_a_zip_of_50000_members_is_refused_even_when_its_end_record_lies(tmp_path):
    many = many_members(tmp_path / "many.zip", 50_000)
    assert archives.declared_entries(many) == 50_000
    with pytest.raises(ParseError, match=r"many.zip: holds more than 20000 members \(limit: STATIONMANAGER_MAX_ARCHIVE"):
        unpack(many, Limits(MiB, 3, 20_000), tmp_path)
    data = bytearray(many.read_bytes())  # the end record now declares 1 entry; zipfile reads them all
    at = data.rfind(b"PK\x05\x06")
    data[at + 8:at + 12] = b"\x01\x00\x01\x00"
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    assert archives.declared_entries(liar) == 1
    with pytest.raises(ParseError, match="holds more than 20000 members"):
        unpack(liar, Limits(MiB, 3, 20_000), tmp_path)
    assert list(tmp_path.glob("sm-unpack-*")) == []


def test_members_with_hostile_names_are_listed_as_skipped_and_write_nowhere(tmp_path):
    z = tmp_path / "box" / "hostile.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("data/day.dat", DAY)
        zf.writestr(".hidden.dat", DAY)
        zf.writestr("__MACOSX/data/._day.dat", b"x")
        zf.writestr("../escaped.dat", DAY)
        zf.writestr("../../escaped2.dat", DAY)
        zf.writestr("/tmp/absolute.dat", DAY)
        symlink_member(zf, "data/users.dat", "../../../users.yaml")
    tmp = tmp_path / "box" / "tmp"
    tmp.mkdir()
    with archives.members(z, "hostile.zip", Limits(MiB, 3, 100), tmp) as found:
        assert [n for n, _ in found.files] == ["hostile.zip/data/day.dat"]
        assert all(p.resolve().is_relative_to(tmp.resolve()) for _, p in found.files)
        assert found.warnings() == [
            "skipped hostile.zip/.hidden.dat: hidden file",
            "skipped hostile.zip/__MACOSX/data/._day.dat: macOS metadata",
            "skipped hostile.zip/../escaped.dat: the name leads out of the archive",
            "skipped hostile.zip/../../escaped2.dat: the name leads out of the archive",
            "skipped hostile.zip//tmp/absolute.dat: absolute path",
            "skipped hostile.zip/data/users.dat: symbolic link",
        ]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["box", "hostile.zip", "tmp"]
    assert not Path("/tmp/absolute.dat").exists()


def test_an_archive_of_skipped_members_only_says_what_it_skipped(tmp_path):
    z = tmp_path / "mac.zip"
    z.write_bytes(zip_bytes({"__MACOSX/._a": b"x", ".DS_Store": b"y"}))
    with pytest.raises(ParseError, match=r"holds no files \(2 skipped: skipped mac.zip/__MACOSX/._a: macOS"):
        unpack(z, Limits(MiB, 3, 100), tmp_path)


def test_an_encrypted_member_fails_with_a_reason(tmp_path):
    z = tmp_path / "locked.zip"
    data = bytearray(zip_bytes({"day.dat": DAY}))
    data[6] |= 1  # the local header's "encrypted" flag
    at = data.find(b"PK\x01\x02")
    data[at + 8] |= 1  # and the central directory's
    z.write_bytes(bytes(data))
    with pytest.raises(ParseError, match="locked.zip: the archive is encrypted and no archive password was given"):
        unpack(z, Limits(MiB, 3, 100), tmp_path)


def test_a_damaged_archive_inside_the_archive_is_named(tmp_path):
    z = tmp_path / "outer.zip"
    z.write_bytes(zip_bytes({"day.dat": DAY, "inner.zip": b"PK\x03\x04" + bytes(range(64))}))
    with pytest.raises(ParseError, match="outer.zip: outer.zip/inner.zip: the archive is damaged"):
        unpack(z, Limits(MiB, 3, 100), tmp_path)


# --- more kinds: 7z, tar (plain, gz, bz2, xz), bz2 and xz ----------------------------------


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


KINDS = {
    "day.7z": lambda p: sevenz_bytes(p, {"logs/day.dat": DAY}),
    "day.tar": lambda p: _write(p, tar_bytes({"logs/day.dat": DAY})),
    "day.tar.gz": lambda p: _write(p, tar_bytes({"logs/day.dat": DAY}, "w:gz")),
    "day.tgz": lambda p: _write(p, tar_bytes({"logs/day.dat": DAY}, "w:gz")),
    "day.tar.bz2": lambda p: _write(p, tar_bytes({"logs/day.dat": DAY}, "w:bz2")),
    "day.tar.xz": lambda p: _write(p, tar_bytes({"logs/day.dat": DAY}, "w:xz")),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_each_archive_kind_yields_its_day_file(tmp_path, name):
    path = KINDS[name](tmp_path / name)
    assert archives.is_archive(path)
    with archives.members(path, name, Limits(MiB, 3, 100), tmp_path) as found:
        assert [n for n, _ in found.files] == [f"{name}/logs/day.dat"]
        assert found.files[0][1].read_bytes() == DAY


@pytest.mark.parametrize(("name", "data"), [("day.dat.bz2", bz2.compress(DAY)), ("day.dat.xz", lzma.compress(DAY))])
def test_single_compressed_files_yield_their_file(tmp_path, name, data):
    path = _write(tmp_path / name, data)
    with archives.members(path, name, Limits(MiB, 3, 100), tmp_path) as found:
        assert [n for n, _ in found.files] == ["day.dat"]
        assert found.files[0][1].read_bytes() == DAY


def test_kinds_are_told_from_content_not_names(tmp_path):
    seven = sevenz_bytes(tmp_path / "a", {"day.dat": DAY}).read_bytes()
    for name, data in {"upload.zip": seven, "upload.dat": tar_bytes({"day.dat": DAY}, "w:xz"),
                       "upload.7z": tar_bytes({"day.dat": DAY})}.items():
        path = _write(tmp_path / name, data)
        assert [n for n, _ in unpack(path, Limits(MiB, 3, 100), tmp_path).files] == [f"{name}/day.dat"]
    text = _write(tmp_path / "day.tar.gz", DAY)
    assert not archives.is_archive(text)


def test_archives_of_different_kinds_nest_under_one_depth_limit(tmp_path):
    tgz = tar_bytes({"day.dat": DAY}, "w:gz")
    seven = sevenz_bytes(tmp_path / "inner.7z", {"logs.tar.gz": tgz}).read_bytes()
    outer = _write(tmp_path / "outer.zip", zip_bytes({"inner.7z": seven}))
    with archives.members(outer, "outer.zip", Limits(MiB, 3, 100), tmp_path) as found:
        assert [n for n, _ in found.files] == ["outer.zip/inner.7z/logs.tar.gz/day.dat"]
        assert found.files[0][1].read_bytes() == DAY
    with pytest.raises(ParseError, match="archives nested deeper than 2 levels"):
        unpack(outer, Limits(MiB, 2, 100), tmp_path)


def test_a_7z_bomb_writes_no_byte_beyond_the_budget(tmp_path):
    bomb = sevenz_bytes(tmp_path / "bomb.7z", {"a.dat": bytes(24 * MiB), "b.dat": bytes(24 * MiB)})
    assert bomb.stat().st_size < 64 * 1024
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with PeakSize(tmp) as peak, pytest.raises(ParseError, match="bomb.7z: unpacks to more than 4 MiB"):
        unpack(bomb, Limits(4 * MiB, 3, 100), tmp)
    assert peak.peak <= 4 * MiB
    assert list(tmp.iterdir()) == []


def test_a_7z_member_that_is_skipped_still_counts_what_it_decompresses(tmp_path):
    # one solid block: the hidden member must be decompressed to reach the day file after it
    bomb = sevenz_bytes(tmp_path / "hidden.7z", {".padding": bytes(48 * MiB), "day.dat": DAY})
    with pytest.raises(ParseError, match="hidden.7z: unpacks to more than 4 MiB"):
        unpack(bomb, Limits(4 * MiB, 3, 100), tmp_path)
    assert list(tmp_path.glob("sm-unpack-*")) == []


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_a_tar_bomb_writes_no_byte_beyond_the_budget(tmp_path, mode):
    bomb = tar_of_zeros(tmp_path / "bomb.tar", 16 if mode == "w" else 48, mode=mode)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with PeakSize(tmp) as peak, pytest.raises(ParseError, match="bomb.tar: unpacks to more than 4 MiB"):
        unpack(bomb, Limits(4 * MiB, 3, 100), tmp)
    assert peak.peak <= 4 * MiB
    assert list(tmp.iterdir()) == []


def test_a_tar_member_that_is_skipped_still_counts_what_it_decompresses(tmp_path):
    bomb = tar_of_zeros(tmp_path / "hidden.tar.gz", 48, name=".padding")
    with pytest.raises(ParseError, match="hidden.tar.gz: unpacks to more than 4 MiB"):
        unpack(bomb, Limits(4 * MiB, 3, 100), tmp_path)


def test_a_tar_of_links_devices_and_escaping_names_yields_its_regular_files_only(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        def add(name, kind=tarfile.REGTYPE, data=b"", link=""):
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(data), link
            tf.addfile(info, io.BytesIO(data) if data else None)
        add("data", tarfile.DIRTYPE)
        add("data/day.dat", data=DAY)
        add("data/users.dat", tarfile.SYMTYPE, link="../../users.yaml")
        add("data/hard.dat", tarfile.LNKTYPE, link="data/day.dat")
        add("data/disk", tarfile.BLKTYPE)
        add("data/tty", tarfile.CHRTYPE)
        add("data/pipe", tarfile.FIFOTYPE)
        add("../escaped.dat", data=DAY)
        add("/tmp/sm-absolute.dat", data=DAY)
        add(".hidden.dat", data=DAY)
    (tmp_path / "box").mkdir()
    z = _write(tmp_path / "box" / "hostile.tgz", buf.getvalue())
    tmp = tmp_path / "box" / "tmp"
    tmp.mkdir()
    with archives.members(z, "hostile.tgz", Limits(MiB, 3, 100), tmp) as found:
        assert [n for n, _ in found.files] == ["hostile.tgz/data/day.dat"]
        assert found.warnings() == [
            "skipped hostile.tgz/data/users.dat: symbolic link",
            "skipped hostile.tgz/data/hard.dat: hard link",
            "skipped hostile.tgz/data/disk: device",
            "skipped hostile.tgz/data/tty: device",
            "skipped hostile.tgz/data/pipe: named pipe",
            "skipped hostile.tgz/../escaped.dat: the name leads out of the archive",
            "skipped hostile.tgz//tmp/sm-absolute.dat: absolute path",
            "skipped hostile.tgz/.hidden.dat: hidden file",
        ]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["box", "hostile.tgz", "tmp"]
    assert not Path("/tmp/sm-absolute.dat").exists()


def test_a_7z_with_links_and_escaping_names_yields_its_regular_files_only(tmp_path):
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data" / "day.dat").write_bytes(DAY)
    (tmp_path / "users.yaml").write_text("admin: secret\n")
    (src / "data" / "users.dat").symlink_to("../../users.yaml")
    linked = tmp_path / "linked.7z"
    with py7zr.SevenZipFile(linked, "w") as sz:
        sz.write(src / "data" / "day.dat", "data/day.dat")
        sz.write(src / "data" / "users.dat", "data/users.dat")
    path = sevenz_renamed(tmp_path / "named.7z", {"day.dat": DAY, "__MACOSX/._day.dat": b"x", "up/escaped.dat": DAY,
                                                   "inner.7z": linked.read_bytes()},
                          {"up/escaped.dat": "../escaped.dat"})
    with archives.members(path, "hostile.7z", Limits(MiB, 3, 100), tmp_path) as found:
        assert [n for n, _ in found.files] == ["hostile.7z/day.dat", "hostile.7z/inner.7z/data/day.dat"]
        assert found.warnings() == [
            "skipped hostile.7z/__MACOSX/._day.dat: macOS metadata",
            "skipped hostile.7z/../escaped.dat: the name leads out of the archive",
            "skipped hostile.7z/inner.7z/data/users.dat: symbolic link",
        ]
    assert not (tmp_path.parent / "escaped.dat").exists()


def test_a_tar_of_50000_members_is_refused(tmp_path):
    path = tmp_path / "many.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for i in range(50_000):
            tf.addfile(tarfile.TarInfo(f"m/{i:05d}.dat"))
    with pytest.raises(ParseError, match=r"many.tar.gz: holds more than 20000 members \(limit"):
        unpack(path, Limits(64 * MiB, 3, 20_000), tmp_path)  # its headers alone are 25 MB
    assert list(tmp_path.glob("sm-unpack-*")) == []


def test_a_7z_of_more_members_than_the_limit_is_refused(tmp_path):
    path = sevenz_bytes(tmp_path / "many.7z", {f"m/{i:03d}.dat": b"x" for i in range(120)})
    with pytest.raises(ParseError, match=r"many.7z: holds more than 100 members"):
        unpack(path, Limits(MiB, 3, 100), tmp_path)


@pytest.mark.parametrize("kind", ["7z", "tar.gz", "tar"])
def test_a_damaged_archive_of_each_kind_fails_with_a_reason(tmp_path, kind):
    if kind == "7z":
        data = bytearray(sevenz_bytes(tmp_path / "ok.7z", {"day.dat": DAY}).read_bytes())
        data[40:60] = bytes(20)
    elif kind == "tar.gz":
        data = bytearray(tar_bytes({"day.dat": DAY}, "w:gz"))
        data = data[: len(data) // 2]
    else:
        data = bytearray(tar_bytes({"day.dat": DAY}))
        data[148:156] = b"garbage!"  # the header's checksum
        data[257:262] = b"ustar"
    path = _write(tmp_path / f"bad.{kind}", bytes(data))
    with pytest.raises(ParseError, match=rf"bad.{kind}: the archive is damaged"):
        unpack(path, Limits(MiB, 3, 100), tmp_path)


# --- passwords -------------------------------------------------------------------------


LOCKED = {
    "zipcrypto.zip": lambda p: zipcrypto_zip(p, {"day.dat": DAY}, b"s3cret"),
    "aes.zip": lambda p: aes_zip(p, {"day.dat": DAY}, b"s3cret"),
    "locked.7z": lambda p: sevenz_bytes(p, {"day.dat": DAY}, password="s3cret"),
    "headers.7z": lambda p: sevenz_bytes(p, {"day.dat": DAY}, password="s3cret", header_encryption=True),
}


@pytest.mark.parametrize("name", list(LOCKED))
def test_an_encrypted_archive_opens_with_one_of_the_passwords_given(tmp_path, name):
    path = LOCKED[name](tmp_path / name)
    with archives.members(path, name, Limits(MiB, 3, 100), tmp_path, passwords=("wrong", "s3cret")) as found:
        assert [n for n, _ in found.files] == [f"{name}/day.dat"]
        assert found.files[0][1].read_bytes() == DAY


@pytest.mark.parametrize("name", list(LOCKED))
def test_an_encrypted_archive_without_its_password_fails_and_says_what_to_do(tmp_path, name):
    path = LOCKED[name](tmp_path / name)
    with pytest.raises(ParseError, match=f"{name}: the archive is encrypted and no archive password was given: "
                                         "give its source an archive_password"):
        unpack(path, Limits(MiB, 3, 100), tmp_path)
    with pytest.raises(ParseError, match=f"{name}: the archive is encrypted and no archive password given opens it"):
        unpack(path, Limits(MiB, 3, 100), tmp_path, passwords=("wrong", "also wrong"))
    assert list(tmp_path.glob("sm-unpack-*")) == []


def test_an_encrypted_archive_inside_an_archive_uses_the_same_passwords(tmp_path):
    inner = aes_zip(tmp_path / "inner.zip", {"day.dat": DAY}, b"s3cret").read_bytes()
    outer = sevenz_bytes(tmp_path / "outer.7z", {"inner.zip": inner}, password="s3cret")
    found = unpack(outer, Limits(MiB, 3, 100), tmp_path, passwords=("s3cret",))
    assert [n for n, _ in found.files] == ["outer.7z/inner.zip/day.dat"]


def test_gzip_and_bz2_streams_of_several_members_are_read_whole(tmp_path):
    for name, data in {"two.dat.gz": gzip.compress(DAY[:100]) + gzip.compress(DAY[100:]),
                       "two.dat.bz2": bz2.compress(DAY[:100]) + bz2.compress(DAY[100:]),
                       "two.dat.xz": lzma.compress(DAY[:100]) + lzma.compress(DAY[100:])}.items():
        with archives.members(_write(tmp_path / name, data), name, Limits(MiB, 3, 100), tmp_path) as found:
            assert found.files[0][1].read_bytes() == DAY


@pytest.mark.parametrize("name", list(KINDS))
def test_an_archive_cut_short_is_not_whole(tmp_path, name):
    whole = KINDS[name](tmp_path / name)
    archives.check_whole(whole)
    data = whole.read_bytes()
    cut = _write(tmp_path / f"cut-{name}", data[: len(data) // 2 if name != "day.tar" else 700])
    with pytest.raises(ParseError, match="the archive cannot be read to its end"):
        archives.check_whole(cut)
    locked = LOCKED["headers.7z"](tmp_path / "locked.7z")
    archives.check_whole(locked)  # encrypted, and whole
