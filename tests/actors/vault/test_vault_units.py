"""The vault's pure parts, without NATS: keys, prices, health, caller checks, policy, error classes."""

from __future__ import annotations

import json
import os
import pickle
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import legion.actors.vault as vault_pkg
from legion.actors.vault import (
    AUTH_COOLDOWN_S,
    CallerDenied,
    FailureKind,
    ModelHealth,
    ProviderKeys,
    identify_caller,
    key_env_name,
    price_of,
)
from legion.actors.vault._litellm import errors
from legion.actors.vault.llm import classify
from legion.actors.vault.policy import Policy, PolicyRefused
from legion.contracts import LlmRequest
from legion.contracts import headers as h
from legion.contracts import subjects as subj
from legion.runtime.config import FleetConfig, ModelConfig

AGENTS = "AAGENTSACCOUNTPUBLICKEY"


def fleet_config(**agent: Any) -> FleetConfig:
    return FleetConfig.model_validate(
        {
            "models": {
                "main": {"model": "openai/a", "key": "openai", "price": {"input_per_mtok": 3, "output_per_mtok": 15},
                         "fallbacks": ["cheap", "unpriced", "keyless"], "max_tokens": 1000},
                "cheap": {"model": "openai/b", "key": "openai", "price": {"input_per_mtok": 1, "output_per_mtok": 1}},
                "unpriced": {"model": "openai/not-in-any-map", "key": "openai"},
                "keyless": {"model": "openai/c", "key": "other", "price": {"input_per_mtok": 1, "output_per_mtok": 1}},
                "local": {"model": "openai/d", "api_base": "http://127.0.0.1:1/v1",
                          "price": {"input_per_mtok": 0, "output_per_mtok": 0}},
            },
            "agents": {"alpha": {"model": "main", "projects": ["p1"], **agent}},
        }
    )  # fmt: skip


def request(model: str = "main", **fields: Any) -> LlmRequest:
    return LlmRequest(request_id="r1", model=model, messages=[{"role": "user", "content": "hi"}], **fields)


def test_public_names_are_pinned() -> None:
    assert {"Vault", "VaultSpec", "ProviderKeys", "ModelHealth", "host_spec", "vault_permissions"} <= set(
        vault_pkg.__all__
    )
    for name in vault_pkg.__all__:
        assert hasattr(vault_pkg, name)


# -- keys -------------------------------------------------------------------------------------------


def test_keys_come_from_the_environment_before_dotenv_which_never_reaches_os_environ(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEGION_SYSTEM_OPENAI=sk-from-dotenv-1\nLEGION_SYSTEM_OTHER=sk-from-dotenv-2\n")
    config = fleet_config()

    keys = ProviderKeys.load(config, fleet_dir=tmp_path, environ={"LEGION_SYSTEM_OPENAI": "sk-from-env-123"})

    assert keys.get("openai") == "sk-from-env-123"
    assert keys.get("other") == "sk-from-dotenv-2"
    assert "LEGION_SYSTEM_OTHER" not in os.environ


def test_only_keys_named_by_models_are_read(tmp_path: Path) -> None:
    keys = ProviderKeys.load(fleet_config(), environ={"LEGION_SYSTEM_UNRELATED": "sk-unrelated-1234"})
    assert keys.names() == []
    assert keys.missing(["openai", "other"]) == ["openai", "other"]


def test_key_env_names_are_upper_cased_and_shell_safe() -> None:
    assert key_env_name("openai") == "LEGION_SYSTEM_OPENAI"
    assert key_env_name("my-provider.eu") == "LEGION_SYSTEM_MY_PROVIDER_EU"


def test_keys_never_show_their_values() -> None:
    keys = ProviderKeys({"openai": "sk-very-secret-value"})
    assert "sk-very-secret-value" not in repr(keys) + str(keys) + f"{keys}"
    assert repr(keys) == "ProviderKeys(names=['openai'])"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keys)


def test_scrub_removes_key_values_and_error_texts_also_key_shaped_tokens() -> None:
    keys = ProviderKeys({"a": "plain-secret-value", "b": "sk-abcdef123456"})
    text = "key plain-secret-value and sk-abcdef123456, masked sk-proj-****wxyz, a key-value-store"
    assert keys.scrub(text) == "key [redacted] and [redacted], masked sk-proj-****wxyz, a key-value-store"
    assert keys.scrub_error(text) == "key [redacted] and [redacted], masked [redacted], a [redacted]"
    assert keys.scrub_any({"args": ["x plain-secret-value"]}) == {"args": ["x [redacted]"]}


# -- pricing ----------------------------------------------------------------------------------------


def test_a_configured_price_wins_and_is_exact() -> None:
    price = price_of(ModelConfig(model="openai/gpt-4o-mini", price={"input_per_mtok": 3, "output_per_mtok": 15}))  # type: ignore[arg-type]
    assert price is not None and price.source == "config"
    assert price.cost(1_000_000, 2) == Decimal(3) + Decimal("0.00003")


