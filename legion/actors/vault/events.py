"""The vault's own event: a refused LLM call (ModelCalled, in legion.contracts, records the calls made).

Kept here until it moves to ``legion/contracts/vault.py`` with the other vault contracts.
"""

from __future__ import annotations

from legion.contracts.base import Event

__all__ = ["LlmRefused"]


class LlmRefused(Event, frozen=True, kw_only=True, tag="llm.refused.v1"):
    """A call the vault refused before reaching a model. ``code``: denied, policy, invalid, budget, provider.

    ``agent`` is the agent of the subject; ``claimed`` what the server said the caller is (``name_tag``
    of its JWT), which differs from ``agent`` when someone asked as another agent.
    """

    request_id: str
    agent: str
    model: str = ""
    code: str
    reason: str
    claimed: str = ""
