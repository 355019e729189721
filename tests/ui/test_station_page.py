"""The station health page in Streamlit's AppTest, on a real database: what each role sees,
the flag actions of an analyst (delete, undo), and the "hide flagged values" toggle."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from core import demo, flags, ingest
from core.settings import Settings
from tests.ui.test_pages import show, signed_in, texts

pytestmark = pytest.mark.integration

MAST = "Ballymore Hill"
PAGE = "pages/station.py"


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("demo")
    return [p for p in demo.generate(out, start=date(2025, 3, 1), days=2) if p.parent.name == "ballymore-hill"]


@pytest.fixture
def site(conn, settings: Settings, demo_files: list[Path]) -> dict[str, int]:
    """The demo mast over 2025-03-01 .. 03-02 with one icing flag on the two 80 m averages."""
    for path in demo_files:
        with conn.transaction():
            rec = ingest.receive(conn, path, station=MAST, origin="test", settings=settings)
        ingest.import_file(rec.id, settings=settings)
    ch = {r["column_name"]: r["id"] for r in conn.execute("SELECT column_name, id FROM channel")}
    sid = conn.execute("SELECT id FROM station WHERE name = %s", (MAST,)).fetchone()["id"]
    fid = flags.add_flag(conn, MAST, [ch["WS_80m_NE_Avg"], ch["WS_80m_SW_Avg"]],
                         datetime(2025, 3, 1, 6, tzinfo=UTC), datetime(2025, 3, 1, 12, tzinfo=UTC),
                         "icing", "rime on the cups", "ana")
    return {"flag": fid, "station": sid, **ch}


def _buttons(at) -> list[str]:
    return [b.label for b in at.button]


def test_viewer_sees_heatmap_chart_bands_and_comparisons_but_no_flag_action(site) -> None:
    at = show(signed_in("viewer", station=MAST), PAGE)
    assert not at.error, [e.value for e in at.error]
    assert [s.value for s in at.subheader] == ["Availability", "Time series", "Flags in view", "Comparisons"]
    assert len(at.get("plotly_chart")) == 3  # heatmap, time series, pair ratio: the scatter's tab is closed
    shown = texts(at)
    assert "Raw 10-minute readings" in shown and "Drag across the chart to zoom in." in shown
    table = at.dataframe[0].value
    assert table["flag"].tolist() == [site["flag"]] and table["category"].tolist() == ["icing"]
    assert table["channels"].tolist() == ["WS_80m_NE_Avg, WS_80m_SW_Avg"]
    assert not any(label.startswith(("Delete", "Flag this period", "Zoom to selection")) for label in _buttons(at))
    # even with a selection in its session, a viewer is offered no flag action
    at.session_state[f"picked_{site['station']}"] = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 1, 6, tzinfo=UTC))
    at.run()
    assert "Flag this period…" not in _buttons(at)


def test_analyst_selection_offers_zoom_and_flag_and_zoom_narrows_the_range(site) -> None:
    at = show(signed_in("analyst", station=MAST), PAGE)
    assert "Flag this period…" not in _buttons(at)  # nothing selected yet
    assert "(2.0 days)" in texts(at)
    at.session_state[f"picked_{site['station']}"] = (datetime(2025, 3, 1, 3, tzinfo=UTC), datetime(2025, 3, 1, 9, tzinfo=UTC))
    at.run()
    assert "Selected: **2025-03-01 03:00 – 2025-03-01 09:00 UTC (0.2 days)**" in texts(at)
    assert {"Zoom to selection", "Flag this period…"} <= set(_buttons(at))
    next(b for b in at.button if b.label == "Zoom to selection").click().run()
    assert "Zoomed in to 2025-03-01 03:00 – 2025-03-01 09:00 UTC (0.2 days)" in texts(at)
    assert "Flag this period…" not in _buttons(at)


def test_analyst_deletes_a_flag_and_undoes_it(conn, site) -> None:
    at = show(signed_in("analyst", station=MAST), PAGE)
    assert f"**#{site['flag']} icing**" in texts(at)
    next(b for b in at.button if b.label == "Delete").click().run()
    assert flags.get_flag(conn, site["flag"])["deleted_by"] == "test-analyst"
    assert "No flags in this range." in texts(at)
    next(b for b in at.button if b.label.startswith("Undo")).click().run()
    assert flags.get_flag(conn, site["flag"])["deleted_at"] is None
    assert f"**#{site['flag']} icing**" in texts(at)
    actions = [r["action"] for r in conn.execute(
        "SELECT action FROM audit WHERE entity = 'flag' AND entity_id = %s ORDER BY id", (site["flag"],))]
    assert actions == ["create", "delete", "undelete"]


def test_hide_flagged_values_leaves_them_out(site) -> None:
    at = show(signed_in("viewer", station=MAST), PAGE)
    chart = at.get("plotly_chart")[1]
    before = _points(chart)
    at.toggle[0].set_value(True).run()
    assert not at.exception
    after = _points(at.get("plotly_chart")[1])
    assert before == {"WS_80m_NE_Avg [m/s]": 288, "WS_80m_SW_Avg [m/s]": 288}
    assert after == {"WS_80m_NE_Avg [m/s]": 288 - 36, "WS_80m_SW_Avg [m/s]": 288 - 36}  # 06:00-12:00 flagged


def _points(chart) -> dict[str, int]:
    """Points of each trace of a plotly chart element."""
    spec = json.loads(chart.proto.spec)
    return {t["name"]: len(_values(t["x"])) for t in spec["data"]}


def _values(x) -> list:
    if isinstance(x, dict):  # plotly's typed-array encoding
        return list(np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]))
    return list(x)


def test_analyst_flag_dialog_shows_the_period_snapped_to_whole_records(site) -> None:
    """A drag from 15:57 to 07:54 on 10-minute data flags 15:50-08:00: every record it touches."""
    at = show(signed_in("analyst", station=MAST), PAGE)
    at.session_state[f"picked_{site['station']}"] = (datetime(2025, 3, 1, 15, 57, 12, tzinfo=UTC),
                                                     datetime(2025, 3, 2, 7, 54, 40, tzinfo=UTC))
    at.run()
    shown = texts(at)
    assert "Selected: **2025-03-01 15:57 – 2025-03-02 07:54 UTC (0.7 days)**" in shown
    assert "A flag covers every 10-minute record the selection touches" in shown
    assert "2025-03-01 15:50 – 2025-03-02 08:00 UTC" in shown
    next(b for b in at.button if b.label == "Flag this period…").click().run()
    shown = texts(at)
    assert "**2025-03-01 15:50 – 2025-03-02 08:00 UTC (0.7 days)**" in shown  # the dialog's period
    assert ("Snapped to whole records: every 10-minute record the selection (15:57 – 07:54) touches, from the "
            "start of the first to the end of the last. You selected 2025-03-01 15:57 – 2025-03-02 07:54 UTC") in shown
    # saving is a rerun of the dialog's fragment, which AppTest does not do: the browser test
    # (tests/e2e/test_flagging.py) saves a dragged period and checks its snapped bounds


def test_a_comparison_is_built_only_when_its_tab_is_open(site) -> None:
    """The closed tab's queries and chart cost nothing: the scatter (a WebGL chart of up to
    MAX_CHART_POINTS points) is built once its tab is chosen, and the pair ratio then is not."""
    at = show(signed_in("viewer", station=MAST), PAGE)
    assert [w.label for w in at.selectbox if w.label in ("Pair", "x", "y")] == ["Pair"]
    at.session_state[f"comparisons_{site['station']}"] = "Scatter"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [w.label for w in at.selectbox if w.label in ("Pair", "x", "y")] == ["x", "y"]
    assert len(at.get("plotly_chart")) == 3  # heatmap, time series, scatter
    assert "pairs of raw 10-minute readings at the same times" in texts(at)
