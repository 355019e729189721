"""brightwind equivalence: the demo mast exported calibrated and cleaned gives brightwind's values.

The mast is brightwind's own demo (``demo_data.csv`` and its IEA Task 43 document, which
changes Spd40mS's logger slope/offset on 2017-01-04 18:00), with the flags of brightwind's
``demo_cleaning_file.csv`` imported as a cleaning log. StationManager's Windographer export
(calibrated, every flag category excluded) must equal what brightwind 2.7.0's
``apply_wspd_slope_offset_adj`` and ``apply_cleaning`` produce, made by
``tests/data/brightwind/make_reference.py`` and stored in ``brightwind_reference.json.xz``.

Tolerance: 1e-9 relative (and 1e-12 absolute, for zeros). Both sides compute
``(v − logger_offset) / logger_slope × cal_slope + cal_offset`` in float64; the export's text
holds the shortest exact form of each float, so the only room for a difference is the order
of the floating-point operations. Missing values must match exactly (same NaN cells), and
every 10-minute step the file lacks must be a blank row of the export.

brightwind reads the file's stamps as period starts; so does the station here, through its
text-file mapping (``timestamp_is_end: false``), so both use the same times.
``test_brightwind_cli.py`` runs the same sequence through the command line with no mapping:
a file that does not say how it stamps time is read as period starts.
"""

from __future__ import annotations

import io
import json
import lzma
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import cleaning_log, exports, iea43, ingest
from core.exports import ExportRequest
from core.formats.generic import GenericMapping, split_unit
from tests.integration.test_samples import import_demo_mast_csv

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data"
REFERENCE = DATA / "brightwind" / "brightwind_reference.json.xz"
RTOL, ATOL = 1e-9, 1e-12


def brightwind_result(raw: pd.DataFrame) -> pd.DataFrame:
    """brightwind's cleaned, recalibrated table, rebuilt from the input and the reference file."""
    ref = json.loads(lzma.decompress(REFERENCE.read_bytes()))
    assert ref["index"]["rows"] == len(raw) and list(raw.columns) == ref["columns"]
    out = raw.copy()
    for col, values in ref["changed"].items():
        out[col] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    for col, runs in ref["nan_runs"].items():
        values = out[col].to_numpy(copy=True)
        for first, last in runs:
            values[first:last + 1] = np.nan
        out[col] = values
    return out


@pytest.fixture
def demo_mast(conn, settings, tmp_path):
    iea43.import_metadata(conn, DATA / "iea43" / "demo_data_iea43_wra_data_model.json", "ana")
    with conn.transaction():
        ingest.set_file_mapping(conn, "Demo Mast", GenericMapping(timestamp_is_end=False), "ana")
    import_demo_mast_csv(conn, settings, tmp_path)
    text = (DATA / "brightwind" / "demo_cleaning_file.csv").read_text()
    result = cleaning_log.import_flags(conn, "Demo Mast", text, "brightwind", "ana")
    assert result["added"] > 0 and result["unmatched"] == []
    return tmp_path / "demo_data.csv"  # the file import_demo_mast_csv wrote and imported


def assert_export_equals_brightwind(text: str, columns: list[dict], raw: pd.DataFrame) -> None:
    """A Windographer export's ``text`` (with its provenance ``columns``) equals brightwind's
    calibrated and cleaned result for the demo mast ``raw``, cell for cell."""
    expected = brightwind_result(raw)
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("Date/Time"))
    got = pd.read_csv(io.StringIO("\n".join(lines[head:])), sep="\t", index_col="Date/Time", parse_dates=True)
    by_header = {split_unit(c["header"])[0]: c["column_name"] for c in columns}
    got = got.rename(columns=lambda h: by_header[split_unit(h)[0]])
    assert sorted(got.columns) == sorted(expected.columns)
    # every 10-minute step from the first to the last stamp; steps missing from the file are blank
    steps = pd.date_range(expected.index[0], expected.index[-1], freq="10min")
    assert got.index.equals(steps)
    assert got.drop(index=expected.index).isna().all().all()
    got = got.loc[expected.index, expected.columns]
    assert (got.isna() == expected.isna()).all().all(), "flagged (missing) cells differ from brightwind's"
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=RTOL, atol=ATOL, equal_nan=True)
    # the recalibration really happened (brightwind changed these), and the flags removed data
    changed = json.loads(lzma.decompress(REFERENCE.read_bytes()))["changed"]
    assert {"Spd40mS", "Spd40mSStd", "Spd40mSMax", "Spd80mS"} <= set(changed)
    assert not np.allclose(got["Spd40mS"].dropna(), raw.loc[got["Spd40mS"].notna(), "Spd40mS"])
    assert got["Spd80mS"].isna().sum() > raw["Spd80mS"].isna().sum()


def read_demo_mast(path: Path) -> pd.DataFrame:
    """brightwind's demo mast CSV as brightwind reads it (stamps as given, period starts)."""
    return pd.read_csv(path, index_col="Timestamp", parse_dates=True)


def test_calibrated_cleaned_export_equals_brightwind(conn, demo_mast):
    row = exports.request_export(conn, ExportRequest("Demo Mast", "windographer", calibrated=True), "ana")
    row = exports.build_export(row["id"])
    assert row["status"] == "done", row["error"]
    text = exports.export_file(row).read_text()
    assert_export_equals_brightwind(text, row["provenance"]["columns"], read_demo_mast(demo_mast))
