"""Quality checks (core.qc): each check on small arrays, then the demo year against its
documented faults, then speed on six years of 80 channels."""

from __future__ import annotations

import doctest
import io
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core import demo, qc, qc_runner
from core.formats import open_reader
from core.qc import FAIL, GOOD, MISSING, NOT_EVALUATED, SUSPECT
from tests import qcmast

T0 = np.datetime64("2025-01-01T00:00", "us")
STEP = np.timedelta64(10, "m")


def times(n: int) -> np.ndarray:
    return T0 + np.arange(n) * STEP


def u8(*flags: int) -> np.ndarray:
    return np.array(flags, dtype=np.uint8)


def test_doctests() -> None:
    result = doctest.testmod(qc)
    assert result.attempted >= 30 and result.failed == 0


# --- gross range ---------------------------------------------------------------------------


def test_gross_range_flags_spans_nan_and_inf() -> None:
    flags = qc.gross_range([-1, 0, 50, 50.1, 75, 75.1, np.nan, np.inf], (0, 75), (0, 50))
    assert flags.dtype == np.uint8
    assert flags.tolist() == [FAIL, GOOD, GOOD, SUSPECT, SUSPECT, FAIL, MISSING, FAIL]


def test_gross_range_open_ends_and_empty() -> None:
    assert qc.gross_range([-1e9, 1e9], (None, None)).tolist() == [GOOD, GOOD]
    assert qc.gross_range([1.0, 3.0], (None, 2.0), None).tolist() == [GOOD, FAIL]
    assert qc.gross_range([], (0, 1), (0, 1)).shape == (0,)


def test_default_ranges_cover_the_measurement_types() -> None:
    for mtype in ("wind_speed", "wind_direction", "air_temperature", "relative_humidity",
                  "air_pressure", "battery_voltage", "precipitation", "solar_radiation"):
        r = qc.DEFAULT_RANGES[mtype]
        assert r.unit in qc.UNIT_ALIASES
        for fail, suspect in ((r.fail, r.suspect), (r.sd_fail, r.sd_suspect)):
            lo_f, hi_f = (-np.inf if fail[0] is None else fail[0]), (np.inf if fail[1] is None else fail[1])
            lo_s, hi_s = (-np.inf if suspect[0] is None else suspect[0]), (np.inf if suspect[1] is None else suspect[1])
            assert lo_f <= lo_s < hi_s <= hi_f  # suspect inside fail


# --- flat line ------------------------------------------------------------------------------


def _flat_line_reference(x: np.ndarray, tol: float, k: int) -> np.ndarray:
    """Slow reference: records inside any k-window with max - min <= tol."""
    out = np.zeros(x.size, dtype=bool)
    for j in range(x.size - k + 1):
        w = x[j:j + k]
        if not np.isnan(w).any() and w.max() - w.min() <= tol:
            out[j:j + k] = True
    return out


@pytest.mark.parametrize("seed", range(20))
def test_flat_line_matches_a_slow_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 80))
    x = np.round(rng.integers(0, 3, n) * 0.5 + rng.random(n) * 0.02, 3)
    x[rng.random(n) < 0.05] = np.nan
    s, f = int(rng.integers(2, 6)), int(rng.integers(6, 12))
    flags = qc.flat_line(x, None, 0.01, s, f)
    expected = np.full(n, GOOD)
    expected[_flat_line_reference(x, 0.01, s)] = SUSPECT
    expected[_flat_line_reference(x, 0.01, f)] = FAIL
    expected[np.isnan(x)] = MISSING
    assert flags.tolist() == expected.tolist()


def test_flat_line_edges() -> None:
    assert qc.flat_line([], None, 0.0, 2, 3).shape == (0,)
    assert qc.flat_line([1.0, 1.0], None, 0.0, 3, 4).tolist() == [GOOD, GOOD]  # shorter than a window
    assert qc.flat_line([np.nan] * 5, times(5), 0.0, 2, 3).tolist() == [MISSING] * 5
    assert qc.flat_line([np.inf, np.inf, 1.0], None, 0.0, 2, 3).tolist() == [GOOD, GOOD, GOOD]
    with pytest.raises(ValueError):
        qc.flat_line([1.0], None, 0.0, 1, 3)
    with pytest.raises(ValueError):
        qc.flat_line([1.0, 1.0], times(3), 0.0, 2, 3)


def test_flat_line_runs_do_not_cross_gaps() -> None:
    t = times(8)
    t[4:] += np.timedelta64(1, "D")  # 4 records, a day missing, 4 records
    assert qc.flat_line([5.0] * 8, t, 0.0, 3, 5).tolist() == [SUSPECT] * 8
    assert qc.flat_line([5.0] * 8, times(8), 0.0, 3, 5).tolist() == [FAIL] * 8


