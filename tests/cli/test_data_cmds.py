"""`legion costs` and `legion bb ...` against a real fleet: embedded nats-server and a real ledger."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from legion.actors.ledger import Ledger, LedgerSpec, ledger_host_spec, ledger_permissions
from legion.broker import Broker, ConnectSpec
from legion.contracts import Commit, LedgerAck, Reserve, Reserved
from legion.contracts import subjects as subj
from legion.runtime import FleetNats
from legion.runtime.host.actor_host import ActorHost

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]

LEGION = [sys.executable, "-m", "legion"]


def _run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEGION, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


async def _arun(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_run, *args, cwd=cwd)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[FleetNats]:
    (tmp_path / "legion.yaml").write_text("agents:\n  alpha: {projects: [p1]}\n  beta: {projects: [p1]}\n")
    nats = FleetNats(tmp_path)
    await nats.start()
    try:
        yield nats
    finally:
        await nats.stop()


@pytest.fixture
async def ledger(fleet: FleetNats) -> AsyncIterator[Broker]:
    """The real ledger actor serving legion.svc.ledger.* on the fleet; yields the admin connection."""
    creds = fleet.auth.issue_service("ledger", ledger_permissions("ledger"), expires_in=None, replace=True)
    broker = await Broker.connect(ConnectSpec(url=fleet.url, creds=creds, name="ledger"))
    actor = Ledger("ledger", LedgerSpec(db_path=fleet.state_dir / "ledger" / "ledger.db"))
    host = ActorHost(actor, broker, ledger_host_spec())
    run = asyncio.create_task(host.run())
    try:
        await asyncio.wait_for(host.ready.wait(), 30)
        assert fleet.admin is not None
        yield fleet.admin
    finally:
        host.stop()
        with contextlib.suppress(Exception):
            await run
        await broker.close()


async def _spend(admin: Broker, agent: str, usd: str, *, model: str = "m", project: str = "p1") -> None:
    rid = uuid.uuid4().hex
    reserve = Reserve(reservation_id=rid, agent=agent, project=project, estimate_usd=Decimal(usd))
    reserved = await admin.request(subj.SERVICE.render(service="ledger", op="reserve"), reserve, timeout=10)
    assert isinstance(reserved, Reserved) and reserved.granted, reserved
    commit = Commit(
        reservation_id=rid,
        agent=agent,
        project=project,
        model=model,
        actual_usd=Decimal(usd),
        prompt_tokens=100,
        completion_tokens=20,
    )
    ack = await admin.request(subj.SERVICE.render(service="ledger", op="commit"), commit, timeout=10)
    assert isinstance(ack, LedgerAck) and ack.ok, ack


# -- costs ----------------------------------------------------------------------------------------------
async def test_costs_json_reports_the_ledgers_rows_and_total(fleet: FleetNats, ledger: Broker) -> None:
    await _spend(ledger, "alpha", "0.25")
    await _spend(ledger, "alpha", "0.50")
    await _spend(ledger, "beta", "1.5", model="big")
    await _spend(ledger, "alpha", "0", model="offline")  # a zero-cost call (the offline model) still counts

    result = await _arun("costs", "--json", cwd=fleet.fleet_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Decimal(report["total_usd"]) == Decimal("2.25")
    rows = {(r["agent"], r["model"]): r for r in report["rows"]}
    assert Decimal(rows["alpha", "m"]["cost_usd"]) == Decimal("0.75")
    assert rows["alpha", "m"]["calls"] == 2
    assert rows["alpha", "m"]["prompt_tokens"] == 200
    assert (Decimal(rows["alpha", "offline"]["cost_usd"]), rows["alpha", "offline"]["calls"]) == (Decimal(0), 1)
    assert len(rows["beta", "big"]["period"]) == 10, "by day: YYYY-MM-DD"

    monthly = json.loads(
        (await _arun("costs", "--agent", "beta", "--by", "month", "--json", cwd=fleet.fleet_dir)).stdout
    )
    [row] = monthly["rows"]
    assert (row["agent"], len(row["period"]), Decimal(monthly["total_usd"])) == ("beta", 7, Decimal("1.5"))
    other = json.loads((await _arun("costs", "--project", "nope", "--json", cwd=fleet.fleet_dir)).stdout)
    assert other == {"rows": [], "total_usd": "0"}


async def test_costs_prints_a_table_with_totals(fleet: FleetNats, ledger: Broker) -> None:
    await _spend(ledger, "alpha", "0.125")
    await _spend(ledger, "beta", "0.375")
    result = await _arun("-C", str(fleet.fleet_dir), "costs", cwd=fleet.fleet_dir.parent)
    assert result.returncode == 0, result.stderr
    assert "alpha" in result.stdout and "beta" in result.stdout
    [total] = [line for line in result.stdout.splitlines() if "total" in line]
    assert "0.500" in total and " 2 " in total and " 200 " in total and " 40 " in total


async def test_costs_says_the_fleet_is_not_running_and_exits_1(tmp_path: Path) -> None:
    never = tmp_path / "never"
    never.mkdir()
    result = await _arun("costs", cwd=never)
    assert result.returncode == 1
    assert "not running" in result.stderr and "legion up" in result.stderr

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    nats = FleetNats(stopped)
    await nats.start()
    await nats.stop()  # .legion/nats.url stays behind, pointing at nothing
    result = await _arun("costs", cwd=stopped)
    assert result.returncode == 1
    assert "not running" in result.stderr


async def test_costs_without_a_ledger_says_so(fleet: FleetNats) -> None:
    result = await _arun("costs", cwd=fleet.fleet_dir)
    assert result.returncode == 1
    assert "ledger does not answer" in result.stderr


# -- blackboard ---------------------------------------------------------------------------------------------
async def test_bb_put_get_ls_history_round_trip(fleet: FleetNats, tmp_path: Path) -> None:
    cwd = fleet.fleet_dir
    put = await _arun("bb", "put", "tasks.t1", '{"state": "open", "n": 1}', "--json", cwd=cwd)
    assert put.returncode == 0, put.stderr
    first = json.loads(put.stdout)
    assert (first["key"], first["project"]) == ("tasks.t1", "p1"), "the fleet's only project is the default"
    again = await _arun("bb", "put", "tasks.t1", "just words", cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert "tasks.t1: revision" in again.stdout
    (tmp_path / "v.json").write_text("[1, 2, 3]")
    from_file = await _arun("bb", "put", "tasks.t2", f"@{tmp_path / 'v.json'}", "--project", "p1", cwd=cwd)
    assert from_file.returncode == 0, from_file.stderr

    got = json.loads((await _arun("bb", "get", "tasks.t1", "--json", cwd=cwd)).stdout)
    assert got["value"] == "just words", "plain text is stored as a JSON string"
    assert got["revision"] > first["revision"]
    plain = await _arun("bb", "get", "tasks.t2", cwd=cwd)
    assert json.loads(plain.stdout) == [1, 2, 3]
    assert "revision" in plain.stderr

    assert fleet.admin is not None
    kv = await fleet.admin.js.key_value("bb_p1")
    assert json.loads((await kv.get("tasks.t1")).value) == "just words", "agents read the same JSON"
    await kv.put("notes", b'"x"')

    listed = json.loads((await _arun("bb", "ls", "tasks", "--json", cwd=cwd)).stdout)
    assert listed["keys"] == ["tasks.t1", "tasks.t2"]
    everything = await _arun("bb", "ls", cwd=cwd)
    assert everything.stdout.split() == ["notes", "tasks.t1", "tasks.t2"]

    history = await _arun("bb", "history", "tasks.t1", "--json", cwd=cwd)
    revisions = [json.loads(line) for line in history.stdout.splitlines()]
    assert [r["value"] for r in revisions] == [{"state": "open", "n": 1}, "just words"]


@pytest.mark.parametrize("key", ["tasks.*", "tasks.>", "a..b", ".a", "has space"])
async def test_bb_refuses_wildcards_and_bad_keys(fleet: FleetNats, key: str) -> None:
    result = await _arun("bb", "put", key, "1", cwd=fleet.fleet_dir)
    assert result.returncode == 2
    assert "dotted tokens" in result.stderr


async def test_bb_get_of_a_missing_key_says_so(fleet: FleetNats) -> None:
    result = await _arun("bb", "get", "nothing.here", cwd=fleet.fleet_dir)
    assert result.returncode == 2
    assert "no key 'nothing.here'" in result.stderr


def test_bb_needs_project_when_the_fleet_has_several(tmp_path: Path) -> None:
    (tmp_path / "legion.yaml").write_text("projects: [p1, p2]\n")
    result = _run("bb", "ls", cwd=tmp_path)
    assert result.returncode == 2
    assert "p1, p2" in result.stderr and "--project" in result.stderr
    unknown = _run("bb", "ls", "--project", "p9", cwd=tmp_path)
    assert unknown.returncode == 2 and "p9" in unknown.stderr


async def test_bb_watch_prints_changes_until_terminated(fleet: FleetNats) -> None:
    proc = await asyncio.create_subprocess_exec(
        *LEGION,
        "bb",
        "watch",
        "tasks",
        "--json",
        cwd=fleet.fleet_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"watching bb_p1 tasks" in ready
        assert fleet.admin is not None
        kv = await fleet.admin.js.key_value("bb_p1")
        await kv.put("other", b"1")  # not under tasks: not printed
        await kv.put("tasks.t7", b'{"n": 7}')
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))
        assert (line["key"], line["value"], line["operation"]) == ("tasks.t7", {"n": 7}, "PUT")
        await kv.delete("tasks.t7")
        gone = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))
        assert (gone["key"], gone["operation"]) == ("tasks.t7", "DEL")
    finally:
        if proc.returncode is None:
            proc.terminate()
        code = await asyncio.wait_for(proc.wait(), 15)
    assert code == 0


async def test_doctor_sees_the_running_fleet_on_its_port(fleet: FleetNats) -> None:
    result = await _arun("doctor", cwd=fleet.fleet_dir)
    [line] = [line for line in result.stdout.splitlines() if "nats port" in line]
    assert line.startswith("ok") and "this fleet's running server" in line, line


# -- the whole path: a real vault process answers with the offline model, the real ledger bills 0 ----------
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_an_offline_model_call_through_the_launched_fleet_shows_in_costs(tmp_path: Path) -> None:
    from legion.contracts import LlmReply, LlmRequest  # noqa: PLC0415
    from legion.runtime.fleet import Launcher, SupervisorSpec  # noqa: PLC0415 - only this test needs it

    (tmp_path / "legion.yaml").write_text(
        "models:\n  local: {model: legion/offline}\nagents:\n  alpha: {model: local, projects: [p1]}\n"
    )
    launcher = Launcher(tmp_path, spec=SupervisorSpec(backoff_s=(0.2,)))
    try:
        await launcher.start()
        agent = await Broker.connect(
            ConnectSpec(url=launcher.fleet.url, creds=tmp_path / ".legion" / "creds" / "alpha.creds", name="alpha")
        )
        try:
            req = LlmRequest(request_id=uuid.uuid4().hex, model="local", messages=[{"role": "user", "content": "hi"}])
            reply = await agent.request(subj.VAULT_LLM.render(agent="alpha"), req, timeout=30)
        finally:
            await agent.close()
        assert isinstance(reply, LlmReply), reply
        assert reply.content is not None and reply.content.startswith("[offline model] ")
        assert "You said: hi." in reply.content

        result = await _arun("costs", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        [row] = report["rows"]
        assert (row["agent"], row["project"], row["model"], row["calls"]) == ("alpha", "p1", "local", 1)
        assert Decimal(row["cost_usd"]) == Decimal(0) == Decimal(report["total_usd"])
        assert row["completion_tokens"] == reply.completion_tokens > 0
    finally:
        await launcher.stop()
