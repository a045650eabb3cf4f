"""Custom skills: discovered from a directory, described to the model, called through the ToolSet."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from legion.actors.agent.tools.base import ToolContext, ToolResult, ToolSet
from legion.actors.agent.tools.skills import discover_skills, skill
from legion.contracts.errors import ConfigError

WORDS = '''
from legion.actors.agent.tools.skills import skill


@skill
def word_count(text: str, unique: bool = False) -> int:
    """Count the words in a text.

    Longer explanation the model does not need.

    Args:
        text: The text to count,
            over several lines.
        unique (bool): Count distinct words only.

    Returns:
        The number of words.
    """
    words = text.split()
    return len(set(words) if unique else words)


def helper(x):
    return x
'''

CONTEXT = '''
import asyncio

from legion.actors.agent.tools.base import ToolContext, ToolError
from legion.actors.agent.tools.skills import skill


@skill(name="who-am-i", description="Say which agent calls.", side_effects=True)
async def whoami(ctx: ToolContext, greeting: str = "hi") -> dict:
    await asyncio.sleep(0)
    return {"greeting": greeting, "agent": ctx.agent}


@skill
def lookup(key: str, context: ToolContext) -> str:
    """Look a key up."""
    if key != "known":
        raise ToolError("not_found", f"no key {key!r}; try 'known'")
    return "value\\u200b\\U000e0041"
'''


PING = '''
from legion.actors.agent.tools.skills import skill


@skill
def ping() -> str:
    """Ping."""
    return "pong"
'''


def write(skills_dir: Path, name: str, source: str) -> None:
    path = skills_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")


async def call(tools: ToolSet, name: str, args: dict[str, Any], workspace: Path) -> ToolResult:
    ctx = ToolContext(agent="coder", session="s1", call_key="coder:s1:1:0", workspace=workspace)
    return await tools.call(name, json.dumps(args), ctx)


@pytest.fixture
def skills_dir(tmp_path: Path) -> Path:
    path = tmp_path / "skills"
    path.mkdir()
    return path


def test_schema_comes_from_signature_and_docstring(skills_dir: Path) -> None:
    write(skills_dir, "words.py", WORDS)
    (tool,) = discover_skills(skills_dir)
    function = tool.schema()["function"]
    assert function["name"] == "word_count"
    assert function["description"] == "Count the words in a text."
    params = function["parameters"]
    assert params["required"] == ["text"]
    assert params["additionalProperties"] is False
    assert params["properties"]["text"]["description"] == "The text to count, over several lines."
    assert params["properties"]["unique"]["description"] == "Count distinct words only."
    assert params["properties"]["unique"]["default"] is False
    assert (tool.group, tool.side_effects) == ("skills", False)


async def test_sync_skill_is_called_with_validated_arguments(skills_dir: Path, tmp_path: Path) -> None:
    write(skills_dir, "words.py", WORDS)
    tools = ToolSet.of(discover_skills(skills_dir))
    result = await call(tools, "word_count", {"text": "a b a", "unique": True}, tmp_path)
    assert (result.ok, result.content) == (True, "2")
    assert (await call(tools, "word_count", {"text": "a b a"}, tmp_path)).content == "3"


async def test_unknown_and_missing_arguments_are_refused(skills_dir: Path, tmp_path: Path) -> None:
    write(skills_dir, "words.py", WORDS)
    tools = ToolSet.of(discover_skills(skills_dir))
    extra = await call(tools, "word_count", {"text": "a", "lang": "en"}, tmp_path)
    assert extra.error_code == "invalid_args"
    assert "lang" in extra.content
    assert (await call(tools, "word_count", {}, tmp_path)).error_code == "invalid_args"


async def test_async_skill_gets_the_context_which_the_model_does_not_see(skills_dir: Path, tmp_path: Path) -> None:
    write(skills_dir, "ctx.py", CONTEXT)
    tools = ToolSet.of(discover_skills(skills_dir))
    tool = tools.get("who-am-i")
    assert tool is not None
    assert (tool.description, tool.side_effects) == ("Say which agent calls.", True)
    assert set(tool.schema()["function"]["parameters"]["properties"]) == {"greeting"}
    result = await call(tools, "who-am-i", {}, tmp_path)
    assert json.loads(result.content) == {"greeting": "hi", "agent": "coder"}


async def test_a_tool_error_reaches_the_model_typed(skills_dir: Path, tmp_path: Path) -> None:
    write(skills_dir, "ctx.py", CONTEXT)
    tools = ToolSet.of(discover_skills(skills_dir))
    lookup = tools.get("lookup")
    assert lookup is not None
    assert set(lookup.schema()["function"]["parameters"]["properties"]) == {"key"}  # context injected by type
    result = await call(tools, "lookup", {"key": "other"}, tmp_path)
    assert result.error_code == "not_found"
    assert "try 'known'" in json.loads(result.content)["message"]


async def test_invisible_unicode_is_stripped_from_skill_results(skills_dir: Path, tmp_path: Path) -> None:
    write(skills_dir, "ctx.py", CONTEXT)
    result = await call(ToolSet.of(discover_skills(skills_dir)), "lookup", {"key": "known"}, tmp_path)
    assert result.content == "value"


def test_private_files_and_unmarked_functions_are_skipped(skills_dir: Path) -> None:
    write(skills_dir, "words.py", WORDS)
    write(skills_dir, "_private.py", "raise RuntimeError('never imported')")
    write(skills_dir, "_lib/util.py", "raise RuntimeError('never imported')")
    write(skills_dir, "nested/more.py", PING)
    assert [t.name for t in discover_skills(skills_dir)] == ["ping", "word_count"]


def test_a_skill_bound_to_two_names_is_listed_once(skills_dir: Path) -> None:
    write(skills_dir, "words.py", WORDS)
    write(skills_dir, "again.py", PING + "\nalias = ping\n")
    assert sorted(t.name for t in discover_skills(skills_dir)) == ["ping", "word_count"]


def test_all_problems_are_reported_in_one_config_error(skills_dir: Path) -> None:
    write(skills_dir, "broken.py", "import no_such_module_anywhere\n")
    write(
        skills_dir,
        "untyped.py",
        "from legion.actors.agent.tools.skills import skill\n\n@skill\ndef f(x):\n    '''F.'''\n",
    )
    write(skills_dir, "words.py", WORDS)
    write(skills_dir, "words_again.py", WORDS)
    with pytest.raises(ConfigError) as info:
        discover_skills(skills_dir)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "broken.py: failed to import (ModuleNotFoundError" in message
    assert "untyped.py: f(): parameter 'x' has no type hint; add one" in message
    assert "words_again.py: word_count(): the skill name 'word_count' is already used by words.py" in message


def test_a_skill_without_description_is_a_config_error(skills_dir: Path) -> None:
    write(
        skills_dir,
        "bare.py",
        "from legion.actors.agent.tools.skills import skill\n\n@skill\ndef bare(x: int) -> int:\n    return x\n",
    )
    with pytest.raises(ConfigError, match=r"bare\.py: bare\(\): has no description; add a docstring"):
        discover_skills(skills_dir)


def test_a_bad_skill_name_is_a_config_error(skills_dir: Path) -> None:
    write(skills_dir, "bad.py", PING.replace("@skill", "@skill(name='has space')"))
    with pytest.raises(ConfigError, match="must match"):
        discover_skills(skills_dir)


def test_a_missing_skills_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        discover_skills(tmp_path / "nope")


def test_the_decorator_leaves_the_function_callable() -> None:
    @skill
    def double(x: int) -> int:
        """Double."""
        return 2 * x

    @skill(name="triple")
    def three(x: int) -> int:
        """Triple."""
        return 3 * x

    assert (double(2), three(2)) == (4, 6)