# --- spike, rate of change ------------------------------------------------------------------


def test_spike_edges_and_missing_neighbours() -> None:
    assert qc.spike([1.0], 1, 2).tolist() == [NOT_EVALUATED]
    assert qc.spike([1.0, np.nan], 1, 2).tolist() == [NOT_EVALUATED, MISSING]
    assert qc.spike([0.0, 5.0, 0.0, 1.5, 0.0], 1, 4).tolist() == [
        NOT_EVALUATED, FAIL, SUSPECT, SUSPECT, NOT_EVALUATED]
    assert qc.spike([0.0, 0.0, np.nan, 0.0], 1, 4).tolist() == [
        NOT_EVALUATED, NOT_EVALUATED, MISSING, NOT_EVALUATED]
    assert qc.spike([0.0, np.inf, 0.0], 1, 4).tolist() == [NOT_EVALUATED, FAIL, NOT_EVALUATED]


def test_rate_of_change_uses_the_previous_valid_value_and_its_time() -> None:
    t = times(4)
    assert qc.rate_of_change([0.0, np.nan, np.nan, 1.0], t, 1 / 1800).tolist() == [
        GOOD, MISSING, MISSING, GOOD]  # 1 per 30 min
    assert qc.rate_of_change([0.0, np.nan, np.nan, 1.0], t, 0.9 / 1800)[-1] == SUSPECT
    same = np.array([T0, T0])
    assert qc.rate_of_change([0.0, 9.0], same, 0.1).tolist() == [GOOD, NOT_EVALUATED]
    assert qc.rate_of_change([], times(0), 1.0).shape == (0,)
    with pytest.raises(ValueError):
        qc.rate_of_change([1.0, 2.0], times(1), 1.0)


# --- dead -----------------------------------------------------------------------------------


def test_dead_runs_of_nan_and_of_one_value() -> None:
    x = np.array([np.nan, np.nan, 1.0, 2.0, 2.0, 2.0, 2.0, np.nan, np.nan, np.nan])
    assert qc.dead(x, 3).tolist() == [MISSING, MISSING, GOOD] + [FAIL] * 4 + [FAIL] * 3
    assert qc.dead(x, 3, constant=False).tolist() == [MISSING, MISSING] + [GOOD] * 5 + [FAIL] * 3
    assert qc.dead([], 3).shape == (0,)
    with pytest.raises(ValueError):
        qc.dead([1.0], 1)


# --- icing ----------------------------------------------------------------------------------


def test_icing_needs_cold_air_and_a_stopped_sensor_for_long_enough() -> None:
    cold, warm = [-4.0] * 10, [6.0] * 10
    sd = [0.0] * 10
    assert qc.icing(cold, sd, min_steps=4).tolist() == [SUSPECT] * 10  # fail from 12
    assert qc.icing(cold, sd, min_steps=4, fail_steps=10).tolist() == [FAIL] * 10
    assert qc.icing(warm, sd, min_steps=4).tolist() == [GOOD] * 10
    assert qc.icing(cold, [0.4] * 10, min_steps=4).tolist() == [GOOD] * 10
    assert qc.icing(cold, sd, min_steps=11).tolist() == [GOOD] * 10


def test_icing_of_a_vane_from_a_frozen_average() -> None:
    avg = [200.1, 201.5, 187.0, 187.0, 187.0, 187.0, 190.2]
    flags = qc.icing([-2.0] * 7, None, avg, min_steps=4, fail_steps=8)
    assert flags.tolist() == [GOOD, GOOD] + [SUSPECT] * 4 + [GOOD]
    with pytest.raises(ValueError):
        qc.icing([0.0], None, None)


def test_icing_missing_values_and_gaps() -> None:
    t = times(6)
    t[3:] += np.timedelta64(2, "h")
    flags = qc.icing([-1.0, np.nan, -1.0, -1.0, -1.0, -1.0], [0.0, 0.0, np.nan, 0.0, 0.0, 0.0],
                     min_steps=3, times=t)
    assert flags.tolist() == [GOOD, NOT_EVALUATED, MISSING, SUSPECT, SUSPECT, SUSPECT]
    assert qc.icing([], [], min_steps=3).shape == (0,)


# --- boom pairs -----------------------------------------------------------------------------


