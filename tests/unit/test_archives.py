"""Unpacking archives within limits: bombs, nesting, member counts, hostile member names."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core import archives
from core.archives import Limits
from core.errors import ParseError
from tests.bombs import MiB, PeakSize, gzip_of_zeros, many_members, nested, symlink_member, zip_bytes

ROOT = Path(__file__).resolve().parents[2]
DAY = (ROOT / "tests" / "data" / "toa5" / "TestLogger_Hourly_1.dat").read_bytes()


def unpack(path: Path, limits: Limits, tmp: Path) -> archives.Unpacked:
    with archives.members(path, path.name, limits, tmp) as found:
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
    with pytest.raises(ParseError, match="locked.zip: the archive cannot be read: .*encrypted"):
        unpack(z, Limits(MiB, 3, 100), tmp_path)


def test_a_damaged_archive_inside_the_archive_is_named(tmp_path):
    z = tmp_path / "outer.zip"
    z.write_bytes(zip_bytes({"day.dat": DAY, "inner.zip": b"PK\x03\x04" + bytes(range(64))}))
    with pytest.raises(ParseError, match="outer.zip: outer.zip/inner.zip: the archive is damaged"):
        unpack(z, Limits(MiB, 3, 100), tmp_path)
