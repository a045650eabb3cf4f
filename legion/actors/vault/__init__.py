"""The credential vault: the only process holding provider keys and agent credentials; serves LLM
calls (``legion.vault.<agent>.llm``) and credentialed HTTP calls (``legion.vault.<agent>.http``).

    keys = ProviderKeys.load(config, fleet_dir=fleet_dir)
    vault = Vault("vault", config, keys, VaultSpec(...), credentials=CredentialStore.load(fleet_dir))
    host = ActorHost(vault, broker, host_spec())

See DESIGN.md sections 3 and 5.

Names are imported on first use: importing this package (say, for :func:`vault_permissions` in the
launcher, or ``legion.actors.vault.ssrf``) does not import LiteLLM, which takes seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from legion.actors.vault.actor import Vault, VaultSpec
    from legion.actors.vault.caller import Caller, CallerDenied, RequestInfo, identify_caller
    from legion.actors.vault.credentials import CredentialStore
    from legion.actors.vault.health import AUTH_COOLDOWN_S, TRANSIENT_COOLDOWNS_S, Clock, FailureKind, ModelHealth
    from legion.actors.vault.hosting import QUEUE, host_spec, vault_permissions
    from legion.actors.vault.http_proxy import HttpProxySpec
    from legion.actors.vault.keys import ProviderKeys, key_env_name
    from legion.actors.vault.pricing import TokenPrice, price_of
    from legion.actors.vault.ssrf import SsrfExemption

_WHERE = {
    "QUEUE": "hosting",
    "Vault": "actor",
    "VaultSpec": "actor",
    "host_spec": "hosting",
    "vault_permissions": "hosting",
    "Caller": "caller",
    "CallerDenied": "caller",
    "RequestInfo": "caller",
    "identify_caller": "caller",
    "CredentialStore": "credentials",
    "HttpProxySpec": "http_proxy",
    "SsrfExemption": "ssrf",
    "AUTH_COOLDOWN_S": "health",
    "TRANSIENT_COOLDOWNS_S": "health",
    "Clock": "health",
    "FailureKind": "health",
    "ModelHealth": "health",
    "ProviderKeys": "keys",
    "key_env_name": "keys",
    "TokenPrice": "pricing",
    "price_of": "pricing",
}

__all__ = [
    "AUTH_COOLDOWN_S",
    "QUEUE",
    "TRANSIENT_COOLDOWNS_S",
    "Caller",
    "CallerDenied",
    "Clock",
    "CredentialStore",
    "FailureKind",
    "HttpProxySpec",
    "ModelHealth",
    "ProviderKeys",
    "RequestInfo",
    "SsrfExemption",
    "TokenPrice",
    "Vault",
    "VaultSpec",
    "host_spec",
    "identify_caller",
    "key_env_name",
    "price_of",
    "vault_permissions",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
