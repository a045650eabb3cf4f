"""A kind that lives only in the test suite, installed like a third-party plugin (a distribution on
PYTHONPATH that registers it in the ``legion.kinds`` entry-point group): ``legion up`` starts it,
supervises it (kill -9 -> restarted), ``legion restart`` restarts it and ``legion down`` stops it.
Nothing in Legion names it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legion.runtime.fleet.procs import wait_gone

pytestmark = [pytest.mark.slow, pytest.mark.nats]

LEGION = [sys.executable, "-m", "legion"]
POLL_S = 0.2  # between two reads of `legion ps` while waiting (bounded by a deadline) for a restart

KIND_MODULE = '''
"""A trivial actor kind: one instance per fleet, announces itself, serves nothing."""
from legion.broker import service_permissions
from legion.runtime.kinds import ActorKind, singleton

KIND = ActorKind(
    name="echo",
    module="echo_kind",
    stage=50,
    instances=singleton("echo"),
    permissions=lambda name, _config: service_permissions(name),
    description="test-only kind",
)
'''

MAIN_MODULE = """
from pathlib import Path

from legion.runtime.config import FleetConfig
from legion.runtime.host import Actor, HostSpec, run_actor_process


class Echo(Actor):
    kind = "echo"


async def factory(name: str, config: FleetConfig, fleet_dir: Path) -> tuple[Actor, HostSpec]:
    return Echo(name), HostSpec()


if __name__ == "__main__":
    run_actor_process("echo", factory)
"""


def _install_plugin(site: Path) -> None:
    """What `pip install echo-kind` leaves in site-packages: the package and its dist-info."""
    pkg = site / "echo_kind"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(KIND_MODULE))
    (pkg / "__main__.py").write_text(textwrap.dedent(MAIN_MODULE))
    info = site / "echo_kind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-kind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[legion.kinds]\necho = echo_kind:KIND\n")


@pytest.fixture
def plugin_fleet(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    site = tmp_path / "site"
    _install_plugin(site)
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "legion.yaml").write_text("fleet: plugins\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    yield fleet, env
    subprocess.run([*LEGION, "-C", str(fleet), "down"], env=env, capture_output=True, timeout=120, check=False)


def _legion(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    result = subprocess.run([*LEGION, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"legion {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _echo_row(fleet: Path, env: dict[str, str]) -> dict[str, Any]:
    ps = json.loads(_legion(env, "-C", str(fleet), "ps", "--json", timeout=60))
    (row,) = [a for a in ps["actors"] if a["name"] == "echo"]
    return dict(row)


def _until_healthy_again(fleet: Path, env: dict[str, str], restarts: int, deadline_s: float = 60.0) -> dict[str, Any]:
    """ps until echo is healthy with ``restarts`` restarts (bounded: the supervisor backs off 1 s first)."""
    deadline = time.monotonic() + deadline_s
    row = _echo_row(fleet, env)
    while time.monotonic() < deadline:
        if row["state"] == "healthy" and row["restarts"] == restarts and row["alive"]:
            return row
        time.sleep(POLL_S)
        row = _echo_row(fleet, env)
    raise AssertionError(f"echo did not come back within {deadline_s}s: {row}")


def test_a_plugin_kind_is_started_supervised_restarted_and_stopped(plugin_fleet: tuple[Path, dict[str, str]]) -> None:
    fleet, env = plugin_fleet
    _legion(env, "-C", str(fleet), "up", "-d")
    row = _echo_row(fleet, env)
    assert (row["kind"], row["state"], row["alive"]) == ("echo", "healthy", True)
    first = int(row["id"])

    os.kill(first, signal.SIGKILL)
    assert wait_gone(first, 10)
    row = _until_healthy_again(fleet, env, restarts=1)
    second = int(row["id"])
    assert second != first

    out = _legion(env, "-C", str(fleet), "restart", "echo")
    assert "echo restarted" in out
    assert wait_gone(second, 30), "the old process was stopped"
    row = _until_healthy_again(fleet, env, restarts=2)

    _legion(env, "-C", str(fleet), "down")
    assert wait_gone(int(row["id"]), 30)
    unknown = subprocess.run(
        [*LEGION, "-C", str(fleet), "restart", "echo"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert unknown.returncode != 0, "restart needs a running fleet"
