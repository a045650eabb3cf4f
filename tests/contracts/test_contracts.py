"""Contracts: tags, codec modes, names, subjects, schemas."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

import legion.contracts as c
from legion.contracts import subjects as subj


def test_every_contract_has_a_versioned_tag_and_round_trips() -> None:
    tags = c.contracts()
    assert len(tags) >= 24
    for tag, cls in tags.items():
        assert tag.rsplit(".", 1)[-1].startswith("v"), tag
        assert cls.contract_tag() == tag
        assert cls.__struct_config__.frozen
        with pytest.raises(TypeError):
            cls("positional")  # keyword-only


def test_encode_sets_header_and_body_tag_and_decodes_back() -> None:
    msg = c.Reserve(reservation_id="r1", agent="alpha", estimate_usd=Decimal("0.10"))
    data, headers = c.encode(msg)
    assert headers == {"Legion-Type": "ledger.reserve.v1"}
    assert json.loads(data)["type"] == "ledger.reserve.v1"
    assert json.loads(data)["estimate_usd"] == "0.10", "money is an exact decimal string on the wire"
    assert c.decode(data, headers, strict=True) == msg


def test_unknown_tag_is_kept_in_lenient_mode_and_refused_in_strict_mode() -> None:
    data = b'{"type":"future.thing.v9","x":1}'
    kept = c.decode(data, {"Legion-Type": "future.thing.v9"})
    assert isinstance(kept, c.UnknownEvent)
    assert kept.tag == "future.thing.v9" and kept.as_dict() == {"type": "future.thing.v9", "x": 1}
    with pytest.raises(c.ContractError, match=r"unknown contract tag 'future\.thing\.v9'"):
        c.Codec(strict=True).decode(data, {"Legion-Type": "future.thing.v9"})


def test_tag_falls_back_to_body_when_header_missing() -> None:
    data, _ = c.encode(c.Cancel(task_id="t"))
    assert c.decode(data, None) == c.Cancel(task_id="t")


def test_invalid_body_names_tag_and_field() -> None:
    with pytest.raises(c.ContractError, match=r"task\.assign\.v1.*task_id"):
        c.decode(b'{"text": "x"}', {"Legion-Type": "task.assign.v1"})


def test_new_fields_with_defaults_are_ignored_by_older_readers() -> None:
    data = b'{"type":"task.cancel.v1","task_id":"t","added_in_v1_1":true}'
    assert c.decode(data, None, strict=True) == c.Cancel(task_id="t")


def test_a_contract_without_a_tag_cannot_be_encoded() -> None:
    class Untagged(c.Event, frozen=True, kw_only=True):
        x: int = 0

    with pytest.raises(TypeError, match="no versioned tag"):
        c.encode(Untagged())
    assert "Untagged" not in c.contracts()


@pytest.mark.parametrize("bad", ["Coder Bot", "a.b", "a*", "a>", "", "x" * 65, "UPPER", "tab\t"])
def test_names_are_validated_with_a_message_that_names_value_and_rule(bad: str) -> None:
    with pytest.raises(c.ConfigError) as err:
        c.AgentName(bad)
    assert repr(bad) in str(err.value) and "NATS subject token" in str(err.value)


def test_name_error_suggests_a_fix() -> None:
    with pytest.raises(c.ConfigError, match="try 'coder-bot'"):
        c.AgentName("Coder Bot")


def test_subject_templates_render_wildcard_and_parse() -> None:
    assert subj.AGENT_INBOX.render(agent="alpha") == "legion.agent.alpha.inbox"
    assert subj.AGENT_INBOX.wildcard() == "legion.agent.*.inbox"
    assert subj.EVENTS.render(source="alpha", type="task.completed") == "legion.events.alpha.task.completed"
    assert subj.EVENTS.wildcard(source="alpha") == "legion.events.alpha.>"
    assert subj.EVENTS.parse("legion.events.alpha.task.completed") == {"source": "alpha", "type": "task.completed"}
    assert subj.EVENTS.parse("legion.events.alpha") is None
    assert subj.EVENTS.parse("legion.ext.alpha.x") is None
    assert subj.AGENT_INBOX.parse("legion.agent.alpha.inbox.extra") is None
    assert subj.event_type_of("task.completed.v1") == "task.completed"


@pytest.mark.parametrize("agent", ["*", ">", "a.b", "", "a b"])
def test_rendering_refuses_wildcards_and_dots_in_tokens(agent: str) -> None:
    with pytest.raises(c.ConfigError):
        subj.AGENT_INBOX.render(agent=agent)


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a.", "a.*.b", "a.>", "a b"])
def test_publish_subject_validation(bad: str) -> None:
    with pytest.raises(c.ConfigError):
        subj.validate_publish_subject(bad)


def test_json_schemas_cover_every_contract_and_validate_tags(tmp_path: Path) -> None:
    files = c.write_schemas(tmp_path)
    index = json.loads((tmp_path / "index.json").read_text())
    assert set(index["contracts"]) == set(c.contracts())
    assert len(files) == len(c.contracts()) + 1
    schema = json.loads((tmp_path / "task.assign.v1.json").read_text())
    body = schema["$defs"]["AssignTask"]
    assert body["properties"]["type"] == {"enum": ["task.assign.v1"]}
    assert {"task_id", "text"} <= set(body["required"])


def test_messages_are_frozen() -> None:
    msg = c.TaskStarted(task_id="t", agent="a")
    with pytest.raises(AttributeError):
        msg.task_id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.TaskStarted("t", "a")  # type: ignore[misc]
    assert msgspec.structs.replace(msg, task_id="u").task_id == "u"