def _days(days: int, rng: np.random.Generator, shadow: bool = True) -> tuple[np.ndarray, ...]:
    """Times, two paired cups (7 % tower shadow in opposite sectors, 1 % noise) and the
    direction over ``days`` of 10-minute records."""
    n = days * 144
    speed = 8 + 3 * np.sin(np.arange(n) / 50) + rng.normal(0, 0.3, n)
    direction = (np.arange(n) * 0.7) % 360
    shadow_a = np.where(shadow & (np.abs(direction - 45) < 20), 0.93, 1.0)
    shadow_b = np.where(shadow & (np.abs(direction - 225) < 20), 0.93, 1.0)
    a = speed * shadow_a * (1 + rng.normal(0, 0.01, n))
    b = speed * shadow_b * (1 + rng.normal(0, 0.01, n))
    return times(n), a, b, direction


def _wake(direction: np.ndarray) -> np.ndarray:
    return (np.abs(direction - 45) < 30) | (np.abs(direction - 225) < 30)


@pytest.mark.parametrize("start_day", [3, 11, 29, 40])
def test_pair_ratio_drift_finds_a_5_percent_drift_within_3_days(start_day: int) -> None:
    t, a, b, d = _days(60, np.random.default_rng(start_day))
    b[start_day * 144 + 50:] *= 0.95  # from mid-morning on, whatever the block grid
    flags = qc.pair_ratio_drift(a, b, t, exclude=_wake(d))
    first = int(np.argmax(flags == SUSPECT))
    # the start may go back over hours without a usable ratio (the wind behind a boom)
    assert start_day * 144 + 50 - 90 <= first <= (start_day + 3) * 144, first / 144
    assert (flags[(start_day + 3) * 144:(start_day + 40) * 144] == SUSPECT).mean() > 0.95  # 45 days: new normal
    assert (flags[:start_day * 144 - 40] == SUSPECT).sum() == 0


def test_pair_ratio_drift_baseline_is_not_contaminated_by_a_long_drift() -> None:
    """Ten days 6 % low inside one month: a baseline over the month would take the drift in."""
    t, a, b, d = _days(45, np.random.default_rng(4))
    b[20 * 144:30 * 144] *= 0.94
    flags = qc.pair_ratio_drift(a, b, t, exclude=_wake(d))
    assert (flags[20 * 144 + 6:30 * 144 - 6] == SUSPECT).all()
    assert not (flags[:20 * 144 - 6] == SUSPECT).any() and not (flags[30 * 144 + 6:] == SUSPECT).any()


def test_pair_ratio_drift_threshold_follows_the_pairs_own_spread() -> None:
    t, a, b, d = _days(40, np.random.default_rng(6), shadow=False)
    b[25 * 144:] *= 0.97  # 3 %: found on a tight pair ...
    assert (qc.pair_ratio_drift(a, b, t)[27 * 144:] == SUSPECT).all()
    daily = np.repeat(np.random.default_rng(1).normal(0, 0.012, 40), 144)  # ... not on one whose days scatter 1.2 %
    assert not (qc.pair_ratio_drift(a, b * (1 + daily), t) == SUSPECT).any()


