"""The scheduler's public surface, pinned in full: a missing name and a removed name both fail."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "legion.actors.scheduler": {
        "Clock", "Firing", "Limits", "ManualClock", "Plan", "QUEUE", "SCHEDULES", "ScheduleRow", "ScheduleTable",
        "Scheduler", "SchedulerSpec", "Skip", "SystemClock", "Timer", "check_declared", "check_schedule",
        "compile_spec", "ensure_stream", "jitter_ns", "plan", "scheduler_factory", "scheduler_host_spec",
        "scheduler_permissions", "slot_key", "spec_from_text", "task_id_for",
    },
    "legion.contracts.scheduler": {
        "FLEET", "OVERLAP_POLICIES", "OverlapPolicy", "SKIP_REASONS", "ScheduleAck", "ScheduleAction",
        "ScheduleControl", "ScheduleCreated", "ScheduleDeleted", "ScheduleFired", "ScheduleInfo", "ScheduleList",
        "SchedulePaused", "SchedulePolicy", "ScheduleProbe", "SchedulePut", "ScheduleQuery", "ScheduleResumed",
        "ScheduleSkipped", "ScheduleSpec", "ScheduleTask", "ScheduleTriggered", "ScheduleUpdated", "SkipReason",
        "parse_duration",
    },
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_exports_are_exactly_the_pinned_ones(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == EXPECTED[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ lists missing {name}"


def test_every_schedule_contract_has_a_versioned_schedule_tag() -> None:
    import legion.contracts.scheduler as c  # noqa: PLC0415

    tags = {getattr(c, n).contract_tag() for n in c.__all__ if hasattr(getattr(c, n), "contract_tag")}
    assert tags == {
        "schedule.created.v1", "schedule.updated.v1", "schedule.paused.v1", "schedule.resumed.v1",
        "schedule.deleted.v1", "schedule.fired.v1", "schedule.skipped.v1", "schedule.triggered.v1",
        "schedule.put.v1", "schedule.control.v1", "schedule.query.v1", "schedule.ack.v1", "schedule.list.v1",
    }  # fmt: skip
