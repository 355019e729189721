"""Snapping a chart selection to whole logger records (core.records)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core import records
from core.records import Clock, snap


def d(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_the_issue_example_flags_every_touched_10_minute_record() -> None:
    s = snap(d(2025, 3, 1, 15, 57), d(2025, 3, 2, 7, 54), [Clock(600)])
    assert (s.start, s.end) == (d(2025, 3, 1, 15, 50), d(2025, 3, 2, 8, 0))
    assert (s.start_interval_s, s.end_interval_s) == (600, 600)


def test_boundaries_stay_and_a_boundary_end_takes_no_extra_record() -> None:
    s = snap(d(2025, 3, 1, 15, 50), d(2025, 3, 1, 16, 0), 600)
    assert (s.start, s.end) == (d(2025, 3, 1, 15, 50), d(2025, 3, 1, 16, 0))
    s = snap(d(2025, 3, 1, 15, 50), d(2025, 3, 1, 16, 0, 0, 1), 600)  # 1 µs into the next record
    assert s.end == d(2025, 3, 1, 16, 10)


def test_zero_width_and_reversed_selections() -> None:
    assert snap(d(2025, 3, 1, 15, 57), d(2025, 3, 1, 15, 57), 600)[:2] == (d(2025, 3, 1, 15, 50), d(2025, 3, 1, 16, 0))
    assert snap(d(2025, 3, 1, 15, 50), d(2025, 3, 1, 15, 50), 600)[:2] == (d(2025, 3, 1, 15, 50), d(2025, 3, 1, 16, 0))
    assert snap(d(2025, 3, 1, 16, 5), d(2025, 3, 1, 15, 57), 600)[:2] == (d(2025, 3, 1, 15, 50), d(2025, 3, 1, 16, 10))


@pytest.mark.parametrize(("interval", "start", "end"), [
    (60, d(2025, 3, 1, 15, 57), d(2025, 3, 1, 15, 59)),       # 1-minute logger
    (3600, d(2025, 3, 1, 15, 0), d(2025, 3, 1, 17, 0)),       # hourly logger
    (1, d(2025, 3, 1, 15, 57, 30), d(2025, 3, 1, 15, 57, 31)),
])
def test_other_intervals(interval: int, start: datetime, end: datetime) -> None:
    s = snap(d(2025, 3, 1, 15, 57, 30, 250), d(2025, 3, 1, 16, 58, 10) if interval == 3600 else
             d(2025, 3, 1, 15, 58, 10) if interval == 60 else d(2025, 3, 1, 15, 57, 30, 900), interval)
    assert (s.start, s.end) == (start, end)


def test_naive_and_other_zone_inputs_are_instants() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    s = snap(datetime(2025, 3, 1, 21, 27, tzinfo=ist), datetime(2025, 3, 1, 15, 58), 600)  # 15:57 UTC, naive 15:58 UTC
    assert (s.start, s.end) == (d(2025, 3, 1, 15, 50), d(2025, 3, 1, 16, 0))
    assert s.start.tzinfo is UTC


def test_the_grid_follows_the_logger_local_clock() -> None:
    # an hourly logger at UTC+05:30 stamps local whole hours, which are :30 UTC
    s = snap(d(2025, 3, 1, 15, 57), d(2025, 3, 1, 17, 10), [Clock(3600, 330)])
    assert (s.start, s.end) == (d(2025, 3, 1, 15, 30), d(2025, 3, 1, 17, 30))
    # a 10-minute logger at UTC+05:45: :05, :15 … UTC
    s = snap(d(2025, 3, 1, 15, 57), d(2025, 3, 1, 16, 6), [Clock(600, 345)])
    assert (s.start, s.end) == (d(2025, 3, 1, 15, 55), d(2025, 3, 1, 16, 15))
    # a whole-hour offset leaves a 10-minute grid where it was
    assert snap(d(2025, 3, 1, 15, 57), d(2025, 3, 2, 7, 54), [Clock(600, 60)])[:2] == (
        d(2025, 3, 1, 15, 50), d(2025, 3, 2, 8, 0))


def test_a_drag_across_an_offset_change_uses_each_end_s_own_grid() -> None:
    # an hourly logger set from UTC+10:30 (daylight saving, Lord Howe) to UTC+10:00 on 6 April 02:00 local
    change = d(2025, 4, 5, 15, 30)
    clocks = [Clock(3600, 630, None, change), Clock(3600, 600, change, None)]
    s = snap(d(2025, 4, 5, 12, 10), d(2025, 4, 5, 18, 20), clocks)
    assert (s.start, s.end) == (d(2025, 4, 5, 11, 30), d(2025, 4, 5, 19, 0))
    # the end exactly at a record boundary of the new grid
    assert snap(d(2025, 4, 5, 12, 10), d(2025, 4, 5, 18, 0), clocks).end == d(2025, 4, 5, 18, 0)


def test_a_drag_across_an_interval_change() -> None:
    change = d(2025, 6, 1)
    clocks = [Clock(600, 0, None, change), Clock(3600, 0, change, None)]
    s = snap(d(2025, 5, 31, 23, 43), d(2025, 6, 1, 2, 15), clocks)
    assert (s.start, s.end, s.start_interval_s, s.end_interval_s) == (
        d(2025, 5, 31, 23, 40), d(2025, 6, 1, 3, 0), 600, 3600)
    assert "10-minute / hourly record" in records.describe(s)
    # ending exactly at the change: the last record is the old configuration's
    s = snap(d(2025, 5, 31, 23, 43), change, clocks)
    assert (s.end, s.end_interval_s) == (change, 600)


def test_several_loggers_in_force_the_longest_record_wins_and_gaps_take_the_nearest() -> None:
    clocks = [Clock(60, 0, d(2025, 1, 1), d(2025, 2, 1)), Clock(600, 0, d(2025, 1, 1), d(2025, 2, 1)),
              Clock(3600, 0, d(2025, 3, 1), None)]
    assert snap(d(2025, 1, 10, 15, 57), d(2025, 1, 10, 16, 1), clocks)[:2] == (d(2025, 1, 10, 15, 50), d(2025, 1, 10, 16, 10))
    # before any configuration: the first one; between two: the nearer one
    assert records.clock_at(clocks, d(2024, 1, 1)).interval_s == 600
    assert records.clock_at(clocks, d(2025, 2, 27)).interval_s == 3600
    assert records.clock_at(clocks, d(2025, 2, 2)).interval_s == 600


def test_no_logger_configuration_means_10_minutes_utc() -> None:
    assert snap(d(2025, 3, 1, 15, 57), d(2025, 3, 2, 7, 54), [])[:2] == (d(2025, 3, 1, 15, 50), d(2025, 3, 2, 8, 0))


def test_bad_interval() -> None:
    with pytest.raises(ValueError):
        records.floor_record(d(2025, 1, 1), 0)