def test_litellm_prices_known_models_and_unknown_models_have_none() -> None:
    known = price_of(ModelConfig(model="openai/gpt-4o-mini"))
    assert known is not None and known.source == "litellm"
    assert known.input_per_token == Decimal("1.5E-7")
    assert price_of(ModelConfig(model="openai/not-in-any-map")) is None


# -- health -----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_transient_cooldowns_grow_and_a_success_resets_them() -> None:
    clock = Clock()
    health = ModelHealth(clock)
    seen = []
    for _ in range(4):
        seen.append(health.record_failure("m", FailureKind.TRANSIENT))
        clock.now += seen[-1]
    assert seen == [60, 300, 1500, 1500]
    health.record_success("m")
    assert health.record_failure("m", FailureKind.TRANSIENT) == 60


def test_failures_during_a_cooldown_do_not_escalate_it() -> None:
    clock = Clock()
    health = ModelHealth(clock)
    health.record_failure("m", FailureKind.TRANSIENT)
    clock.now = 10
    assert health.record_failure("m", FailureKind.TRANSIENT) == 50
    clock.now = 60
    assert health.record_failure("m", FailureKind.TRANSIENT) == 300


def test_auth_failures_cool_down_an_hour_and_bad_requests_not_at_all() -> None:
    clock = Clock()
    health = ModelHealth(clock)
    assert health.record_failure("a", FailureKind.AUTH) == AUTH_COOLDOWN_S == 3600
    assert health.record_failure("b", FailureKind.REQUEST) == 0
    assert not health.available("a") and health.available("b")
    clock.now = 3600
    assert health.available("a")


def test_an_hour_without_failures_forgets_the_strikes() -> None:
    clock = Clock()
    health = ModelHealth(clock)
    health.record_failure("m", FailureKind.TRANSIENT)
    clock.now = 60
    health.record_failure("m", FailureKind.TRANSIENT)
    clock.now = 60 + 300 + 3601
    assert health.record_failure("m", FailureKind.TRANSIENT) == 60


# -- errors -----------------------------------------------------------------------------------------


def _err(cls: type[Exception], status: int | None = None, **kwargs: Any) -> Exception:
    exc = cls(message="x", llm_provider="openai", model="m", **kwargs)  # type: ignore[call-arg]
    if status is not None:
        exc.status_code = status  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (TimeoutError(), FailureKind.TRANSIENT, "timeout"),
        (_err(errors.Timeout), FailureKind.TRANSIENT, "timeout"),
        (_err(errors.RateLimitError), FailureKind.TRANSIENT, "provider"),
        (_err(errors.InternalServerError), FailureKind.TRANSIENT, "provider"),
        (_err(errors.APIConnectionError), FailureKind.TRANSIENT, "provider"),
        (_err(errors.AuthenticationError), FailureKind.AUTH, "provider"),
        (_err(errors.BadRequestError, 402), FailureKind.AUTH, "provider"),
        (_err(errors.BadRequestError), FailureKind.REQUEST, "invalid"),
        (_err(errors.NotFoundError), FailureKind.REQUEST, "invalid"),
        (RuntimeError("unknown"), FailureKind.TRANSIENT, "provider"),
    ],
)
def test_errors_are_classified(exc: Exception, kind: FailureKind, code: str) -> None:
    assert classify(exc)[:2] == (kind, code)


# -- caller -----------------------------------------------------------------------------------------


def _info(**fields: Any) -> dict[str, str]:
    return {h.REQUEST_INFO: json.dumps(fields)}


def test_the_caller_is_the_subject_agent_confirmed_by_the_server() -> None:
    subject = subj.VAULT_LLM.render(agent="alpha")
    caller = identify_caller(subject, _info(acc=AGENTS, user="UALPHA", name_tag="alpha"), agents_account=AGENTS)
    assert (caller.agent, caller.account, caller.user) == ("alpha", AGENTS, "UALPHA")
    unpinned = identify_caller(subject, _info(acc="AANY", name_tag="alpha"), agents_account=None)
    assert unpinned.agent == "alpha"


@pytest.mark.parametrize(
    ("subject", "headers", "fragment"),
    [
        ("legion.vault.alpha.http", _info(acc=AGENTS, name_tag="alpha"), "does not match"),
        (subj.VAULT_LLM.render(agent="alpha"), {}, "no Nats-Request-Info"),
        (subj.VAULT_LLM.render(agent="alpha"), {h.REQUEST_INFO: "{"}, "unreadable"),
        (subj.VAULT_LLM.render(agent="alpha"), _info(acc="AOTHER", name_tag="alpha"), "not the AGENTS account"),
        (subj.VAULT_LLM.render(agent="alpha"), _info(acc=AGENTS, name_tag="beta"), "'beta' asked on"),
        (subj.VAULT_LLM.render(agent="alpha"), _info(acc=AGENTS, name="alpha"), "'' asked on"),
    ],
    ids=["other-subject", "missing", "garbage", "other-account", "other-agent", "connection-name-is-not-trusted"],
)
def test_unattributable_calls_are_denied(subject: str, headers: dict[str, str], fragment: str) -> None:
    with pytest.raises(CallerDenied, match=fragment):
        identify_caller(subject, headers, agents_account=AGENTS)


