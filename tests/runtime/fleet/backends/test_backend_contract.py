"""The backend contract: one test body for every backend (process now; docker joins by adding its
factory to BACKENDS). Each test starts the stand-in actor ``python -m legion.testing.sleeper``
through the backend and checks what the launcher, ``legion ps`` and ``legion down`` rely on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from legion.runtime.fleet.backends import ActorSpec, Backend, ProcessBackend

BACKENDS: dict[str, Callable[[], Backend]] = {"process": ProcessBackend}
SLEEPER = "legion.testing.sleeper"
POLL_S = 0.05  # between two reads of a log while waiting (bounded) for a line: a file has no change notification


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]()


def _spec(fleet: Path, name: str = "s1", **env: str) -> ActorSpec:
    return ActorSpec(name=name, kind="sleeper", module=SLEEPER, fleet_dir=fleet, env=env)


async def _until_logged(backend: Backend, fleet: Path, name: str, text: str, timeout: float = 30.0) -> str:
    """The actor's log, once it holds ``text`` (the actor's own first line is the signal it runs)."""
    path = backend.log_path(fleet, name)
    async with asyncio.timeout(timeout):
        while True:
            content = path.read_text(encoding="utf-8") if path.exists() else ""
            if text in content:
                return content
            await asyncio.sleep(POLL_S)


async def test_start_runs_the_spec_with_its_environment_and_logs_its_output(backend: Backend, tmp_path: Path) -> None:
    running = await backend.start(_spec(tmp_path, LEGION_SLEEPER_ENV="given"))
    try:
        assert running.ref.backend == backend.name
        assert backend.alive(running.ref)
        log = await _until_logged(backend, tmp_path, "s1", "sleeper s1")
        assert "env=given" in log
        assert backend.log_path(tmp_path, "s1").is_relative_to(tmp_path)
    finally:
        assert await running.stop(10) == 0, "SIGTERM ends it through its own shutdown (exit 0)"
    assert not backend.alive(running.ref), "a stopped actor is not alive"


async def test_wait_returns_the_exit_code(backend: Backend, tmp_path: Path) -> None:
    running = await backend.start(_spec(tmp_path, LEGION_SLEEPER_EXIT="3"))
    assert await asyncio.wait_for(running.wait(), 30) == 3
    assert not backend.alive(running.ref)
    assert await running.stop(1) == 3, "stop after exit is safe and returns the same code"


async def test_stop_kills_an_actor_that_ignores_sigterm_after_the_grace(backend: Backend, tmp_path: Path) -> None:
    running = await backend.start(_spec(tmp_path, LEGION_SLEEPER_IGNORE_TERM="1"))
    await _until_logged(backend, tmp_path, "s1", "ignoring SIGTERM")
    code = await running.stop(0.5)
    assert code != 0
    assert not backend.alive(running.ref)


async def test_restart_gives_a_new_actor_and_ends_the_old_one(backend: Backend, tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = await backend.start(spec)
    await _until_logged(backend, tmp_path, "s1", "sleeper s1")
    second = await backend.restart(first, spec, 10)
    try:
        assert second.ref != first.ref
        assert not backend.alive(first.ref)
        assert backend.alive(second.ref)
    finally:
        await second.stop(10)


async def test_leftovers_and_stop_from_outside_the_launcher(backend: Backend, tmp_path: Path) -> None:
    """What `legion down` after a dead launcher does: find this fleet's actors, stop them by ref."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    ours = await backend.start(_spec(mine, "a1"))
    stubborn = await backend.start(_spec(mine, "a2", LEGION_SLEEPER_IGNORE_TERM="1"))
    other = await backend.start(_spec(theirs, "b1"))
    try:
        await _until_logged(backend, mine, "a2", "ignoring SIGTERM")
        found = backend.leftovers(mine)
        assert {r.id for r in found} == {ours.ref.id, stubborn.ref.id}
        killed = await asyncio.to_thread(backend.stop, found, grace=2.0)
        assert [r.id for r in killed] == [stubborn.ref.id], "asked first; only the one that ignored it was killed"
        assert backend.leftovers(mine) == []
        assert backend.alive(other.ref), "another fleet's actor is untouched"
    finally:
        for running in (ours, stubborn, other):
            await running.stop(5)
