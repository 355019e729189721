"""Make the reference that tests/integration/test_brightwind.py compares StationManager's export with.

It uses brightwind itself (2.7.0, which needs pandas < 3, so run it in a separate venv)::

    python3 -m venv /tmp/bwenv && /tmp/bwenv/bin/pip install brightwind==2.7.0 'pandas<3'
    /tmp/bwenv/bin/python tests/data/brightwind/make_reference.py

brightwind's own, documented steps on its demo mast:

1. ``bw.load_csv`` of ``demo_data.csv`` (tests/data/generic/demo_data.csv.xz, uncompressed);
2. ``bw.MeasurementStation`` of the mast's IEA Task 43 document
   (tests/data/iea43/demo_data_iea43_wra_data_model.json; it changes Spd40mS's logger
   slope/offset on 2017-01-04 18:00; brightwind fetches the document's schema from GitHub, and
   without a network it is given the copy of that schema in brightwind's own wheel);
3. ``bw.apply_wspd_slope_offset_adj(..., apply_to_related_statistics=True)``: the wind speeds
   recalibrated from the logger's programmed slope/offset to the certificate's, their maxima
   and standard deviations too. That option expects brightwind's column convention
   (``Spd80mS_max``, ``Spd80mS_sd``), so the demo's ``…Max``/``…Std`` columns are renamed
   for the call and back after it, as brightwind's docstring shows;
4. ``bw.apply_cleaning`` with brightwind's ``demo_cleaning_file.csv`` (flagged values → NaN).

The result (95,629 rows × 29 columns) is written compactly, as ``brightwind_reference.json.xz``:

- ``changed``: for each column whose values step 3 changed, every value brightwind gives
  (``null`` = NaN), in the order of the rows;
- ``nan_runs``: for every column, the runs of rows ``[first, last]`` (0-based, inclusive) that
  are NaN in brightwind's result;
- ``index``: the first and last timestamp and the row count (the rows are the file's rows).

Every other value equals the input file's value. The test rebuilds the full table from the
input and this file, so the comparison covers all 29 columns.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import sys
import tempfile
from pathlib import Path

import brightwind as bw
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
SUFFIXES = {"Max": "_max", "Std": "_sd", "Min": "_min"}


def runs(mask: np.ndarray) -> list[list[int]]:
    """``[first, last]`` index runs where ``mask`` is true."""
    idx = np.flatnonzero(mask)
    if not idx.size:
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return [[int(a), int(b)] for a, b in zip(starts, ends)]


@contextlib.contextmanager
def offline_schema():
    """brightwind downloads the Task 43 schema of the document's version (1.0.0-2022.01) from
    GitHub; without a network, answer with the copy of that schema in brightwind's own wheel."""
    from brightwind.load import station

    bundled = Path(bw.__file__).parent / "demo_datasets" / "iea43_wra_data_model.schema_v1_0.json"

    class Response:
        status_code = 200
        content = bundled.read_bytes()

    real = station.requests.get
    station.requests.get = lambda url, *a, **k: Response() if "v1.0.0-2022.01" in url else real(url, *a, **k)
    try:
        yield
    finally:
        station.requests.get = real


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "demo_data.csv"
        csv.write_bytes(lzma.decompress((DATA / "generic" / "demo_data.csv.xz").read_bytes()))
        data = bw.load_csv(str(csv))
    raw = data.copy(deep=True)
    with offline_schema():
        mm = bw.MeasurementStation(str(DATA / "iea43" / "demo_data_iea43_wra_data_model.json"))
    wspd_names = mm.measurements.wspd_names
    rename = {}
    for col in data.columns:
        for base in wspd_names:
            for suffix, bw_suffix in SUFFIXES.items():
                if col == base + suffix:
                    rename[col] = base + bw_suffix
    adjusted = bw.apply_wspd_slope_offset_adj(data.rename(columns=rename), mm.measurements,
                                              apply_to_related_statistics=True)
    adjusted = adjusted.rename(columns={v: k for k, v in rename.items()})
    cleaned = bw.apply_cleaning(adjusted, str(HERE / "demo_cleaning_file.csv"))
    changed = {}
    for col in cleaned.columns:
        a, b = adjusted[col].to_numpy(), raw[col].to_numpy()
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            changed[col] = [None if np.isnan(x) else float(x) for x in cleaned[col].to_numpy()]
    out = {
        "made_by": f"brightwind {bw.__version__}, pandas {pd.__version__} (tests/data/brightwind/make_reference.py)",
        "index": {"first": str(cleaned.index[0]), "last": str(cleaned.index[-1]), "rows": len(cleaned)},
        "columns": list(cleaned.columns),
        "changed": changed,
        "nan_runs": {col: runs(cleaned[col].isna().to_numpy()) for col in cleaned.columns},
    }
    target = HERE / "brightwind_reference.json.xz"
    target.write_bytes(lzma.compress(json.dumps(out).encode(), preset=9))
    print(f"{target}: {target.stat().st_size:,} bytes; recalibrated columns: {', '.join(changed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
