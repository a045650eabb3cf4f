"""The launcher: ``legion up`` brings up NATS and supervises the fleet's actors."""

from __future__ import annotations

from legion.actors.launcher.supervisor import Launcher, SupervisorSpec

__all__ = ["Launcher", "SupervisorSpec"]
