"""The backend protocol: how the fleet starts, watches and stops an actor, with no pid in it.

A backend turns an :class:`ActorSpec` into a running actor and names it with an :class:`ActorRef`
(an opaque id only that backend reads: a process's pid and start time, a container's id). The
launcher keeps the refs in ``run/state.json``; ``legion ps``, ``legion down`` and the clean-up
after a launcher that died ask the backend about them (:meth:`Backend.alive`, :meth:`Backend.stop`,
:meth:`Backend.leftovers`) from another process, so those calls are synchronous and need nothing
but the ref. The contract suite (tests/runtime/fleet/backends/) runs every backend through the same
tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

from legion.runtime.config import ResourceLimits

__all__ = ["ActorRef", "ActorSpec", "Backend", "RunningActor"]


class ActorRef(msgspec.Struct, frozen=True, kw_only=True):
    """A backend's name for one running actor (kept in ``run/state.json``)."""

    backend: str
    id: str  # what the backend needs to find it again (opaque to everyone else)
    label: str = ""  # what `legion ps` shows: a pid, a short container id


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """One actor to run: ``python -m <module> --fleet-dir DIR --name NAME`` (or the image's equivalent)."""

    name: str
    kind: str
    module: str
    fleet_dir: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # added to the base environment
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # handed over privately, never env
    log_path: Path | None = None
    limits: ResourceLimits | None = None


class RunningActor(Protocol):
    """An actor a backend started, as seen by the launcher that started it."""

    @property
    def ref(self) -> ActorRef: ...

    async def wait(self) -> int:
        """Until it exits; its exit code (negative: killed by that signal)."""
        ...

    async def stop(self, grace: float) -> int:
        """Ask it to stop (it runs its shutdown), kill it after ``grace`` seconds. Safe twice."""
        ...


class Backend(Protocol):
    name: str

    async def start(self, spec: ActorSpec) -> RunningActor:
        """Start the actor; returns once it runs (not once it is healthy: that is its ActorStarted)."""
        ...

    async def restart(self, running: RunningActor, spec: ActorSpec, grace: float) -> RunningActor:
        """Stop ``running`` (within ``grace``) and start ``spec`` again."""
        ...

    def alive(self, ref: ActorRef) -> bool:
        """Whether the actor ``ref`` names still runs (a reused pid or id does not count)."""
        ...

    def stop(self, refs: Sequence[ActorRef], *, grace: float) -> list[ActorRef]:
        """Stop these actors from outside the launcher: ask, then kill after ``grace``. Returns those killed."""
        ...

    def leftovers(self, fleet_dir: Path) -> list[ActorRef]:
        """Actors of the fleet in ``fleet_dir`` that still run, whoever started them (after a launcher died)."""
        ...

    def log_path(self, fleet_dir: Path, name: str) -> Path:
        """Where the output of actor ``name`` goes."""
        ...