def test_pair_ratio_drift_tower_shadow_is_left_out_with_the_wake_mask() -> None:
    t, a, b, d = _days(30, np.random.default_rng(2))
    d = np.where(np.arange(d.size) // 144 % 7 == 5, 225.0, d)  # one day a week the wind sits in b's wake
    b = np.where(np.abs(d - 225) < 20, a * 0.93, b)
    assert (qc.pair_ratio_drift(a, b, t, exclude=_wake(d)) != SUSPECT).all()


def test_pair_ratio_drift_low_wind_missing_and_new_normal() -> None:
    t = times(20 * 144)
    slow = np.full(t.size, 3.0)
    assert (qc.pair_ratio_drift(slow, slow * 1.2, t) == NOT_EVALUATED).all()  # below 4 m/s
    assert qc.pair_ratio_drift([5.0, np.nan], [5.0, 5.0], times(2)).tolist() == [NOT_EVALUATED, MISSING]
    assert qc.pair_ratio_drift([], [], times(0)).shape == (0,)
    with pytest.raises(ValueError):
        qc.pair_ratio_drift([5.0], [5.0, 5.0], times(2))
    t, a, b, _ = _days(120, np.random.default_rng(8), shadow=False)
    b[10 * 144:] *= 0.9  # a recalibrated cup: after 45 days it is the new normal
    flags = qc.pair_ratio_drift(a, b, t, new_normal_days=45)
    assert (flags[11 * 144:54 * 144] == SUSPECT).all() and not (flags[60 * 144:] == SUSPECT).any()


# --- time axis and periods ------------------------------------------------------------------


def test_gaps_in_any_order_with_duplicates_and_edges() -> None:
    t = times(10)[[5, 0, 1, 1, 9, 2]]  # missing 3, 4 and 6, 7, 8
    assert [(str(a)[11:16], str(b)[11:16]) for a, b in qc.gaps(t, 600)] == [
        ("00:30", "00:50"), ("01:00", "01:30")]
    edged = qc.gaps(t, 600, start=T0 - 2 * STEP, end=T0 + 12 * STEP)
    assert edged[0] == (T0 - 2 * STEP, T0) and edged[-1] == (T0 + 10 * STEP, T0 + 12 * STEP)
    assert qc.gaps(times(0), 600, start=T0, end=T0 + STEP) == [(T0, T0 + STEP)]
    assert qc.gaps(times(1), 600) == [] and qc.gaps(times(10), 600) == []


def test_gaps_accepts_aware_datetimes() -> None:
    t = [datetime(2025, 1, 1, 1, 0, tzinfo=UTC), datetime(2025, 1, 1, 1, 10, tzinfo=UTC),
         datetime(2025, 1, 1, 3, 0, tzinfo=UTC).astimezone()]  # local time, same instant
    assert qc.gaps(t, 600) == [(np.datetime64("2025-01-01T01:20"), np.datetime64("2025-01-01T03:00"))]


def test_duplicates_keep_the_first_occurrence() -> None:
    t = times(4)[[0, 1, 0, 2, 1, 0]]
    assert qc.duplicates(t).tolist() == [2, 4, 5]
    assert qc.duplicates(times(3)).tolist() == []


def test_periods_merge_worst_and_ignore_missing() -> None:
    t = times(10)
    flags = u8(1, 3, 3, 1, 4, 1, 1, 9, 9, 3)
    runs = qc.periods(t, flags, 600)
    assert [(int((a - T0) / STEP), int((b - T0) / STEP), w) for a, b, w in runs] == [
        (1, 3, 3), (4, 5, 4), (9, 10, 3)]
    assert len(qc.periods(t, flags, 600, merge_gap_steps=1)) == 2
    assert len(qc.periods(t, flags, 600, merge_gap_steps=4)) == 1
    assert [w for *_, w in qc.periods(t, flags, 600, min_flag=FAIL)] == [4]
    assert qc.periods(t[:0], flags[:0], 600) == []
    gapped = t.copy()
    gapped[2:] += np.timedelta64(1, "h")  # flagged records 1 and 2 are no longer adjacent
    assert len(qc.periods(gapped, flags, 600)) == 4


# --- run_station_checks on small inputs -----------------------------------------------------


def _small_station(n: int = 432) -> tuple[np.ndarray, dict, dict]:
    rng = np.random.default_rng(5)
    ws = 7 + 2 * np.sin(np.arange(n) / 20) + rng.normal(0, 0.3, n)
    cols = {
        "WS_80m_NE_Avg": ws, "WS_80m_NE_Std": 0.1 * ws + rng.random(n) * 0.1,
        "WS_80m_SW_Avg": ws * 1.01, "AirT_2m_Avg": 8 + rng.normal(0, 0.5, n),
        "Mystery": rng.random(n),
    }
    meta = {
        "WS_80m_NE_Avg": {"measurement_type": "wind_speed", "statistic": "avg", "height_m": 80, "orientation": "NE"},
        "WS_80m_NE_Std": {"measurement_type": "wind_speed", "statistic": "sd", "height_m": 80, "orientation": "NE"},
        "WS_80m_SW_Avg": {"measurement_type": "wind_speed", "statistic": "avg", "height_m": 80, "orientation": "SW", "unit": "m/s"},
        "AirT_2m_Avg": {"measurement_type": "air_temperature", "statistic": "avg", "height_m": 2, "unit": "Deg C"},
    }
    return times(n), cols, meta


def test_run_station_checks_clean_data_and_empty_input() -> None:
    t, cols, meta = _small_station()
    assert qc.run_station_checks(t, cols, meta) == []
    assert qc.run_station_checks(t[:0], {k: v[:0] for k, v in cols.items()}, meta) == []
    one = qc.run_station_checks(t[:1], {k: v[:1] for k, v in cols.items()}, meta)
    assert one == []
    with pytest.raises(ValueError):
        qc.run_station_checks(t, {"x": [1.0]}, {})


def test_run_station_checks_finds_a_stuck_cup_out_of_range_values_and_time_faults() -> None:
    t, cols, meta = _small_station()
    cols["WS_80m_NE_Avg"][100:160] = 6.5  # 10 h stuck
    cols["AirT_2m_Avg"][300:303] = 70.0  # impossible
    order = np.r_[np.arange(200), 199, np.arange(230, 432)]  # a duplicate and a 5 h gap
    shuffled = np.random.default_rng(0).permutation(order.size)  # any row order
    found = qc.run_station_checks(t[order][shuffled], {k: v[order][shuffled] for k, v in cols.items()}, meta)
    by_rule = {f.rule: f for f in found}
    flat = by_rule["flat_line"]
    assert flat.columns == ("WS_80m_NE_Avg", "WS_80m_NE_Std") and flat.severity == "fail"
    assert (flat.start, flat.end) == (_dt(t[100]), _dt(t[160]))
    assert "stuck" in flat.message and "10.0 h" in flat.message
    temp = by_rule["gross_range"]
    assert temp.columns == ("AirT_2m_Avg",) and (temp.start, temp.end) == (_dt(t[300]), _dt(t[303]))
    assert (by_rule["gap"].start, by_rule["gap"].end) == (_dt(t[200]), _dt(t[230]))
    assert by_rule["duplicates"].start == _dt(t[199]) and by_rule["duplicates"].columns == ()
    assert "pair_ratio" not in by_rule  # the stuck values are hidden from the later pair check
    assert not {"dead", "icing"} & set(by_rule)
    assert all(isinstance(f.start, datetime) and f.start.tzinfo is None for f in found)


def test_run_station_checks_keeps_gaps_apart() -> None:
    t, cols, meta = _small_station()
    keep = np.r_[np.arange(100), 103, np.arange(106, 432)]  # two 30-min gaps around one record
    found = qc.run_station_checks(t[keep], {k: v[keep] for k, v in cols.items()}, meta)
    assert [(f.rule, f.start, f.end) for f in found] == [
        ("gap", _dt(t[100]), _dt(t[103])), ("gap", _dt(t[104]), _dt(t[106]))]


def test_run_station_checks_meta_overrides_and_units() -> None:
    t, cols, meta = _small_station()
    meta["AirT_2m_Avg"] = dict(meta["AirT_2m_Avg"], suspect_span=(-20, 7.0), fail_span=(-30, 40))
    assert {f.rule for f in qc.run_station_checks(t, cols, meta)} == {"gross_range"}
    meta["AirT_2m_Avg"] = {"measurement_type": "air_temperature", "statistic": "avg", "unit": "K"}
    cols["AirT_2m_Avg"] = cols["AirT_2m_Avg"] + 273.15  # kelvin: no default range applies
    assert qc.run_station_checks(t, cols, meta) == []


def test_run_station_checks_icing_and_dead() -> None:
    t, cols, meta = _small_station()
    cols["AirT_2m_Avg"] -= 11.0
    cols["WS_80m_NE_Std"][50:100] = 0.0
    cols["Mystery"][200:300] = np.nan  # 16.7 h of NaN
    found = qc.run_station_checks(t, cols, meta)
    assert [(f.rule, f.columns, f.start, f.end, f.severity) for f in found] == [
        ("icing", ("WS_80m_NE_Avg", "WS_80m_NE_Std"), _dt(t[50]), _dt(t[100]), "fail"),
        ("dead", ("Mystery",), _dt(t[200]), _dt(t[300]), "fail"),
    ]


def test_a_value_failed_by_one_check_is_hidden_from_the_later_ones() -> None:
    """One impossible cup value used to drag the pair ratio for hours on both booms."""
    t, cols, meta = _long_station(30)
    cols["WS_80m_NE_Avg"][20 * 144] = 999.0
    found = qc.run_station_checks(t, cols, meta)
    assert [(f.rule, f.columns, f.start) for f in found] == [("gross_range", ("WS_80m_NE_Avg",), _dt(t[20 * 144]))]


def test_one_icing_event_on_one_sensor_is_one_finding() -> None:
    """Fragments of an iced cup (the sd ticking up now and then), its stuck average and its
    statistics make one finding, not one per piece and rule."""
    t, cols, meta = _long_station(30)
    cols["AirT_2m_Avg"] -= 11.0
    ice = slice(10 * 144, 11 * 144)
    cols["WS_80m_NE_Avg"][ice] = 0.2 + np.random.default_rng(0).random(144) * 0.05
    cols["WS_80m_NE_Std"][ice] = np.where(np.arange(144) % 40 < 30, 0.0, 0.3)  # 5 fragments
    found = qc.run_station_checks(t, cols, meta)
    assert [(f.rule, f.columns, f.start, f.end) for f in found] == [
        ("icing", ("WS_80m_NE_Avg", "WS_80m_NE_Std"), _dt(t[ice.start]), _dt(t[ice.stop]))]


def test_spikes_and_rates_of_change_per_measurement_type() -> None:
    t, cols, meta = _long_station(5)
    cols["WS_80m_SW_Avg"][100] += 14.0  # a spike
    cols["AirT_2m_Avg"][300:] += 7.0  # a jump that stays: a rate of change, not a spike
    cols["WD_80m_Avg"][200] = (cols["WD_80m_Avg"][200] + 180.0) % 360.0  # a vane flips for one record
    cols["WD_80m_Avg"][400:402] = [359.5, 0.5]  # across north: no spike
    found = qc.run_station_checks(t, cols, meta)
    assert [(f.rule, f.columns, f.start) for f in found] == [
        ("spike", ("WS_80m_SW_Avg",), _dt(t[100])), ("spike", ("WD_80m_Avg",), _dt(t[200])),
        ("rate_of_change", ("AirT_2m_Avg",), _dt(t[300]))]


def _long_station(days: int) -> tuple[np.ndarray, dict, dict]:
    """A small station over ``days`` with a vane: wind 6-10 m/s, direction around 250."""
    n = days * 144
    rng = np.random.default_rng(9)
    ws = 8 + 2 * np.sin(np.arange(n) / 60) + rng.normal(0, 0.3, n)
    cols = {"WS_80m_NE_Avg": ws * (1 + rng.normal(0, 0.005, n)), "WS_80m_NE_Std": 0.1 * ws + rng.random(n) * 0.1,
            "WS_80m_SW_Avg": ws * (1 + rng.normal(0, 0.005, n)), "AirT_2m_Avg": 8 + rng.normal(0, 0.2, n),
            "WD_80m_Avg": (250 + 30 * np.sin(np.arange(n) / 90) + rng.normal(0, 3, n)) % 360}
    meta = {
        "WS_80m_NE_Avg": {"measurement_type": "wind_speed", "statistic": "avg", "height_m": 80, "orientation": "NE"},
        "WS_80m_NE_Std": {"measurement_type": "wind_speed", "statistic": "sd", "height_m": 80, "orientation": "NE"},
        "WS_80m_SW_Avg": {"measurement_type": "wind_speed", "statistic": "avg", "height_m": 80, "orientation": 225},
        "AirT_2m_Avg": {"measurement_type": "air_temperature", "statistic": "avg", "height_m": 2},
        "WD_80m_Avg": {"measurement_type": "wind_direction", "statistic": "avg", "height_m": 80},
    }
    return times(n), cols, meta


# --- acceptance: a mast the checks were not tuned on (tests/qcmast.py) ----------------------


def test_every_fault_of_the_generated_mast_is_found_with_few_false_suggestions() -> None:
    mast = qcmast.make_mast()
    meta = {c: qc_runner.channel_meta({"column_name": c, "unit": mast.units[c], "statistic": "unknown",
                                       "measurement_point_id": None}) for c in mast.columns}
    found = qc.run_station_checks(mast.times, mast.columns, meta)
    result = qcmast.score([(f.rule, f.columns, f.start, f.end) for f in found], mast.faults, len(mast.columns))
    print(f"\nfaults found: {result['found']}; {len(found)} findings, {result['channel_hours']:.0f} channel-hours, "
          f"{result['false_share']:.1%} outside the faults")
    for f in found:
        print(f"  {f.rule} {f.start} .. {f.end}: {f.message}")
    assert all(result["found"].values()), result["found"]
    assert result["false_share"] <= 0.10
    assert len(found) <= len(mast.faults) + 2


def _dt(x: np.datetime64) -> datetime:
    return x.astype("datetime64[us]").item()


# --- acceptance: brightwind's demo mast (real data) against its cleaning file ---------------


def test_the_sensors_brightwinds_cleaning_file_calls_invalid_are_found_from_their_first_hour() -> None:
    """Real 10-minute data: brightwind's demo mast, whose cleaning file marks three sensors
    invalid from a moment on (a vane at 58 m, a vane at 78 m, the 80 m S cup reading 0)."""
    import lzma

    import pandas as pd

    data = Path(__file__).resolve().parents[1] / "data"
    df = pd.read_csv(io.BytesIO(lzma.decompress((data / "generic" / "demo_data.csv.xz").read_bytes())),
                     encoding="utf-8-sig")
    t = pd.to_datetime(df.pop("Timestamp")).to_numpy().astype("datetime64[us]")
    cols = {c: df[c].to_numpy(float) for c in df.columns}
    meta = {c: qc_runner.channel_meta({"column_name": c, "unit": "", "statistic": "unknown",
                                       "measurement_point_id": None}) for c in cols}
    found = qc.run_station_checks(t, cols, meta)
    cleaning = pd.read_csv(data / "brightwind" / "demo_cleaning_file.csv")
    for row in cleaning[cleaning["Reason"] == "Invalid"].itertuples():
        start = pd.Timestamp(row.Start).to_pydatetime()
        hits = [f for f in found if row.Sensor in f.columns and abs(f.start - start) <= timedelta(hours=1)
                and f.end - f.start > timedelta(days=30)]
        assert len(hits) == 1 and hits[0].rule == "flat_line", (row, [f for f in found if row.Sensor in f.columns][-5:])
        assert set(hits[0].columns) <= {c for c in cols if c.startswith(row.Sensor)}  # that sensor alone


# --- acceptance: the demo year --------------------------------------------------------------

TYPES = {"WS": "wind_speed", "WD": "wind_direction", "AirT": "air_temperature",
         "RH": "relative_humidity", "BP": "air_pressure", "BattV": "battery_voltage"}
NAME = re.compile(r"(?P<type>[A-Za-z]+)(?:_(?P<height>\d+)m)?(?:_(?P<orient>[NESW]+))?_(?P<stat>Avg|Std|Min|Max)")


def column_meta(name: str, unit: str = "") -> dict:
    """Meta of a demo column name such as ``WS_80m_NE_Avg`` (a stand-in for the real parser)."""
    m = NAME.fullmatch(name)
    assert m, name
    return {"measurement_type": TYPES[m["type"]], "statistic": "sd" if m["stat"] == "Std" else m["stat"].lower(),
            "height_m": float(m["height"]) if m["height"] else None, "orientation": m["orient"], "unit": unit}


@pytest.fixture(scope="module")
def demo_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[qc.Finding], float]]:
    """Station name -> (findings of run_station_checks on the demo year, seconds taken)."""
    out = tmp_path_factory.mktemp("qc-demo")
    first = min(f.start for f in demo.FAULTS).date() - timedelta(days=26)  # the demo's dates, whatever they are
    last = max(f.end for f in demo.FAULTS).date()
    demo.generate(out, start=first, days=(last - first).days)
    result = {}
    for st in demo.STATIONS:
        stamps, values = [], []
        for path in sorted((out / st.slug).glob("*.dat")):
            reader = open_reader(path)
            for batch in reader.batches():
                stamps.append(batch.times)
                values.append(batch.values)
        columns = reader.header.columns
        starts = np.concatenate(stamps) - np.timedelta64(10, "m")  # logged end -> period start
        matrix = np.vstack(values)
        data = {c.name: matrix[:, i] for i, c in enumerate(columns)}
        meta = {c.name: column_meta(c.name, c.unit) for c in columns}
        began = time.perf_counter()
        findings = qc.run_station_checks(starts, data, meta)
        result[st.name] = (findings, time.perf_counter() - began)
    return result


