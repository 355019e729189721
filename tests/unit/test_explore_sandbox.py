"""The Explore sandbox against the real DuckDB: each hostile query is refused or stopped with a
clear message, a normal query and every example give the known answers of a made-up mast,
and a hostile query does not hold up another.

No database: the snapshot is written by :mod:`tests.tidydata` in the worker's tidy layout.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from core import home
from core.explore import examples, sandbox, snapshot
from core.explore.sandbox import ExploreError, QueryRefused, QueryStopped
from core.settings import Settings
from tests import tidydata

DAYS = {"Ballymore Hill": 40, "Kestrel Ridge": 35}
GAP = (100, 244)  # steps missing at both stations: one day, in January
TIMEOUT_S = 60.0  # generous: the machine may be loaded; the cross join sets its own
CROSS_JOIN_S = 2.0


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[Path]], Settings]:
    home = tmp_path_factory.mktemp("explore-home")
    paths = tidydata.write_snapshot(home / "snapshot", DAYS, gap=GAP)
    settings = Settings(home=home, explore_timeout_s=TIMEOUT_S, explore_memory_mb=256, explore_max_rows=1000)
    return snapshot.views(paths), settings


def run(snap, sql: str, **changes):
    views, settings = snap
    return sandbox.run_query(sql, views, replace(settings, **changes), derived=snapshot.DERIVED)


def rows(result) -> list[dict]:
    return result.table.to_pylist()


# --- what a query may do -------------------------------------------------------------------------


def test_every_example_gives_the_known_answer_of_the_mast(snap):
    answers = {e.name: run(snap, e.sql).table.to_pandas() for e in examples.EXAMPLES}
    for e in examples.EXAMPLES:  # each names columns its result has
        frame = answers[e.name]
        assert len(frame) and {e.x, e.y} | ({e.colour} - {None}) <= set(frame.columns), e.name

    means = answers["Monthly means per height"]
    assert set(means["height_m"]) == set(tidydata.HEIGHTS) and (means["mean_speed"] > 3).all()
    assert means.groupby("station")["month"].nunique().to_dict() == {"Ballymore Hill": 2, "Kestrel Ridge": 2}

    shear = answers["Wind-shear exponent"]
    assert shear["shear_exponent"].tolist() == pytest.approx([tidydata.SHEAR] * len(shear), abs=1e-3)
    assert set(zip(shear["lower_m"], shear["upper_m"])) == {(40.0, 80.0)}

    rose = answers["Wind-rose table"]
    assert set(rose["sector_deg"]) == set(range(0, 360, 30))
    assert rose.groupby("station")["percent"].sum().tolist() == pytest.approx([100.0, 100.0], abs=0.1)

    recovery = answers["Data recovery by month"]
    january = recovery[recovery["month"].dt.month == 1]
    assert january["recovery_pct"].tolist() == pytest.approx([round(100 * (31 - 1) / 31, 1)] * len(january))

    ratio = answers["Ratio of paired anemometers"]
    assert ratio["mean_ratio"].tolist() == pytest.approx([1 / tidydata.RATIO] * len(ratio), abs=1e-4)
    assert ratio["pair"].nunique() == 3

    channels = answers["Channels in the snapshot"]  # every station's file, through the views
    per_station = channels.groupby("station")["n_values"].agg(["count", "sum"])
    assert per_station.to_dict("index") == {
        s: {"count": 12, "sum": (d * 144 - (GAP[1] - GAP[0])) * 12} for s, d in DAYS.items()}


def test_a_long_result_is_cut_at_the_row_cap_and_says_so(snap):
    result = run(snap, "SELECT * FROM range(1000000000000)")  # 10¹² rows: streamed, never built
    assert result.table.num_rows == 1000 and result.truncated


def test_each_query_starts_from_nothing_a_table_made_before_is_gone(snap):
    assert rows(run(snap, "CREATE TABLE scratch AS SELECT 1 AS a; SELECT a FROM scratch")) == [{"a": 1}]
    with pytest.raises(ExploreError, match="scratch does not exist"):
        run(snap, "SELECT * FROM scratch")


# --- what it may not do: refused --------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "INSTALL httpfs",
    "LOAD httpfs",
], ids=["read_csv", "install", "load"])
def test_files_the_network_and_extensions_are_refused(snap, sql):
    with pytest.raises(QueryRefused, match=r"refused: Explore reads only the snapshot's views.*\(DuckDB: "):
        run(snap, sql)


def test_the_snapshot_files_themselves_cannot_be_overwritten(snap):
    path = snap[0]["readings"][0]
    before = path.read_bytes()
    with pytest.raises(QueryRefused):
        run(snap, f"COPY (SELECT 42 AS a) TO '{path}' (FORMAT parquet, USE_TMP_FILE false)")
    assert path.read_bytes() == before


def test_copy_to_and_attach_write_no_file(snap, tmp_path):
    out, attached = tmp_path / "out.csv", tmp_path / "other.duckdb"
    with pytest.raises(QueryRefused, match="COPY … TO are not available"):
        run(snap, f"COPY (SELECT * FROM readings) TO '{out}'")
    with pytest.raises(QueryRefused, match="ATTACH of a file"):
        run(snap, f"ATTACH '{attached}' AS other")
    assert list(tmp_path.iterdir()) == []


def test_the_sandbox_settings_cannot_be_changed_back(snap):
    with pytest.raises(QueryRefused, match="settings of the Explore sandbox cannot be changed"):
        run(snap, "SET enable_external_access = true")


# --- what it may not do: stopped --------------------------------------------------------------


def test_a_cross_join_of_10_to_the_12_rows_is_interrupted_at_the_time_limit(snap):
    started = time.monotonic()
    with pytest.raises(QueryStopped, match=r"stopped after 2 s, the time limit .*STATIONMANAGER_EXPLORE_TIMEOUT_S"):
        run(snap, "SELECT count(*) FROM range(1000000) a, range(1000000) b", explore_timeout_s=CROSS_JOIN_S)
    assert time.monotonic() - started < CROSS_JOIN_S + sandbox.GRACE_S


def test_a_query_that_allocates_past_the_memory_limit_is_stopped(snap):
    with pytest.raises(QueryStopped, match=r"needs more than 256 MiB.*STATIONMANAGER_EXPLORE_MEMORY_MB"):
        run(snap, "SELECT * FROM range(60000000) ORDER BY random()")  # a sort with nowhere to spill


def test_a_sandbox_still_running_past_the_limit_and_its_grace_is_killed(snap, monkeypatch):
    # the parent waits for the time limit plus GRACE_S, then kills the process group: here
    # before the sandbox has even started its query
    monkeypatch.setattr(sandbox, "GRACE_S", -0.8)
    started = time.monotonic()
    with pytest.raises(QueryStopped, match="stopped after 1 s"):
        run(snap, "SELECT count(*) FROM range(1000000) a, range(1000000) b", explore_timeout_s=1.0)
    assert time.monotonic() - started < 5


# --- others keep being answered ------------------------------------------------------------------


def sandboxes() -> list[psutil.Process]:
    """The sandbox processes this test process started and that still run."""
    return [p for p in psutil.Process().children(recursive=True)
            if "core.explore.runner" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE]


def test_another_query_is_answered_while_a_hostile_one_runs(snap):
    hostile: list[BaseException] = []

    def cross_join() -> None:
        try:
            run(snap, "SELECT count(*) FROM range(1000000) a, range(1000000) b", explore_timeout_s=120.0)
        except BaseException as exc:  # noqa: BLE001 - checked below
            hostile.append(exc)

    thread = threading.Thread(target=cross_join)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not sandboxes() and time.monotonic() < deadline:  # the cross join's process is up
            time.sleep(0.05)
        got = rows(run(snap, "SELECT count(DISTINCT station) AS n FROM readings"))
        assert thread.is_alive() and len(sandboxes()) == 1, "the cross join should still be running"
    finally:
        for p in sandboxes():  # end it now rather than at its time limit
            p.kill()
        thread.join()
    assert got == [{"n": 2}]
    assert len(hostile) == 1 and isinstance(hostile[0], ExploreError)


def test_a_query_waits_for_a_free_slot_and_says_so(snap):
    views, settings = snap
    one = replace(settings, explore_max_running=1)
    waiting, answers = threading.Event(), []

    def second() -> None:
        answers.append(rows(sandbox.run_query("SELECT 1 AS one", views, one, on_wait=lambda n: waiting.set())))

    with sandbox.slot(one):  # the only slot is taken
        thread = threading.Thread(target=second)
        thread.start()
        assert waiting.wait(timeout=30), "the second query should say that it waits"
        assert not answers
    thread.join(timeout=60)
    assert answers == [[{"one": 1}]]


def test_a_query_is_refused_when_no_slot_frees_up_in_time(snap):
    views, settings = snap
    told: list[int] = []
    with sandbox.slot(replace(settings, explore_max_running=1)):
        with pytest.raises(sandbox.ExploreBusy, match="STATIONMANAGER_EXPLORE_MAX_RUNNING"):
            sandbox.run_query("SELECT 1", views, replace(settings, explore_max_running=1, explore_wait_s=0.3),
                              on_wait=told.append)
    assert told == [1]


def test_a_workers_sweep_of_the_temporary_folder_does_not_free_a_taken_slot(snap):
    views, settings = snap
    one = replace(settings, explore_max_running=1, explore_wait_s=0.3)
    with sandbox.slot(one):
        home.sweep(settings, min_age_s=0)  # as each worker does at its start
        with pytest.raises(sandbox.ExploreBusy):
            with sandbox.slot(one):
                pass
