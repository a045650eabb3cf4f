"""`legion tail`, `legion publish` and `legion creds ingest` against a real fleet (embedded nats-server)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from legion.broker import Broker, ConnectSpec, new_id
from legion.cli import app
from legion.cli.options import hoist_fleet_dir
from legion.contracts import ExternalEvent, PermissionDenied, TaskStarted, subjects
from legion.runtime import FleetNats

pytestmark = pytest.mark.nats

LEGION = [sys.executable, "-m", "legion"]


def _run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEGION, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


async def _invoke(args: list[str]) -> Result:
    """CliRunner in a thread: the command runs its own event loop (asyncio.run)."""
    return await asyncio.to_thread(CliRunner().invoke, app, hoist_fleet_dir(args))


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[FleetNats]:
    nats = FleetNats(tmp_path)
    await nats.start()
    try:
        yield nats
    finally:
        await nats.stop()


async def _publish(fleet: FleetNats, subject: str, payload: TaskStarted | bytes, **kw: Any) -> int:
    assert fleet.admin is not None
    ack = await fleet.admin.js_publish(subject, payload, **kw)
    return ack.seq


async def test_tail_json_shows_published_events_in_order_with_trace_and_unknown_tags(
    fleet: FleetNats, tmp_path: Path
) -> None:
    trace = new_id()
    s1 = await _publish(
        fleet,
        subjects.EVENTS.render(source="alpha", type="task.started"),
        TaskStarted(task_id="t1", agent="alpha"),
        trace=trace,
    )
    s2 = await _publish(
        fleet,
        subjects.EVENTS.render(source="alpha", type="future.thing"),
        b'{"type":"future.thing.v9","x":1}',
        headers={"Legion-Type": "future.thing.v9"},
    )
    result = _run("tail", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = _lines(result.stdout)
    assert [e["seq"] for e in events] == [s1, s2]
    assert events[0]["trace"] == trace
    assert events[0]["type"] == "task.started.v1"
    assert events[0]["source"] == "alpha"
    assert events[0]["data"]["task_id"] == "t1"
    assert events[0]["time"].endswith("Z")
    assert events[1]["type"] == "future.thing.v9", "unknown tags are printed, never dropped"


async def test_tail_text_prints_one_line_per_event_and_stops_at_the_end(fleet: FleetNats) -> None:
    await _publish(
        fleet, subjects.EVENTS.render(source="alpha", type="task.started"), TaskStarted(task_id="t9", agent="alpha")
    )
    result = await _invoke(["tail", "--fleet-dir", str(fleet.fleet_dir)])
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert "alpha" in line
    assert "task.started.v1" in line
    assert "task_id=t9" in line


async def test_tail_defaults_to_the_last_20_events(fleet: FleetNats, tmp_path: Path) -> None:
    subject = subjects.EVENTS.render(source="alpha", type="task.started")
    for i in range(30):
        await _publish(fleet, subject, TaskStarted(task_id=f"t{i}", agent="alpha"))
    events = _lines(_run("tail", "--json", cwd=tmp_path).stdout)
    assert [e["seq"] for e in events] == list(range(11, 31))


async def test_tail_from_seq_and_since(fleet: FleetNats, tmp_path: Path) -> None:
    subject = subjects.EVENTS.render(source="alpha", type="task.started")
    for i in range(25):
        await _publish(fleet, subject, TaskStarted(task_id=f"t{i}", agent="alpha"))
    from_seq = _lines(_run("tail", "--json", "--from-seq", "5", cwd=tmp_path).stdout)
    assert [e["seq"] for e in from_seq] == list(range(5, 26))
    since = _lines(_run("tail", "--json", "--since", "10m", cwd=tmp_path).stdout)
    assert [e["seq"] for e in since] == list(range(1, 26)), "--since reads past the default 20"
    assert _run("tail", "--json", "--since", "soon", cwd=tmp_path).returncode == 2


async def test_tail_filters_by_agent_subject_and_type(fleet: FleetNats, tmp_path: Path) -> None:
    await _publish(
        fleet, subjects.EVENTS.render(source="alpha", type="task.started"), TaskStarted(task_id="a", agent="alpha")
    )
    await _publish(
        fleet, subjects.EVENTS.render(source="beta", type="task.started"), TaskStarted(task_id="b", agent="beta")
    )
    await _publish(
        fleet,
        subjects.EXT.render(source="github", type="push"),
        b'{"kind":"push"}',
        headers={"Legion-Type": "external.event.v1"},
    )
    by_agent = _lines(_run("tail", "--json", "--agent", "beta", cwd=tmp_path).stdout)
    assert [e["data"]["task_id"] for e in by_agent] == ["b"]
    by_filter = _lines(_run("tail", "--json", "legion.ext.>", cwd=tmp_path).stdout)
    assert [e["source"] for e in by_filter] == ["github"]
    by_type = _lines(_run("tail", "--json", "--type", "external.event.v1", cwd=tmp_path).stdout)
    assert [e["seq"] for e in by_type] == [3]
    by_subject_type = _lines(_run("tail", "--json", "--type", "task.started", cwd=tmp_path).stdout)
    assert [e["seq"] for e in by_subject_type] == [1, 2]


async def test_tail_refuses_a_filter_outside_events(fleet: FleetNats, tmp_path: Path) -> None:
    result = _run("tail", "legion.agent.alpha.inbox", cwd=tmp_path)
    assert result.returncode == 2
    assert "outside the EVENTS stream" in result.stderr


async def test_tail_on_an_empty_stream_ends_at_once(fleet: FleetNats, tmp_path: Path) -> None:
    result = _run("tail", "--json", cwd=tmp_path, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("subject", "payload", "expected"),
    [
        ("legion.events.*.task.started", "{}", "wildcard '*'"),
        ("legion.events.x.>", "{}", "wildcard '>'"),
        ("legion.events..task", "{}", "empty token"),
        ("legion.agent.x.inbox", "{}", "not an event subject"),
        ("legion.events.x.task.started", '{"type":"task.started.v1","task_id":"t"}', "`agent`"),
        ("legion.events.x.task.started", "not json", "not valid JSON"),
        ("legion.events.x.thing", '{"a":1}', "takes a known contract"),
        ("legion.ext.github.push", '{"ref":"main"}', "`kind`"),
        ("legion.ext.github.push", "[1, 2]", "must be a JSON object"),
    ],
    ids=["star", "gt", "empty-token", "not-events", "missing-field", "bad-json", "untyped-event", "bad-ext", "array"],
)
async def test_publish_refuses_bad_subjects_and_payloads(
    fleet: FleetNats, tmp_path: Path, subject: str, payload: str, expected: str
) -> None:
    result = _run("publish", subject, payload, cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert fleet.admin is not None
    assert (await fleet.admin.js.stream_info("EVENTS")).state.messages == 0


async def test_publish_stores_a_task_started_event(fleet: FleetNats, tmp_path: Path) -> None:
    (tmp_path / "body.json").write_text('{"task_id": "t1", "agent": "x"}')
    result = _run(
        "publish", "legion.events.x.task.started", "@body.json", "--type", "task.started.v1", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["stream"] == "EVENTS"
    assert fleet.admin is not None
    stored = await fleet.admin.js.get_msg("EVENTS", out["seq"])
    assert stored.subject == "legion.events.x.task.started"
    assert stored.headers is not None
    assert stored.headers["Legion-Type"] == "task.started.v1"
    assert "Nats-Msg-Id" in stored.headers
    assert json.loads(stored.data or b"")["task_id"] == "t1"


async def test_publish_stores_an_external_event(fleet: FleetNats) -> None:
    result = await _invoke(
        [
            "publish",
            "legion.ext.github.push",
            '{"kind":"push","data":{"ref":"main"}}',
            "--fleet-dir",
            str(fleet.fleet_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "seq 1" in result.output
    assert fleet.admin is not None
    stored = await fleet.admin.js.get_msg("EVENTS", 1)
    assert stored.subject == "legion.ext.github.push"
    assert stored.headers is not None
    assert stored.headers["Legion-Type"] == "external.event.v1"


async def test_creds_ingest_mints_a_credential_limited_to_its_source(fleet: FleetNats, tmp_path: Path) -> None:
    result = _run("creds", "ingest", "github", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["creds"] == str(tmp_path / ".legion" / "creds" / "ingest" / "github.creds")
    assert info["subject"] == "legion.ext.github.>"
    assert info["nats_url"] == fleet.url
    assert info["inbox_prefix"]
    broker = await Broker.connect(ConnectSpec(url=info["nats_url"], creds=Path(info["creds"])))
    try:
        ack = await broker.js_publish("legion.ext.github.x", ExternalEvent(kind="x"))
        assert ack.stream == "EVENTS"
        with pytest.raises(PermissionDenied):
            await broker.js_publish("legion.ext.other.x", ExternalEvent(kind="x"))
    finally:
        await broker.close()


async def test_creds_ingest_text_output_and_bad_source(fleet: FleetNats, tmp_path: Path) -> None:
    ok = await _invoke(["creds", "ingest", "ci", "--fleet-dir", str(fleet.fleet_dir)])
    assert ok.exit_code == 0, ok.output
    assert "ingest/ci.creds" in ok.output
    assert "no reload" in ok.output
    bad = _run("creds", "ingest", "Bad Name", cwd=tmp_path)
    assert bad.returncode == 2
    assert "[a-z0-9_-]" in bad.stderr


async def test_tail_follow_prints_new_events_until_interrupted(fleet: FleetNats, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *LEGION,
        "tail",
        "--follow",
        "--json",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        trace = new_id()
        subject = subjects.EVENTS.render(source="alpha", type="task.started")
        assert proc.stdout is not None
        # the consumer may be created after this publish or before it: either way the event is shown
        await _publish(fleet, subject, TaskStarted(task_id="live", agent="alpha"), trace=trace)
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        assert json.loads(line)["trace"] == trace
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await proc.wait()
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
