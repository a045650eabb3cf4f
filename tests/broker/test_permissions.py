"""The permission compiler writes NATS patterns with NATS semantics, and JWTs the server accepts."""

from __future__ import annotations

import pytest

from legion.broker import Permissions, agent_permissions, ingest_permissions
from legion.broker.jwt import KeyPair, decode_claims, encode_jwt, format_creds, new_keypair, read_creds
from legion.contracts import ConfigError


def _matches(pattern: str, subject: str) -> bool:
    """NATS matching: '*' is exactly one token, '>' one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def _allowed(perms: Permissions, subject: str) -> bool:
    return any(_matches(p, subject) for p in perms.pub_allow)


def test_agent_set_matches_design_minimal_set() -> None:
    """DESIGN.md section 3's set, plus the scheduler service and the agent's private state bucket ag_alpha,
    minus every consumer right on buckets (CONSUMER.CREATE/INFO, $JS.FC): agents create no consumers."""
    perms = agent_permissions("alpha", projects=["p1"])
    private = {
        "$KV.ag_alpha.>",
        "JSL.API.DIRECT.GET.KV_ag_alpha",
        "JSL.API.DIRECT.GET.KV_ag_alpha.>",
        "JSL.API.STREAM.INFO.KV_ag_alpha",
    }
    assert set(perms.pub_allow) == private | {
        "legion.vault.alpha.>",
        "legion.scheduler.alpha.>",
        "legion.events.alpha.>",
        "JSL.API.CONSUMER.MSG.NEXT.INBOX.alpha_inbox",
        "JSL.API.CONSUMER.INFO.INBOX.alpha_inbox",
        "$JS.ACK.INBOX.alpha_inbox.>",
        "$KV.bb_p1.>",
        "JSL.API.DIRECT.GET.KV_bb_p1",
        "JSL.API.DIRECT.GET.KV_bb_p1.>",
        "JSL.API.STREAM.INFO.KV_bb_p1",
    }
    assert perms.sub_allow == ("_INBOX.alpha.>",)
    assert not perms.allow_responses


@pytest.mark.parametrize(
    ("subject", "allowed"),
    [
        ("legion.events.alpha.task.completed", True),
        ("legion.events.alpha", False),  # '>' needs at least one more token
        ("legion.events.alphabet.x", False),  # a prefix of the name is another name
        ("legion.events.alpha-2.x", False),
        ("legion.vault.alpha.llm", True),
        ("legion.vault.beta.llm", False),
        ("$KV.bb_p1.a.b.c", True),
        ("$KV.bb_p10.a", False),
        ("JSL.API.DIRECT.GET.KV_bb_p1", True),
        ("JSL.API.DIRECT.GET.KV_bb_p1.$KV.bb_p1.a.b", True),
        ("JSL.API.DIRECT.GET.KV_bb_p10", False),
        ("JSL.API.STREAM.INFO.KV_bb_p1", True),
        ("JSL.API.STREAM.INFO.KV_bb_p1.x", False),
        ("JSL.API.CONSUMER.INFO.INBOX.alpha_inbox", True),
        ("JSL.API.CONSUMER.INFO.INBOX.alpha_inbox.extra", False),
        ("JSL.API.CONSUMER.INFO.INBOX.beta_inbox", False),
        # agents create no consumers, on any stream, in any form (a push consumer delivers anywhere)
        ("JSL.API.CONSUMER.CREATE.KV_bb_p1", False),
        ("JSL.API.CONSUMER.CREATE.KV_bb_p1.c1", False),
        ("JSL.API.CONSUMER.CREATE.KV_bb_p1.c1.$KV.bb_p1.>", False),
        ("JSL.API.CONSUMER.CREATE.KV_ag_alpha", False),
        ("JSL.API.CONSUMER.CREATE.INBOX.alpha_inbox", False),
        ("JSL.API.CONSUMER.DURABLE.CREATE.KV_bb_p1.c1", False),
        ("JSL.API.CONSUMER.INFO.KV_bb_p1.c1", False),
        ("JSL.API.CONSUMER.DELETE.KV_bb_p1.c1", False),
        ("$JS.FC.KV_bb_p1.x.y", False),
    ],
)
def test_pattern_edges_follow_nats_token_rules(subject: str, allowed: bool) -> None:
    assert _allowed(agent_permissions("alpha", projects=["p1"]), subject) is allowed


def test_can_message_adds_exactly_the_listed_inboxes() -> None:
    """No inbox without can_message (not even its own); with it, exactly the listed agents' inboxes."""
    lone = agent_permissions("alpha", projects=["p1"])
    assert not any(_allowed(lone, f"legion.agent.{a}.inbox") for a in ("alpha", "beta", "gamma"))
    perms = agent_permissions("alpha", projects=["p1"], can_message=["beta", "beta"])
    assert set(perms.pub_allow) - set(lone.pub_allow) == {"legion.agent.beta.inbox"}
    assert _allowed(perms, "legion.agent.beta.inbox")
    for subject in ("legion.agent.gamma.inbox", "legion.agent.alpha.inbox", "legion.agent.beta.inbox.x"):
        assert not _allowed(perms, subject)
    with pytest.raises(ConfigError):
        agent_permissions("alpha", can_message=["*"])


def test_empty_permissions_deny_everything_explicitly() -> None:
    claims = Permissions().to_jwt()
    assert claims["pub"] == {"deny": [">"]} and claims["sub"] == {"deny": [">"]}


def test_ingest_publishes_only_its_source() -> None:
    perms = ingest_permissions("github")
    assert perms.pub_allow == ("legion.ext.github.>",)
    assert _allowed(perms, "legion.ext.github.push") and not _allowed(perms, "legion.ext.gitlab.push")


def test_bad_names_never_reach_a_permission() -> None:
    with pytest.raises(ConfigError):
        agent_permissions("a.>")
    with pytest.raises(ConfigError):
        agent_permissions("alpha", projects=["*"])


def test_jwt_round_trip_and_creds_format() -> None:
    account = new_keypair("account")
    user = new_keypair("user")
    token = encode_jwt(issuer=account, subject=user.public_key, name="alpha", nats={"type": "user"}, expires_in=60)
    claims = decode_claims(token)
    assert claims["iss"] == account.public_key and claims["sub"] == user.public_key
    assert claims["exp"] - claims["iat"] == 60 and claims["nats"]["version"] == 2
    assert read_creds(format_creds(token, user.seed)) == (token, user.seed)
    assert user.seed not in repr(user) and isinstance(KeyPair.from_seed(user.seed), KeyPair)
