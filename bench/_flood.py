"""The flooding agent of ``fairness_bench.py``, as its own process so that its work never shares the
measuring probe's event loop:

    python bench/_flood.py URL CREDS AGENT N MODEL [once]

Connects with the agent's credential and keeps N LLM calls outstanding on ``legion.vault.<agent>.llm``:
every answered call (reply or refusal) is sent again at once (with ``once``: N calls at once, none
sent again). Prints ``ready`` once N are out, then
reads commands on stdin: ``mark`` (snapshot the counts), ``stop`` (send no more, wait until every
outstanding call is answered, so the vault is idle again, print the counts from the mark to the stop
as one JSON line and exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections import Counter
from pathlib import Path

from legion.broker import Broker, ConnectSpec
from legion.contracts import LlmError, LlmReply, LlmRequest, decode, encode
from legion.contracts import subjects as subj
from legion.contracts.errors import LegionError

TIMEOUT_S = 120.0


async def flood(url: str, creds: Path, agent: str, n: int, model: str, *, once: bool) -> None:
    broker = await Broker.connect(ConnectSpec(url=url, creds=creds, name=f"flood-{agent}"))
    subject = subj.VAULT_LLM.render(agent=agent)
    counts: Counter[str] = Counter()
    outstanding = 0
    low = n
    stopping = asyncio.Event()

    async def one() -> None:
        nonlocal outstanding, low
        while not stopping.is_set():
            req = LlmRequest(request_id=uuid.uuid4().hex, model=model, messages=[{"role": "user", "content": "go"}])
            data, headers = encode(req)
            outstanding += 1
            try:
                msg = await broker.request_raw(subject, data, headers=headers, timeout=TIMEOUT_S)
                reply = decode(msg.data, msg.headers)
                counts[
                    "reply" if isinstance(reply, LlmReply) else reply.code if isinstance(reply, LlmError) else "?"
                ] += 1
            except LegionError as exc:
                counts[type(exc).__name__] += 1
            finally:
                outstanding -= 1
            if not stopping.is_set():
                low = min(low, outstanding)
            if once:
                return

    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(one())
        await asyncio.sleep(0)
        print("ready", flush=True)
        mark: Counter[str] = Counter()
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "mark":
                mark, low = Counter(counts), outstanding
            elif line in ("stop", ""):
                window = {k: counts[k] - mark[k] for k in counts}
                report = {"answered": window, "outstanding_low": low, "outstanding_at_stop": outstanding}
                stopping.set()  # no more calls; wait for the outstanding ones, so the vault is idle again
                break
    print(json.dumps(report), flush=True)
    await broker.close()


if __name__ == "__main__":
    url, creds, agent, n, model = sys.argv[1:6]
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C of the benchmark reaches this process too
        asyncio.run(flood(url, Path(creds), agent, int(n), model, once=sys.argv[6:7] == ["once"]))
