"""Actor kinds and their registry: the one place the fleet learns what it can run.

Each actor package declares one :class:`ActorKind` in its ``kind.py`` and registers it in the
``legion.kinds`` entry-point group of its distribution (Legion's own in pyproject.toml)::

    [project.entry-points."legion.kinds"]
    ledger = "legion.actors.ledger.kind:KIND"

so a third-party kind installs like a plugin and ``legion up`` runs it with no change to Legion.
The supervisor (:mod:`legion.runtime.fleet.supervisor`) iterates :func:`fleet_actors`; it names no
kind itself and never imports an actor package (the architecture test checks it).

A kind module must be cheap to import: the launcher loads every registered kind. Put the actor
itself behind the kind's ``module`` (run as ``python -m <module> --fleet-dir DIR --name NAME``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Literal

from legion.broker import Permissions, StreamSpec
from legion.contracts.errors import ConfigError
from legion.contracts.names import validate_token
from legion.runtime.config import FleetConfig, ResourceLimits

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActorKind",
    "FleetActor",
    "KindContext",
    "fleet_actors",
    "kind_streams",
    "load_kinds",
    "singleton",
]

ENTRY_POINT_GROUP = "legion.kinds"


@dataclass(frozen=True, slots=True)
class KindContext:
    """What a kind may look at when the fleet starts its actors."""

    fleet_dir: Path
    config: FleetConfig
    agents_account: str  # the AGENTS account's public key (who may call the trusted services)
    environ: Mapping[str, str] = field(repr=False)  # the launcher's environment (holds the secrets)


def _no_env(_name: str, _ctx: KindContext) -> Mapping[str, str]:
    return {}


def _no_limits(_name: str, _config: FleetConfig) -> ResourceLimits | None:
    return None


def _no_streams(_config: FleetConfig) -> Sequence[StreamSpec]:
    return ()


def singleton(name: str) -> Callable[[FleetConfig], Sequence[str]]:
    """``instances`` of a kind that runs once per fleet, as actor ``name``."""
    return lambda _config: (name,)


@dataclass(frozen=True, slots=True)
class ActorKind:
    """One kind of actor: how the fleet starts it, what its credential may do and what it is given.

    ``stage`` orders start-up (lower first; every actor of a stage is healthy before the next stage
    starts) and shut-down (the reverse): the ledger before the vault, which callers need first.
    ``account`` is ``LEGION`` for trusted actors (a service credential with ``permissions``) or
    ``AGENTS`` for agents (the fleet mints each agent's credential from its legion.yaml entry).
    ``env`` adds to the base environment every actor gets; ``secrets`` go to the actor through the
    backend's private channel (the process backend: its stdin), never its environment, and only a
    kind that needs them declares any (the vault). ``streams`` are the JetStream streams the kind's
    actors need beyond the fleet's own (EVENTS, INBOX, LEDGER): the launcher provisions them with the
    admin credential before any actor starts (the scheduler's SCHEDULES).
    """

    name: str
    module: str
    stage: int
    instances: Callable[[FleetConfig], Sequence[str]]
    account: Literal["LEGION", "AGENTS"] = "LEGION"
    permissions: Callable[[str, FleetConfig], Permissions] | None = None
    env: Callable[[str, KindContext], Mapping[str, str]] = _no_env
    secrets: Callable[[str, KindContext], Mapping[str, str]] = _no_env
    limits: Callable[[str, FleetConfig], ResourceLimits | None] = _no_limits
    streams: Callable[[FleetConfig], Sequence[StreamSpec]] = _no_streams
    description: str = ""

    def __post_init__(self) -> None:
        validate_token(self.name, kind="actor kind")
        if self.account == "LEGION" and self.permissions is None:
            raise ConfigError(f"actor kind {self.name!r}: a LEGION-account kind must declare its permissions")


@dataclass(frozen=True, slots=True)
class FleetActor:
    """One actor the fleet runs: its name and its kind."""

    name: str
    kind: ActorKind


def _load(ep: EntryPoint) -> ActorKind:
    try:
        kind = ep.load()
    except Exception as exc:  # a broken plugin names itself; it does not take the CLI down with a traceback
        raise ConfigError(
            f"actor kind {ep.name!r} ({ep.value}) could not be loaded: {type(exc).__name__}: {exc}; "
            f"fix or uninstall the package that registers it in the {ENTRY_POINT_GROUP!r} entry points"
        ) from exc
    if not isinstance(kind, ActorKind):
        raise ConfigError(
            f"entry point {ep.name!r} ({ep.value}) in {ENTRY_POINT_GROUP!r} is a {type(kind).__name__}, "
            "not an ActorKind"
        )
    if kind.name != ep.name:
        raise ConfigError(f"entry point {ep.name!r} ({ep.value}) declares kind {kind.name!r}: the names must match")
    return kind


@functools.cache
def load_kinds() -> dict[str, ActorKind]:
    """Every registered kind by name, in start order (stage, then name)."""
    kinds: dict[str, ActorKind] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in kinds:
            continue  # the same distribution seen twice on sys.path (editable + installed)
        kinds[ep.name] = _load(ep)
    return dict(sorted(kinds.items(), key=lambda item: (item[1].stage, item[0])))


def fleet_actors(config: FleetConfig, kinds: Mapping[str, ActorKind] | None = None) -> list[FleetActor]:
    """Every actor this fleet runs, in start order. Raises ConfigError if two share a name."""
    found: list[FleetActor] = []
    owner: dict[str, str] = {}
    for kind in (kinds if kinds is not None else load_kinds()).values():
        for name in kind.instances(config):
            if kind.account == "AGENTS" and name not in config.agents:
                raise ConfigError(
                    f"actor kind {kind.name!r} runs {name!r} in the AGENTS account, but only agents of "
                    "legion.yaml get an AGENTS credential; make the kind a LEGION kind with its permissions"
                )
            if name in owner:
                raise ConfigError(
                    f"actor name {name!r} is used by kind {owner[name]!r} and by kind {kind.name!r}; "
                    "rename the agent (or uninstall the plugin kind) so each actor has its own name"
                )
            owner[name] = kind.name
            found.append(FleetActor(name=name, kind=kind))
    return found


def kind_streams(plan: Sequence[FleetActor], config: FleetConfig) -> list[StreamSpec]:
    """The streams the kinds of ``plan`` declare, each kind asked once; ConfigError if two kinds
    declare one stream name differently."""
    found: dict[str, StreamSpec] = {}
    asked: set[str] = set()
    for actor in plan:
        if actor.kind.name in asked:
            continue
        asked.add(actor.kind.name)
        for spec in actor.kind.streams(config):
            if found.setdefault(spec.name, spec) != spec:
                raise ConfigError(
                    f"stream {spec.name!r} is declared differently by two actor kinds (one is {actor.kind.name!r})"
                )
    return list(found.values())
