"""The credential vault: the only process holding provider keys; serves LLM calls for agents.

    vault = Vault("vault", config, ProviderKeys.load(config, fleet_dir=fleet_dir), VaultSpec(...))
    host = ActorHost(vault, broker, host_spec())

See DESIGN.md sections 3 and 5. The HTTP proxy (``legion.vault.<agent>.http``) lives beside it.
"""

from __future__ import annotations

from legion.actors.vault.actor import QUEUE, Vault, VaultSpec, host_spec, vault_permissions
from legion.actors.vault.caller import Caller, CallerDenied, RequestInfo, identify_caller
from legion.actors.vault.events import LlmRefused
from legion.actors.vault.health import AUTH_COOLDOWN_S, TRANSIENT_COOLDOWNS_S, Clock, FailureKind, ModelHealth
from legion.actors.vault.keys import ProviderKeys, key_env_name
from legion.actors.vault.pricing import TokenPrice, price_of

__all__ = [
    "AUTH_COOLDOWN_S",
    "QUEUE",
    "TRANSIENT_COOLDOWNS_S",
    "Caller",
    "CallerDenied",
    "Clock",
    "FailureKind",
    "LlmRefused",
    "ModelHealth",
    "ProviderKeys",
    "RequestInfo",
    "TokenPrice",
    "Vault",
    "VaultSpec",
    "host_spec",
    "identify_caller",
    "key_env_name",
    "price_of",
    "vault_permissions",
]
