"""Bad input to the console gets a clear error, loses nothing and leaves the fleet serving:
`legion publish` of an oversized, non-UTF-8 or deeply nested payload; `legion tail` over a stored
event that does not decode and one whose fields hold terminal escapes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from legion.contracts import TaskStarted, subjects
from legion.runtime import FleetNats

pytestmark = pytest.mark.nats

LEGION = [sys.executable, "-m", "legion"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEGION, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[FleetNats]:
    (tmp_path / "legion.yaml").write_text("fleet: badinput\n")
    nats = FleetNats(tmp_path)
    await nats.start()
    try:
        yield nats
    finally:
        await nats.stop()


def _stored(fleet: FleetNats) -> int:
    out = _run("tail", "--json", "--from-seq", "1", cwd=fleet.fleet_dir)
    assert out.returncode == 0, out.stderr
    return len([line for line in out.stdout.splitlines() if line.strip()])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"a":"' + b"x" * (10 * 1024 * 1024) + b'"}', "at most 1048576 bytes"),
        (b'{"a":"\xff\xfe"}', "not UTF-8: byte 0xff at offset 6"),
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeper than 64 levels"),
        (b'{"a":' + b"[" * 70 + b"]" * 70 + b"}", "deeper than 64 levels"),
        (b"{not json", "not valid JSON"),
    ],
    ids=["10MB", "invalid-utf8", "100k-deep", "70-deep", "syntax"],
)
async def test_publish_refuses_bad_payloads_with_exit_2_and_stores_nothing(
    fleet: FleetNats, tmp_path: Path, content: bytes, expected: str
) -> None:
    payload = tmp_path / "payload.json"
    payload.write_bytes(content)
    result = _run("publish", "legion.ext.github.push", f"@{payload}", cwd=fleet.fleet_dir)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert _stored(fleet) == 0
    ok = _run("publish", "legion.ext.github.push", '{"kind":"push","data":{}}', cwd=fleet.fleet_dir)
    assert ok.returncode == 0, ok.stderr
    assert _stored(fleet) == 1, "the fleet still takes good events"


async def test_tail_shows_an_undecodable_event_as_such_and_goes_on(fleet: FleetNats) -> None:
    """One deep event (stored past the CLI's checks, e.g. by an ingest credential) never stops tail."""
    assert fleet.admin is not None
    deep = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"
    await fleet.admin.js_publish(subjects.EXT.render(source="gh", type="push"), deep)
    await fleet.admin.js_publish(
        subjects.EVENTS.render(source="alpha", type="task.started"), TaskStarted(task_id="t2", agent="alpha")
    )
    result = _run("tail", "--json", cwd=fleet.fleet_dir)
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert "deeper than 64 levels" in first["data"]["undecodable"]
    assert first["data"]["bytes"] == len(deep)
    assert second["data"]["task_id"] == "t2", "the events after it are shown"
    text = _run("tail", cwd=fleet.fleet_dir)
    assert text.returncode == 0, text.stderr
    assert len(text.stdout.splitlines()) == 2


async def test_tail_escapes_control_characters_in_every_line(fleet: FleetNats) -> None:
    assert fleet.admin is not None
    hostile = TaskStarted(task_id="t\x1b]0;pwned\x07\x1b[2K\x9b31m", agent="alpha")
    await fleet.admin.js_publish(subjects.EVENTS.render(source="alpha", type="task.started"), hostile)
    result = _run("tail", cwd=fleet.fleet_dir)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\x9b" not in result.stdout
    assert "\\x1b]0;pwned\\x07" in result.stdout
