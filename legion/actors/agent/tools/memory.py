"""memory_save and memory_search: the model's long-term memory, over a :class:`MemoryStore`.

Saving the same fact twice is harmless (the store keeps one copy and bumps it), so a call repeated
after a crash does no damage. Searching is exempt from the tool-loop detector: looking something
up several times in a row is normal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import Field

from legion.actors.agent.memory import MemoryHit, MemoryStore
from legion.actors.agent.tools.base import Params, Tool, ToolContext, ToolError

__all__ = ["FACT_CAP", "MemorySaveParams", "MemorySearchParams", "memory_tools"]

FACT_CAP: Final = 2_000
"""Characters of one saved fact; a fact is a sentence or two, not a document."""
GROUP: Final = "memory"


class MemorySaveParams(Params):
    fact: str = Field(
        min_length=1,
        max_length=FACT_CAP,
        description="One durable fact worth remembering in later sessions, as a self-contained sentence.",
    )
    tags: list[Annotated[str, Field(max_length=50)]] = Field(
        default_factory=list, max_length=10, description="Optional short keywords."
    )


class MemorySearchParams(Params):
    query: str = Field(min_length=1, max_length=1_000, description="Words to look for; plain text, no syntax.")
    limit: int = Field(default=5, ge=1, le=20, description="How many facts to return at most.")


def memory_tools(store: MemoryStore) -> list[Tool]:
    """The two memory tools, both in group ``"memory"``, sharing ``store``."""

    async def save(params: MemorySaveParams, ctx: ToolContext) -> dict[str, Any]:
        try:
            hit = await store.save(params.fact, tags=params.tags, source=f"{ctx.agent}:{ctx.session}")
        except ValueError as exc:
            raise ToolError("invalid_args", f"{exc}; give the fact as readable text") from exc
        return {"saved": True, "id": hit.id, "already_known": hit.save_count > 1}

    async def search(params: MemorySearchParams, ctx: ToolContext) -> dict[str, Any]:
        hits = await store.search(params.query, limit=params.limit)
        return {"results": [_render(h) for h in hits]}

    return [
        Tool(
            name="memory_save",
            description=(
                "Save a durable fact (a user preference, a decision, a name, where something lives) to long-term "
                "memory so it can be found in later sessions. Saving the same fact again is harmless. "
                "Never save secrets."
            ),
            params=MemorySaveParams,
            run=save,
            side_effects=True,
            group=GROUP,
        ),
        Tool(
            name="memory_search",
            description=(
                "Search long-term memory for facts saved earlier, by keywords. Returns the best matches, "
                "most relevant and recently used first; an empty list means nothing matched."
            ),
            params=MemorySearchParams,
            run=search,
            loop_exempt=True,
            group=GROUP,
        ),
    ]


def _render(hit: MemoryHit) -> dict[str, Any]:
    saved = datetime.fromtimestamp(hit.created, UTC).isoformat(timespec="seconds")
    return {"id": hit.id, "fact": hit.text, "tags": list(hit.tags), "saved_at": saved}
