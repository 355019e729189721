"""The job queue's app factory (no database: a connector does not connect until opened)."""

from core import jobs

TASKS = {"sm:import_file", "sm:run_qc", "sm:scan_inbox", "sm:retry_stalled", "sm:prune_jobs",
         "sm:build_export", "sm:cleanup_exports", "sm:refresh_pending_rollups", "sm:sync_due_sources",
         "sm:sync_source", "sm:test_source", "sm:evaluate_alerts", "sm:deliver_alerts",
         "sm:enforce_reader_limits"}


def test_every_app_has_the_tasks_under_their_own_names() -> None:
    # procrastinate renames a blueprint's tasks in place when it is added to an app; a second
    # app in the same process (tests, a CLI that defers then works) must not get "sm:sm:…".
    first = jobs.make_app("postgresql://nowhere/a")
    second = jobs.make_app("postgresql://nowhere/b")
    ours = lambda app: {name for name in app.tasks if "procrastinate" not in name}  # noqa: E731
    assert ours(first) == TASKS
    assert ours(second) == TASKS
    assert {second.tasks[name].name for name in TASKS} == TASKS
    assert first.tasks["sm:import_file"] is not second.tasks["sm:import_file"]
    periodic = {p.task.name for p in second.periodic_registry.periodic_tasks.values()}
    assert periodic == {"sm:scan_inbox", "sm:retry_stalled", "sm:prune_jobs", "sm:cleanup_exports",
                        "sm:refresh_pending_rollups", "sm:sync_due_sources", "sm:evaluate_alerts",
                        "sm:enforce_reader_limits"}