RULE_OF = {"stuck": "flat_line", "icing": "icing", "gap": "gap", "dead": "dead"}


@pytest.mark.parametrize("fault", demo.FAULTS, ids=lambda f: f"{f.kind}-{f.station}")
def test_demo_fault_is_found(demo_findings, fault: demo.Fault) -> None:
    findings, _ = demo_findings[fault.station]
    start, end = (x.replace(tzinfo=None) for x in (fault.start, fault.end))
    hits = [f for f in findings if f.rule == RULE_OF[fault.kind] and set(fault.columns) <= set(f.columns)
            and abs(f.start - start) <= timedelta(hours=2) and abs(f.end - end) <= timedelta(hours=2)]
    assert len(hits) == 1, [f for f in findings if f.rule == RULE_OF[fault.kind]]
    if fault.kind == "icing":  # the 40 m cups kept turning
        assert not [c for c in hits[0].columns if "_40m_" in c]


def _explained(f: qc.Finding, station: str) -> bool:
    """Whether ``f`` overlaps a documented fault of ``station`` in time and columns."""
    for fault in demo.FAULTS:
        start, end = (x.replace(tzinfo=None) for x in (fault.start, fault.end))
        if fault.station == station and f.start < end and f.end > start:
            if set(f.columns) & set(fault.columns) or not (f.columns or fault.columns):
                return True
    return False


