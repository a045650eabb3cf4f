"""An agent's session record: every step of a task or chat, kept where the agent can read it back.

Each step is appended twice, concurrently: as a :class:`SessionStep` event on
``legion.events.<agent>.agent.step`` (the audit trail everyone can tail and replay) and as a value
in the agent's private KV bucket ``ag_<agent>`` under ``<session>.<step:06d>`` (the projection the
agent itself reads back on restart: agents may not create consumers on EVENTS, see DESIGN.md 3 and
5). Both writes carry the same ``Nats-Msg-Id``, so a retried append is stored once.

If the process dies between the two writes, the KV copy decides what is replayed; the event may be
missing (or, past the duplicate window, appear twice for one step number). Readers of the audit
trail key steps by (session, step).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Final

import msgspec

from legion.broker import Broker, agent_state_bucket
from legion.contracts import subjects as subj
from legion.contracts.agent_events import SessionStep, StepKind
from legion.contracts.codec import encode
from legion.contracts.errors import LegionError

__all__ = ["SessionLog", "chat_session", "task_session"]

_SAFE = re.compile(r"[A-Za-z0-9_-]{1,80}")
_STEP_DIGITS = 6
_LOAD_TIMEOUT_S = 10.0
_STATUS: Final = "Status"
_SEQUENCE: Final = "Nats-Sequence"
_KV_OP: Final = "KV-Operation"
_decoder = msgspec.json.Decoder(SessionStep)


def _token(value: str) -> str:
    """A KV-key-safe token for a task or chat id (ids are chosen by whoever sends the work)."""
    if _SAFE.fullmatch(value):
        return value
    return "h" + hashlib.sha256(value.encode()).hexdigest()[:32]


def task_session(task_id: str) -> str:
    return f"task.{_token(task_id)}"


def chat_session(session: str) -> str:
    return f"chat.{_token(session)}"


@dataclass(slots=True)
class SessionLog:
    broker: Broker
    agent: str

    @property
    def bucket(self) -> str:
        return agent_state_bucket(self.agent)

    def _key(self, session: str, step: int) -> str:
        return f"{session}.{step:0{_STEP_DIGITS}d}"

    async def append(self, session: str, step: int, kind: StepKind, data: dict[str, object], *, trace: str) -> None:
        record = SessionStep(agent=self.agent, session=session, step=step, kind=kind, data=dict(data))
        msg_id = f"{self.agent}:{session}:{step}"
        payload, _ = encode(record)
        kv_subject = f"$KV.{self.bucket}.{self._key(session, step)}"
        event_subject = subj.EVENTS.render(source=self.agent, type="agent.step")
        await asyncio.gather(
            self.broker.js_publish(kv_subject, payload, trace=trace, msg_id=msg_id),
            self.broker.js_publish(event_subject, record, trace=trace, msg_id=msg_id),
        )

    async def load(self, session: str) -> list[SessionStep]:
        """Every recorded step of ``session`` in order, read from the agent's own bucket.

        Direct gets only (``{"seq": n, "next_by_subj": "$KV.ag_<agent>.<session>.>"}``, one round trip
        per step): agents may not create consumers (a push consumer's deliver subject could point
        anywhere in the LEGION account; see docs/security.md).
        """
        api = f"{self.broker.js_api_prefix}.DIRECT.GET.KV_{self.bucket}"
        wanted = f"$KV.{self.bucket}.{session}.>"
        steps: list[SessionStep] = []
        seq = 1
        while True:
            body = msgspec.json.encode({"seq": seq, "next_by_subj": wanted})
            msg = await self.broker.request_raw(api, body, timeout=_LOAD_TIMEOUT_S)
            hdrs = msg.headers or {}
            status = hdrs.get(_STATUS)
            if status == "404":
                break
            if status:
                raise LegionError(
                    f"reading {session} from {self.bucket} failed: {status} {hdrs.get('Description', '')}; "
                    "was the fleet provisioned by `legion up`?"
                )
            seq = int(hdrs[_SEQUENCE]) + 1
            if msg.data and hdrs.get(_KV_OP) not in ("DEL", "PURGE"):
                steps.append(_decoder.decode(msg.data))
        steps.sort(key=lambda s: s.step)
        return steps
