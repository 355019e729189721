"""core.exports.CopyDecoder: a binary COPY of (channel_id, times[], vals[]) rows decoded as
its pieces arrive, however the bytes are cut."""

from __future__ import annotations

import numpy as np
import pytest

from core.exports import _PG_EPOCH_US, CopyDecoder, decode_copy

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(4) + (4).to_bytes(4, "big") + b"\x00\x00\x00\x00"  # 4 bytes of extension


def array(values: np.ndarray, oid: int, dtype: str) -> bytes:
    """A one-dimensional binary array of ``values`` (no NULLs), as PostgreSQL sends it."""
    body = np.empty(len(values), dtype=[("n", ">i4"), ("v", dtype)])
    body["n"], body["v"] = 8, values
    head = b"".join(x.to_bytes(4, "big", signed=True) for x in (1, 0, oid, len(values), 1))
    data = head + body.tobytes()
    return len(data).to_bytes(4, "big") + data


def row(cid: int, times_us: np.ndarray, values: np.ndarray) -> bytes:
    return ((3).to_bytes(2, "big") + (4).to_bytes(4, "big") + cid.to_bytes(4, "big")
            + array(times_us - _PG_EPOCH_US, 1184, ">i8") + array(values, 701, ">f8"))


def payload() -> tuple[bytes, dict[int, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(7)
    want = {}
    parts = [HEADER]
    for cid in (3, 1, 12):
        t = np.sort(rng.choice(10_000, 50, replace=False)).astype(np.int64) * 600_000_000
        v = rng.standard_normal(50)
        order = rng.permutation(50) if cid == 12 else np.arange(50)  # one channel's arrays out of order
        parts.append(row(cid, t[order], v[order]))
        want[cid] = (t, v)
    parts.append(b"\xff\xff")
    return b"".join(parts), want


@pytest.mark.parametrize("piece", [1, 7, 100, 1 << 20])
def test_rows_are_decoded_however_the_bytes_are_cut(piece):
    data, want = payload()
    decoder = CopyDecoder()
    for i in range(0, len(data), piece):
        decoder.feed(data[i:i + piece])
    assert sorted(decoder.out) == sorted(want)
    for cid, (t, v) in want.items():
        np.testing.assert_array_equal(decoder.out[cid][0], t)
        np.testing.assert_array_equal(decoder.out[cid][1], v)
    assert sorted(decode_copy(data)) == [1, 3, 12]
