"""Write Campbell TOB1 files for tests, coded independently of ``core.formats.tob1``.

Follows Campbell's published layout: five quoted ASCII header lines ending in CRLF, then
binary records packed field by field with :mod:`struct` (little-endian, except FP2 and the
big-endian ``…B``/``UINT``/``INT`` types).

>>> encode_fp2(1.5).hex(), encode_fp2(-12.34).hex(), encode_fp2(float("nan")).hex()
('65dc', 'c4d2', '9ffe')
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

STRUCT = {
    "IEEE4": "<f", "IEEE4B": ">f", "IEEE8": "<d", "IEEE8B": ">d",
    "USHORT": "<H", "SHORT": "<h", "UINT2": ">H", "INT2": ">h",
    "ULONG": "<I", "LONG": "<i", "UINT4": ">I", "INT4": ">i",
    "BOOL": "<B", "BOOL2": "<H", "BOOL4": "<I",
}
ENV = ("TOB1", "TestStation", "CR1000X", "4242", "CR1000X.Std.05", "CPU:test.CR1X", "1234", "Ten_Min")


def encode_fp2(value: float) -> bytes:
    """Campbell FP2: sign bit, 2-bit decimal exponent, 13-bit mantissa (≤ 7999), big-endian."""
    if math.isnan(value):
        return bytes([0x9F, 0xFE])
    if math.isinf(value):
        return bytes([0x1F, 0xFF]) if value > 0 else bytes([0x9F, 0xFF])
    if value == 0:
        return bytes(2)
    sign = 0x8000 if value < 0 else 0
    for decimals in (3, 2, 1, 0):
        mantissa = round(abs(value) * 10**decimals)
        if mantissa <= 7999:
            return struct.pack(">H", sign | (decimals << 13) | mantissa)
    raise ValueError(f"{value} is outside the FP2 range ±7999")


def encode(type_name: str, value) -> bytes:
    """One field of one record."""
    t = type_name.upper()
    if t == "FP2":
        return encode_fp2(float(value))
    if t in ("SECNANO", "NSEC"):
        seconds, nanos = value
        return struct.pack("<II" if t == "SECNANO" else ">II", seconds, nanos)
    if t.startswith("ASCII("):
        size = int(t[6:-1])
        return str(value).encode("ascii")[:size].ljust(size, b"\0")
    if t.startswith("BOOL"):
        value = 0xFF if value else 0  # a logger writes any non-zero byte for True
    return struct.pack(STRUCT[t], value)


def header_bytes(names, units, processing, types, env=ENV) -> bytes:
    rows = [env, names, units, processing, types]
    return b"".join((",".join(f'"{x}"' for x in row) + "\r\n").encode("ascii") for row in rows)


def write_tob1(path: Path, fields: dict[str, tuple[str, list]], units: dict[str, str] | None = None,
               processing: dict[str, str] | None = None, env=ENV) -> Path:
    """Write ``fields`` (name → (TOB1 type, values per record)) as a TOB1 file.

    Fields are written in dict order; every value list must have the same length.
    """
    names = list(fields)
    types = [fields[n][0] for n in names]
    columns = [fields[n][1] for n in names]
    n = len(columns[0]) if columns else 0
    assert all(len(c) == n for c in columns), "every field needs one value per record"
    units = units or {}
    processing = processing or {}
    out = bytearray(header_bytes(
        names, [units.get(x, "") for x in names], [processing.get(x, "") for x in names], types, env
    ))
    for i in range(n):
        for t, col in zip(types, columns):
            out += encode(t, col[i])
    path.write_bytes(bytes(out))
    return path
