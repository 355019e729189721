"""Chart series: resolution by range, a fair point limit per channel."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest

from core import demo, ingest, series

pytestmark = pytest.mark.integration


@pytest.fixture
def loaded(conn, settings, tmp_path):
    paths = [p for p in demo.generate(tmp_path, start=date(2025, 9, 1), days=3) if "ballymore" in p.name]
    for p in paths:
        with conn.transaction():
            rec = ingest.receive(conn, p, station="Series Mast", settings=settings)
        ingest.import_file(rec.id)
    ids = [r["id"] for r in conn.execute(
        "SELECT id FROM channel WHERE column_name IN ('WS_80m_NE_Avg', 'WS_80m_SW_Avg') ORDER BY id")]
    return ids


def test_point_limit_is_per_channel_and_says_it_cut(conn, settings, loaded):
    small = dataclasses.replace(settings, max_chart_points=100)
    s = series.series(conn, loaded, datetime(2025, 9, 1, tzinfo=UTC), datetime(2025, 9, 3, tzinfo=UTC),
                      resolution="raw", settings=small)
    assert s.truncated
    assert s.frame.groupby("channel_id").size().to_dict() == {loaded[0]: 100, loaded[1]: 100}


def test_resolution_follows_the_range_and_rollups_carry_an_envelope(conn, settings, loaded):
    s = series.series(conn, loaded, datetime(2025, 9, 1, tzinfo=UTC), datetime(2025, 9, 4, tzinfo=UTC))
    assert s.resolution == "raw" and not s.truncated and len(s.frame) == 2 * 3 * 144
    h = series.series(conn, loaded, datetime(2025, 8, 1, tzinfo=UTC), datetime(2025, 10, 1, tzinfo=UTC))
    assert h.resolution == "1h" and len(h.frame) == 2 * 3 * 24
    assert (h.frame["min"] <= h.frame["mean"]).all() and (h.frame["mean"] <= h.frame["max"]).all()


def test_a_statement_over_the_timeout_is_reported_as_such_not_as_an_outage(db_url):
    from core import db
    from core.errors import DatabaseError, DatabaseUnavailable

    with pytest.raises(DatabaseError, match="STATEMENT_TIMEOUT_S") as err, db.connection(db_url) as conn:
        conn.execute("SET statement_timeout = 50")
        conn.execute("SELECT pg_sleep(2)")
    assert not isinstance(err.value, DatabaseUnavailable)
