"""legion.yaml ``schedules:``: read into put requests owned by the file; bad entries name the schedule
and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from legion.contracts.errors import ConfigError
from legion.runtime.config import DECLARED_BY, declared_puts, load_config

HEAD = "agents:\n  alpha: {}\nschedules:\n"


def test_entries_become_put_requests_owned_by_the_file(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text(
        HEAD + "  morning:\n    agent: alpha\n    cron: '0 7 * * mon-fri'\n    tz: Europe/Berlin\n    jitter: 2m\n"
        "    catch_up: 15m\n    overlap: queue_one\n    task: news\n    probe: {subject: legion.ext.rss.>}\n"
        "  beat:\n    agent: alpha\n    every: 1h\n    offset: 5m\n    task: look\n    paused: true\n"
    )
    morning, beat = declared_puts(load_config(tmp_path).schedules)
    assert morning.schedule_id == "morning" and morning.agent == "alpha" and morning.by == DECLARED_BY
    assert morning.spec.cron == "0 7 * * mon-fri" and morning.spec.tz == "Europe/Berlin"
    assert morning.spec.jitter_s == 120
    assert morning.policy.catch_up_window_s == 900 and morning.policy.overlap == "queue_one"
    assert morning.policy.probe is not None and morning.policy.probe.stream == "EVENTS"
    assert beat.spec.every == "1h" and beat.spec.offset == "5m" and beat.paused
    assert beat.policy.catch_up_window_s == 600  # the default 10m


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("  Morning News: {agent: alpha, every: 1h, task: t}\n", ["schedules.Morning News", "schedule name"]),
        ("  m: {agent: alpha, every: 1h}\n", ["schedules.m.task"]),
        ("  m: {agent: alpha, every: 1h, task: t, jitter: soon}\n", ["schedules.m.jitter", "'soon'"]),
        ("  m: {agent: alpha, every: 1h, task: t, colour: red}\n", ["schedules.m.colour", "unknown key"]),
        ("  m: {agent: alpha, task: t}\n", ["schedules.m", "exactly one of cron, every and at"]),
        ("  m: {agent: alpha, every: 1h, cron: '@daily', task: t}\n", ["schedules.m", "got cron, every"]),
        ("  m: {agent: alpha, every: 1h, tz: Mars/Base, task: t}\n", ["schedules.m.tz", "'Mars/Base'"]),
        ("  m: {agent: ghost, every: 1h, task: t}\n", ["schedules.m.agent", "'ghost'", "alpha"]),
        ("  m: {agent: alpha, cron: '@daily', offset: 5m, task: t}\n", ["schedules.m", "offset applies to every"]),
    ],
    ids=["name", "no-task", "jitter", "unknown-key", "no-when", "two-whens", "tz", "unknown-agent", "offset"],
)
def test_bad_entries_name_the_schedule_and_key(tmp_path: Path, entry: str, words: list[str]) -> None:
    (tmp_path / "legion.yaml").write_text(HEAD + entry)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    for word in words:
        assert word in str(err.value), str(err.value)
