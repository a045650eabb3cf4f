"""What an agent may call, resolved once from legion.yaml at start (never re-read per call).

A request names a model alias. It is allowed when the agent exists, ``llm`` is among its
``allowed_apis`` and the alias is among ``FleetConfig.allowed_models(agent)``; its ``max_tokens``
is capped by the agent's and the model's ``max_tokens``. The failover chain is the alias followed
by its ``fallbacks``, keeping only aliases the agent may call, that have a price and a key (the
built-in offline model, ``legion/offline``, needs none: its price is 0 and a ``key:`` is ignored). The
project billed is ``LlmRequest.project`` if it is one of the agent's ``projects`` (else the call is
refused), or the agent's only project when the request names none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from legion.actors.vault.keys import ProviderKeys, key_env_name
from legion.actors.vault.offline import OFFLINE_MODEL, is_offline
from legion.actors.vault.pricing import TokenPrice, price_of
from legion.contracts.errors import Refused
from legion.contracts.names import NAME_PATTERN
from legion.contracts.vault import LlmRequest
from legion.runtime.config import FleetConfig

__all__ = ["ModelRoute", "Plan", "Policy", "PolicyRefused"]


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """One alias, ready to call: what LiteLLM gets (the key is looked up by name at call time)."""

    alias: str
    model: str
    api_base: str | None
    key_name: str | None
    params: Mapping[str, Any]
    price: TokenPrice | None
    fallbacks: tuple[str, ...]
    max_tokens: int | None
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Plan:
    agent: str
    project: str
    chain: tuple[ModelRoute, ...]
    skipped: tuple[str, ...] = field(default=())
    """Why aliases of the failover chain were left out (no price, no key, not allowed)."""


class PolicyRefused(Refused):
    def __init__(self, message: str, *, code: Literal["policy", "invalid"] = "policy") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Policy:
    def __init__(self, config: FleetConfig, keys: ProviderKeys, *, default_max_tokens: int) -> None:
        self._config = config
        self._keys = keys
        self._default_max_tokens = default_max_tokens
        self.routes: dict[str, ModelRoute] = {
            alias: ModelRoute(
                alias=alias,
                model=OFFLINE_MODEL if is_offline(m.model) else m.model,
                api_base=m.api_base,
                key_name=None if is_offline(m.model) else m.key,
                params=dict(m.params),
                price=price_of(m),
                fallbacks=tuple(m.fallbacks),
                max_tokens=m.max_tokens,
                timeout_s=m.timeout_s,
            )
            for alias, m in config.models.items()
        }
        self._allowed = {agent: frozenset(config.allowed_models(agent)) for agent in config.agents}

    def unpriced(self) -> list[str]:
        return sorted(alias for alias, r in self.routes.items() if r.price is None)

    def offline(self) -> list[str]:
        """Aliases of the built-in offline model (answered by the vault itself)."""
        return sorted(a for a, r in self.routes.items() if is_offline(r.model))

    def keyless(self) -> list[str]:
        """Aliases whose key is named but has no value (their calls are refused)."""
        return sorted(a for a, r in self.routes.items() if r.key_name and self._keys.get(r.key_name) is None)

    def max_tokens(self, agent: str, route: ModelRoute, requested: int | None) -> int:
        caps = [c for c in (self._config.agents[agent].max_tokens, route.max_tokens) if c]
        return min([requested or self._default_max_tokens, *caps])

    def plan(self, agent: str, req: LlmRequest) -> Plan:
        """The failover chain for ``req``, or :class:`PolicyRefused` saying what the policy forbids."""
        cfg = self._config.agents.get(agent)
        if cfg is None:
            raise PolicyRefused(f"agent {agent!r} is not configured in legion.yaml (agents:)")
        if "llm" not in cfg.allowed_apis:
            raise PolicyRefused(f"agent {agent!r} may not call models: 'llm' is not in its allowed_apis")
        allowed = self._allowed.get(agent, frozenset())
        if req.model not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise PolicyRefused(f"agent {agent!r} may not call model {req.model!r} (allowed: {names})")
        if req.max_tokens is not None and req.max_tokens <= 0:
            raise PolicyRefused(f"max_tokens {req.max_tokens} must be positive", code="invalid")
        if req.stream and NAME_PATTERN.fullmatch(req.session) is None:
            raise PolicyRefused(
                f"a streamed call needs a session token matching [a-z0-9_-]{{1,64}}, got {req.session!r}",
                code="invalid",
            )
        primary = self.routes[req.model]
        if primary.price is None:
            raise PolicyRefused(
                f"model {req.model!r} ({primary.model}) has no known price; "
                f"configure price: under models.{req.model} in legion.yaml"
            )
        chain: list[ModelRoute] = []
        skipped: list[str] = []
        for alias in dict.fromkeys((req.model, *primary.fallbacks)):
            route = self.routes[alias]
            if alias not in allowed:
                skipped.append(f"{alias}: not allowed for {agent}")
            elif route.price is None:
                skipped.append(f"{alias}: no known price (configure price: in legion.yaml)")
            elif route.key_name and self._keys.get(route.key_name) is None:
                skipped.append(f"{alias}: no key (set {key_env_name(route.key_name)})")
            else:
                chain.append(route)
        return Plan(agent=agent, project=self._project(agent, req), chain=tuple(chain), skipped=tuple(skipped))

    def _project(self, agent: str, req: LlmRequest) -> str:
        """The project billed: the one asked for, if the agent belongs to it; else the agent's only one."""
        projects = self._config.agents[agent].projects
        if not req.project:
            return projects[0] if len(projects) == 1 else ""
        if req.project not in projects:
            names = ", ".join(projects) or "none"
            raise PolicyRefused(
                f"agent {agent!r} may not bill project {req.project!r} (its projects: {names}); "
                f"add it to agents.{agent}.projects in legion.yaml or leave project empty"
            )
        return req.project