# -- policy -----------------------------------------------------------------------------------------


def test_the_chain_keeps_only_allowed_priced_aliases_with_keys() -> None:
    config = fleet_config(allowed_models=["main", "unpriced", "keyless"])
    policy = Policy(config, ProviderKeys({"openai": "sk-123456789"}), default_max_tokens=4096)

    plan = policy.plan("alpha", request())

    assert [r.alias for r in plan.chain] == ["main"]
    assert plan.skipped == (
        "cheap: not allowed for alpha",
        "unpriced: no known price (configure price: in legion.yaml)",
        "keyless: no key (set LEGION_SYSTEM_OTHER)",
    )
    assert plan.project == "p1"
    assert policy.unpriced() == ["unpriced"]
    assert policy.keyless() == ["keyless"]


def test_a_model_without_a_key_name_needs_no_key() -> None:
    policy = Policy(fleet_config(allowed_models=["local"]), ProviderKeys({}), default_max_tokens=10)
    assert [r.alias for r in policy.plan("alpha", request("local")).chain] == ["local"]


@pytest.mark.parametrize(
    ("agent_cap", "requested", "expected"),
    [(None, None, 1000), (None, 5000, 1000), (200, None, 200), (200, 50, 50), (None, 10, 10)],
)
def test_max_tokens_is_the_smallest_cap(agent_cap: int | None, requested: int | None, expected: int) -> None:
    policy = Policy(fleet_config(max_tokens=agent_cap), ProviderKeys({}), default_max_tokens=4096)
    assert policy.max_tokens("alpha", policy.routes["main"], requested) == expected
    assert policy.max_tokens("alpha", policy.routes["cheap"], None) == (agent_cap or 4096)


@pytest.mark.parametrize(
    ("agent", "req", "code", "fragment"),
    [
        ("nobody", request(), "policy", "not configured"),
        ("alpha", request("local"), "policy", "may not call model 'local'"),
        ("alpha", request(max_tokens=0), "invalid", "must be positive"),
        ("alpha", request(stream=True, session="Not A Token"), "invalid", "session"),
    ],
)
def test_policy_refusals_name_the_rule(agent: str, req: LlmRequest, code: str, fragment: str) -> None:
    policy = Policy(fleet_config(), ProviderKeys({}), default_max_tokens=10)
    with pytest.raises(PolicyRefused, match=fragment) as err:
        policy.plan(agent, req)
    assert err.value.code == code


def test_an_agent_without_the_llm_api_is_refused() -> None:
    policy = Policy(fleet_config(allowed_apis=["http"]), ProviderKeys({}), default_max_tokens=10)
    with pytest.raises(PolicyRefused, match="allowed_apis"):
        policy.plan("alpha", request())


def test_an_unpriced_primary_fails_closed_with_the_fix() -> None:
    policy = Policy(fleet_config(model="unpriced"), ProviderKeys({"openai": "sk-123456789"}), default_max_tokens=10)
    with pytest.raises(PolicyRefused, match=r"configure price: under models\.unpriced in legion\.yaml"):
        policy.plan("alpha", request("unpriced"))


@pytest.mark.parametrize(
    ("projects", "asked", "billed"),
    [(["p1"], "", "p1"), (["p1", "p2"], "", ""), ([], "", ""), (["p1", "p2"], "p2", "p2"), (["p1"], "p1", "p1")],
    ids=["only-project", "several-none-asked", "no-projects", "asked-own", "asked-only"],
)
def test_the_project_billed_is_the_one_asked_for_or_the_agents_only_one(
    projects: list[str], asked: str, billed: str
) -> None:
    policy = Policy(fleet_config(projects=projects), ProviderKeys({"openai": "sk-123456789"}), default_max_tokens=10)
    assert policy.plan("alpha", request(project=asked)).project == billed


@pytest.mark.parametrize("projects", [["p1"], []], ids=["other-project", "no-projects"])
def test_a_project_the_agent_is_not_in_is_refused_by_policy(projects: list[str]) -> None:
    policy = Policy(fleet_config(projects=projects), ProviderKeys({"openai": "sk-123456789"}), default_max_tokens=10)
    with pytest.raises(PolicyRefused, match=r"may not bill project 'p9'.*agents\.alpha\.projects") as err:
        policy.plan("alpha", request(project="p9"))
    assert err.value.code == "policy"
