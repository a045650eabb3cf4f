"""Hosting ONE actor: typed handlers (``actor``), its routes, services and shutdown (``actor_host``),
the process entry point every actor kind's ``__main__`` calls (``process``), and logging (``logs``)."""

from __future__ import annotations

from legion.runtime.host.actor import Actor, Context, Route, handler, routes_of
from legion.runtime.host.actor_host import ActorHost, HostSpec, ServiceSpec
from legion.runtime.host.process import CONFIG_EXIT, ActorFactory, actor_args, run_actor_process

__all__ = [
    "CONFIG_EXIT",
    "Actor",
    "ActorFactory",
    "ActorHost",
    "Context",
    "HostSpec",
    "Route",
    "ServiceSpec",
    "actor_args",
    "handler",
    "routes_of",
    "run_actor_process",
]
