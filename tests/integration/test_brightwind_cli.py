"""brightwind's demo mast through the command line, as a new user runs it, with no mapping set.

``import-metadata`` of its Task 43 document (``timestamp_is_end_of_period`` is null there),
``ingest`` of its CSV (which does not say whether its stamps start or end the period), a
worker, ``flag import --format brightwind`` of its cleaning file, then ``export`` (Windographer,
calibrated): the export must equal brightwind 2.7.0's calibrated and cleaned result cell for
cell. brightwind reads the stamps as period starts, and so must StationManager when the file
does not say (compared as in ``test_brightwind.py``).
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from tests.integration.test_brightwind import assert_export_equals_brightwind, read_demo_mast
from tests.integration.test_cli import env_for, run

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data"


def test_cli_sequence_without_a_mapping_equals_brightwind(db_url, settings, tmp_path):
    env = env_for(db_url, settings.home)
    csv = tmp_path / "demo_data.csv"
    csv.write_bytes(lzma.decompress((DATA / "generic" / "demo_data.csv.xz").read_bytes()))

    res = run(["import-metadata", str(DATA / "iea43" / "demo_data_iea43_wra_data_model.json")], env)
    assert res.returncode == 0, res.stderr
    res = run(["ingest", str(csv), "--station", "Demo Mast"], env)
    assert res.returncode == 0, res.stderr
    res = run(["worker", "--once"], env, timeout=600)
    assert res.returncode == 0, res.stderr
    res = run(["files", "--station", "Demo Mast", "--json"], env)
    (file,) = json.loads(res.stdout)
    assert file["status"] == "imported", file["message"]
    # the import says how it read the stamps, and that the file did not say
    assert any("period start" in w and "does not say" in w for w in file["warnings"]), file["warnings"]

    res = run(["flag", "import", str(DATA / "brightwind" / "demo_cleaning_file.csv"),
               "--station", "Demo Mast", "--format", "brightwind", "--json"], env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["added"] > 0

    out = tmp_path / "export.txt"
    res = run(["export", "--station", "Demo Mast", "--format", "windographer", "--out", str(out)], env, timeout=600)
    assert res.returncode == 0, res.stderr
    provenance = json.loads(out.with_name("export.provenance.json").read_text())
    assert_export_equals_brightwind(out.read_text(), provenance["columns"], read_demo_mast(csv))