@pytest.mark.parametrize("station", [s.name for s in demo.STATIONS])
def test_demo_has_few_false_suggestions(demo_findings, station: str) -> None:
    findings, seconds = demo_findings[station]
    false = [f for f in findings if not _explained(f, station)]
    print(f"\n{station}: {len(findings)} findings, {len(false)} unexplained, checks {seconds:.2f} s")
    for f in findings:
        print(f"  {'  ' if _explained(f, station) else 'FP'} {f.rule} {f.start} .. {f.end} {f.severity}: {f.message}")
    assert len(false) <= 5, false
    assert len(findings) <= 10


# --- speed ----------------------------------------------------------------------------------


def _smooth(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Unit-variance smooth noise (moving average of white noise)."""
    y = np.convolve(rng.standard_normal(n + width - 1), np.ones(width) / np.sqrt(width), "valid")
    return y


def test_six_years_of_80_channels_in_well_under_10_s() -> None:
    n = 6 * 365 * 144
    rng = np.random.default_rng(11)
    t = np.datetime64("2019-01-01T00:00", "us") + np.arange(n) * STEP
    day = np.arange(n) / 144
    season = np.cos(2 * np.pi * day / 365.25)
    wind = np.abs(7 + 2.5 * _smooth(rng, n, 72) + 1.2 * _smooth(rng, n, 6))
    direction = (225 + 60 * _smooth(rng, n, 144) + 10 * _smooth(rng, n, 6)) % 360
    cols, meta = {}, {}

    def add(name: str, values: np.ndarray, **m) -> None:
        cols[name] = np.round(values, 3)
        meta[name] = m

    for h in (120, 100, 80, 60, 40, 20):
        for boom in ("NE", "SW"):
            v = wind * (h / 80) ** 0.16 * (1 + 0.01 * rng.standard_normal(n))
            sd = v * (0.1 + 0.02 * rng.random(n))
            for stat, x in (("avg", v), ("sd", sd), ("min", v - 2.5 * sd), ("max", v + 2.8 * sd)):
                add(f"WS_{h}m_{boom}_{stat}", np.maximum(x, 0), measurement_type="wind_speed",
                    statistic=stat, height_m=h, orientation=boom)
    for h in (118, 98, 78, 58):
        add(f"WD_{h}m_avg", (direction + rng.normal(0, 2, n)) % 360, measurement_type="wind_direction",
            statistic="avg", height_m=h)
        add(f"WD_{h}m_sd", 8 + 3 * rng.random(n), measurement_type="wind_direction", statistic="sd", height_m=h)
    for h in (100, 2):
        temp = 9 - 6 * season + 3 * _smooth(rng, n, 288) + 0.1 * rng.standard_normal(n)
        for stat, x in (("avg", temp), ("sd", 0.1 + 0.1 * rng.random(n)), ("min", temp - 0.3), ("max", temp + 0.3)):
            add(f"AirT_{h}m_{stat}", x, measurement_type="air_temperature", statistic=stat, height_m=h)
    for mtype, base, amp in (("relative_humidity", 85, 8), ("air_pressure", 1000, 8)):
        x = base + amp * _smooth(rng, n, 288) + 0.05 * rng.standard_normal(n)
        for stat, y in (("avg", x), ("sd", 0.2 + 0.1 * rng.random(n)), ("min", x - 0.5), ("max", x + 0.5)):
            add(f"{mtype}_{stat}", np.clip(y, 0, 100) if mtype == "relative_humidity" else y,
                measurement_type=mtype, statistic=stat, height_m=2)
    sun = np.clip(np.sin(2 * np.pi * (day % 1 - 0.25)), 0, None) * (600 - 200 * season)
    for stat, x in (("avg", sun), ("sd", 0.1 * sun), ("min", 0.8 * sun), ("max", 1.2 * sun)):
        add(f"Solar_{stat}", x, measurement_type="solar_radiation", statistic=stat, height_m=3)
    add("Rain_Tot", np.where(rng.random(n) < 0.05, rng.exponential(0.3, n), 0.0),
        measurement_type="precipitation", statistic="sum")
    add("BattV_Min", 12.6 + 0.5 * (sun > 0) + 0.05 * rng.standard_normal(n), measurement_type="battery_voltage",
        statistic="min")
    w = 0.3 * _smooth(rng, n, 6)
    add("VWS_82m_avg", w, measurement_type="vertical_wind_speed", statistic="avg", height_m=82)
    add("VWS_82m_sd", 0.4 + 0.1 * rng.random(n), measurement_type="vertical_wind_speed", statistic="sd", height_m=82)
    for x in cols.values():
        x[rng.random(n) < 0.002] = np.nan
    assert len(cols) >= 80

    began = time.perf_counter()
    found = qc.run_station_checks(t, cols, meta)
    seconds = time.perf_counter() - began
    print(f"\n6 years x {len(cols)} channels ({n} rows): {seconds:.2f} s, {len(found)} findings")
    for f in found:
        print(f"  {f.rule} {f.start} .. {f.end}: {f.message}")
    assert seconds < 10
    assert len(found) <= 10, found[:10]
