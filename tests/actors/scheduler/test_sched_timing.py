"""Slots of cron, interval and one-shot specs, DST in two zones, deterministic jitter, validation errors."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from legion.actors.scheduler.timing import NS, compile_spec, jitter_ns, parse_duration
from legion.actors.scheduler.validate import Limits, check_schedule, spec_from_text
from legion.contracts.errors import ConfigError
from legion.contracts.scheduler import SchedulePolicy, ScheduleSpec, ScheduleTask

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS


def utc(ns_: int) -> str:
    return datetime.fromtimestamp(ns_ // NS, tz=UTC).strftime("%Y-%m-%d %H:%M")


def slots_between(spec: ScheduleSpec, start: datetime, end: datetime) -> list[str]:
    timer = compile_spec(spec)
    return [utc(s) for s in timer.slots(ns(start), ns(end), 1000)]


# -- DST: decided behaviour, in two zones --------------------------------------------------------
# A wall time that does not exist fires once, at the first minute after the gap; a wall time that
# exists twice fires once, at its first occurrence (Debian cron, as cronsim implements it).


@pytest.mark.parametrize(
    ("tz", "day", "expected_utc"),
    [
        (NY, datetime(2026, 3, 8, tzinfo=NY), "2026-03-08 07:00"),  # 03:00 EDT: 02:30 does not exist
        (BERLIN, datetime(2026, 3, 29, tzinfo=BERLIN), "2026-03-29 01:00"),  # 03:00 CEST
    ],
)
def test_spring_forward_0230_fires_once_at_the_end_of_the_gap(tz: ZoneInfo, day: datetime, expected_utc: str) -> None:
    spec = ScheduleSpec(cron="30 2 * * *", tz=str(tz))
    fired = slots_between(spec, day.replace(hour=0), day.replace(hour=23))
    assert fired == [expected_utc]


@pytest.mark.parametrize(
    ("tz", "cron", "day", "expected_utc"),
    [
        (NY, "30 1 * * *", datetime(2026, 11, 1, tzinfo=NY), "2026-11-01 05:30"),  # 01:30 EDT, not EST
        (BERLIN, "30 2 * * *", datetime(2026, 10, 25, tzinfo=BERLIN), "2026-10-25 00:30"),  # 02:30 CEST, not CET
    ],
)
def test_fall_back_repeated_time_fires_once_at_the_first_occurrence(
    tz: ZoneInfo, cron: str, day: datetime, expected_utc: str
) -> None:
    spec = ScheduleSpec(cron=cron, tz=str(tz))
    fired = slots_between(spec, day.replace(hour=0), day.replace(hour=23))
    assert fired == [expected_utc]


def test_fall_back_first_occurrence_is_not_repeated_when_starting_inside_the_repeated_hour() -> None:
    timer = compile_spec(ScheduleSpec(cron="30 1 * * *", tz="America/New_York"))
    after = ns(datetime(2026, 11, 1, 6, 10, tzinfo=UTC))  # 01:10 EST, the second 01:xx hour
    assert utc(timer.next_after(after) or 0) == "2026-11-02 06:30"


def test_days_around_dst_keep_the_wall_time() -> None:
    spec = ScheduleSpec(cron="0 9 * * *", tz="Europe/Berlin")
    fired = slots_between(spec, datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    assert fired == ["2026-03-28 08:00", "2026-03-29 07:00", "2026-03-30 07:00"]


def test_wildcard_hour_cron_runs_on_real_time_through_the_repeated_hour() -> None:
    spec = ScheduleSpec(cron="*/30 * * * *", tz="America/New_York")
    fired = slots_between(spec, datetime(2026, 11, 1, 4, 59, tzinfo=UTC), datetime(2026, 11, 1, 7, 0, tzinfo=UTC))
    assert fired == ["2026-11-01 05:00", "2026-11-01 05:30", "2026-11-01 06:00", "2026-11-01 06:30", "2026-11-01 07:00"]


# -- kinds ---------------------------------------------------------------------------------------
def test_aliases_map_to_five_fields() -> None:
    start = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert slots_between(ScheduleSpec(cron="@hourly"), start, start.replace(hour=3)) == [
        "2026-01-01 01:00",
        "2026-01-01 02:00",
        "2026-01-01 03:00",
    ]
    assert slots_between(ScheduleSpec(cron="@daily"), start, start.replace(day=2, hour=1)) == ["2026-01-02 00:00"]


def test_every_is_anchored_at_the_epoch_plus_offset() -> None:
    timer = compile_spec(ScheduleSpec(every="30m", offset="5m"))
    after = ns(datetime(2026, 5, 1, 10, 7, 13, tzinfo=UTC))
    assert utc(timer.next_after(after) or 0) == "2026-05-01 10:35"
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1d") == 86400


def test_at_is_read_in_the_schedule_zone_and_fires_once() -> None:
    timer = compile_spec(ScheduleSpec(at="2026-12-24T18:00", tz="Europe/Berlin"))
    assert utc(timer.at_ns) == "2026-12-24 17:00"
    assert timer.next_after(timer.at_ns - 1) == timer.at_ns
    assert timer.next_after(timer.at_ns) is None


def test_text_specs_from_the_agent_tool() -> None:
    assert spec_from_text("every  10m") == ScheduleSpec(every="10m")
    assert spec_from_text("at 2026-12-24T18:00") == ScheduleSpec(at="2026-12-24T18:00")
    assert spec_from_text("0 9 * * 1-5") == ScheduleSpec(cron="0 9 * * 1-5")


# -- jitter ---------------------------------------------------------------------------------------
def test_jitter_is_a_function_of_schedule_and_slot() -> None:
    slot = ns(datetime(2026, 1, 1, 9, tzinfo=UTC))
    a = jitter_ns("alpha", "daily", slot, 300 * NS)
    assert a == jitter_ns("alpha", "daily", slot, 300 * NS), "same on every instance and restart"
    assert 0 <= a <= 300 * NS
    spread = {jitter_ns("alpha", f"s{i}", slot, 300 * NS) for i in range(50)}
    assert len(spread) > 40, "different schedules get different delays"
    assert jitter_ns("alpha", "daily", slot, 0) == 0


# -- validation: the value, the rule, the fix --------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (ScheduleSpec(cron="*/0 * * * *"), ["'*/0'", "zero", ">= 1"]),
        (ScheduleSpec(cron="0 9 * *"), ["4 fields", "five"]),
        (ScheduleSpec(cron="61 * * * *"), ["'61 * * * *'", "minute 0-59"]),
        (ScheduleSpec(cron="@fortnightly"), ["'@fortnightly'", "@hourly"]),
        (ScheduleSpec(cron="0 9 * * *", tz="Europe/Berln"), ["'Europe/Berln'", "Europe/Berlin"]),
        (ScheduleSpec(every="0m"), ["'0m'", "positive"]),
        (ScheduleSpec(every="ten minutes"), ["'ten minutes'", "'30m'"]),
        (ScheduleSpec(at="tomorrow"), ["'tomorrow'", "ISO 8601"]),
        (ScheduleSpec(cron="0 9 * * *", every="1h"), ["exactly one", "cron", "every"]),
        (ScheduleSpec(), ["exactly one"]),
        (ScheduleSpec(every="1h", jitter_s=-1), ["jitter_s", "between 0 and 3600"]),
        (ScheduleSpec(every="10m", jitter_s=600), ["jitter_s", "shorter"]),
    ],
)
def test_bad_specs_name_the_value_and_the_fix(spec: ScheduleSpec, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        compile_spec(spec)
    for word in words:
        assert word in str(err.value), str(err.value)


NOW = ns(datetime(2026, 6, 1, tzinfo=UTC))
TASK = ScheduleTask(text="check the build")


def check(spec: ScheduleSpec, *, existing: int = 0, replaces: bool = False, **kw: object) -> None:
    limits = Limits(**kw)  # type: ignore[arg-type]
    check_schedule(
        "alpha", "job", spec, SchedulePolicy(), TASK, limits=limits, now_ns=NOW, existing=existing, replaces=replaces
    )


def test_minimum_interval_per_agent() -> None:
    check(ScheduleSpec(every="5m"), min_interval_s=300)
    with pytest.raises(ConfigError, match=r"every '4m' fires every 240 s, more often than the minimum interval of 300"):
        check(ScheduleSpec(every="4m"), min_interval_s=300)
    with pytest.raises(ConfigError, match=r"cron '\*/2 \* \* \* \*' fires every 120 s"):
        check(ScheduleSpec(cron="*/2 * * * *"), min_interval_s=300)


def test_max_schedules_per_agent_counts_only_new_ones() -> None:
    with pytest.raises(ConfigError, match=r"already has 3 schedules, the most allowed is 3; remove one"):
        check(ScheduleSpec(every="1h"), existing=3, max_schedules=3)
    check(ScheduleSpec(every="1h"), existing=3, replaces=True, max_schedules=3)


def test_one_shot_in_the_past_is_refused() -> None:
    with pytest.raises(ConfigError, match="in the past"):
        check(ScheduleSpec(at="2020-01-01T00:00"))


def test_a_catch_up_window_may_hold_at_most_1000_slots() -> None:
    policy = SchedulePolicy(catch_up_window_s=7 * 86_400)
    with pytest.raises(ConfigError, match=r"holds about 10080 slots of this schedule, at most 1000"):
        check_schedule(
            "alpha",
            "job",
            ScheduleSpec(cron="* * * * *"),
            policy,
            TASK,
            limits=Limits(),
            now_ns=NOW,
            existing=0,
            replaces=False,
        )
