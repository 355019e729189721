"""The connection budget's arithmetic (core.budget), with small numbers."""

from __future__ import annotations

from core import budget
from core.settings import Settings


def test_each_process_kind_counts_and_the_biggest_setting_is_named():
    s = Settings(web_pool_size=5, api_pool_size=10, workers=3, worker_concurrency=4, pool_size=6, admin_connections=2)
    b = budget.plan(max_connections=60, reserved=3, settings=s, readers={"nb_anna": 4, "nb_ben": 2})
    assert budget.worker_connections(s) == 3 * 4 + 3 + 6 == 21
    assert b.needed == 5 + 10 + 3 * 21 + 4 + 2 + 2 == 86 and b.allowed == 57 and not b.ok
    (problem,) = b.problems()
    assert "needs 86 connections but the server allows 57" in problem
    assert "3 workers × 21 (63: STATIONMANAGER_WORKERS, STATIONMANAGER_WORKER_CONCURRENCY" in problem
    assert "HTTP API (10: STATIONMANAGER_API_POOL_SIZE)" in problem and "raise the server's max_connections" in problem
    assert [p[0] for p in b.parts()][:2] == ["3 workers × 21", "HTTP API"]


def test_the_budget_fits_exactly_up_to_the_reserve():
    s = Settings(web_pool_size=4, api_pool_size=8, workers=1, worker_concurrency=2, pool_size=4, admin_connections=3)
    assert budget.plan(31, 3, s).ok and budget.plan(31, 3, s).needed == 28
    assert not budget.plan(30, 3, s).ok  # one short
    assert not budget.plan(31, 4, s).ok  # a bigger reserve (PostgreSQL 16's reserved_connections too)
    assert budget.plan(31, 3, s, readers={"nb": 0}).ok  # a limit of 0: no connections at all


def test_a_reader_without_a_limit_is_a_problem_whatever_the_room():
    b = budget.plan(10_000, 3, Settings(), readers={"nb": -1})
    assert b.problems() == ["reader role nb has no connection limit: set one with "
                            "`stationmanager db reader-role nb --connections N`"]
    assert b.as_dict()["ok"] is False and b.as_dict()["needed"] == 28
