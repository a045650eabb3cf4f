"""Backends start, stop and watch actors (the protocol is :mod:`.base`); ``runtime.backend`` in
legion.yaml picks one by name."""

from __future__ import annotations

from legion.contracts.errors import ConfigError
from legion.runtime.fleet.backends.base import ActorRef, ActorSpec, Backend, RunningActor
from legion.runtime.fleet.backends.process import ProcessBackend

__all__ = ["BACKENDS", "ActorRef", "ActorSpec", "Backend", "ProcessBackend", "RunningActor", "backend_for"]

BACKENDS = ("process",)


def backend_for(name: str) -> Backend:
    """The backend called ``name`` (``runtime.backend`` in legion.yaml)."""
    if name == "process":
        return ProcessBackend()
    raise ConfigError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}")
