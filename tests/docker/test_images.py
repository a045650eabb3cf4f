"""The images of deploy/ and the isolation a hardened agent container gets, checked from inside the
container against a real Docker engine (no mocks).

The images are built once per session by ``deploy/build.py`` (reused when present). Every network and
container is named with a uuid and removed at the end. Traffic goes only to the containers these tests
start, to the host through the gateway address of the network they create (which must fail) and to
169.254.169.254 with one TCP connect of 1 s (which must fail).

Uses the Docker SDK (``docker``, already a runtime dependency, and what the Docker backend will use),
not testcontainers: the checks need internal networks with driver options, another runtime, the OOM
state and ``docker export``, for which testcontainers only hands back the same SDK objects.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

docker = pytest.importorskip("docker")

POLL_S = 0.1  # between two reads of a container's log while waiting (bounded) for a line

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
AGENT_UID = 10001
PIDS_LIMIT = 128
HARDENED: dict[str, Any] = {
    "user": f"{AGENT_UID}:{AGENT_UID}",
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "read_only": True,
    "tmpfs": {"/tmp": ""},
    "mem_limit": "256m",
    "memswap_limit": "256m",
    "pids_limit": PIDS_LIMIT,
}
PROBE_PRELUDE = """
import json, os, socket, sys, time
def tcp(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return "connected " + s.recv(8).decode("ascii", "replace")
    except OSError as e:
        return "refused" if isinstance(e, ConnectionRefusedError) else type(e).__name__
"""


@dataclass(frozen=True, slots=True)
class Images:
    base: str
    agent: str
    nats: str


@dataclass(frozen=True, slots=True)
class Net:
    name: str
    gateway: str


@dataclass(frozen=True, slots=True)
class Ran:
    exit_code: int
    out: str
    oom_killed: bool

    def json(self) -> dict[str, Any]:
        assert self.exit_code == 0, f"probe exited {self.exit_code}: {self.out}"
        result: dict[str, Any] = json.loads(self.out.strip().splitlines()[-1])
        return result


@pytest.fixture(scope="session")
def client() -> Iterator[Any]:
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine reachable ({exc}); start one with: sudo .ci/docker-setup")
    yield c
    c.close()


@pytest.fixture(scope="session")
def images(client: Any) -> Images:
    """deploy/build.py, as a user runs it; it reuses every image whose inputs have not changed."""
    done = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "build.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, f"deploy/build.py failed:\n{done.stdout}\n{done.stderr}"
    tags = json.loads(done.stdout.strip().splitlines()[-1])
    return Images(base=tags["base"], agent=tags["agent"], nats=tags["nats"])


def _network(client: Any, *, bridge_ip: bool) -> Iterator[Net]:
    options = {} if bridge_ip else {"com.docker.network.bridge.inhibit_ipv4": "true"}
    net = client.networks.create(
        f"legion-test-{uuid.uuid4().hex[:12]}", driver="bridge", internal=True, options=options
    )
    try:
        net.reload()
        yield Net(net.name, net.attrs["IPAM"]["Config"][0]["Gateway"])
    finally:
        net.remove()


@pytest.fixture(scope="module")
def network(client: Any) -> Iterator[Net]:
    """What agents get: internal (no route out) and no address of the host on the bridge."""
    yield from _network(client, bridge_ip=False)


@pytest.fixture(scope="module")
def plain_internal(client: Any) -> Iterator[Net]:
    """``docker network create --internal`` alone: the host holds the gateway address."""
    yield from _network(client, bridge_ip=True)


@pytest.fixture(scope="module")
def nats(client: Any, images: Images, network: Net, plain_internal: Net) -> Iterator[str]:
    """A nats-server container reachable as ``nats`` on both test networks."""
    container = client.containers.run(
        images.nats,
        ["-js", "-sd", "/data", "-p", "4222"],
        name=f"legion-test-nats-{uuid.uuid4().hex[:12]}",
        detach=True,
        network=network.name,
        read_only=True,
        tmpfs={"/data": "uid=10002"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    try:
        for net in (network.name, plain_internal.name):  # containers.run() sets no alias: attach again
            with contextlib.suppress(docker.errors.APIError):
                client.networks.get(net).disconnect(container)
            client.networks.get(net).connect(container, aliases=["nats"])
        deadline = time.monotonic() + 30
        while b"Server is ready" not in container.logs():
            assert time.monotonic() < deadline, f"nats-server not ready in 30 s:\n{container.logs().decode()}"
            time.sleep(POLL_S)
        yield container.name
    finally:
        container.remove(force=True)


def run(client: Any, image: str, code: str, network: str, **options: Any) -> Ran:
    """Run ``python -c code`` in a hardened container (options override), wait, remove it."""
    kwargs = {**HARDENED, **options}
    container = client.containers.run(
        image,
        entrypoint=["python", "-c", PROBE_PRELUDE + code],
        name=f"legion-test-probe-{uuid.uuid4().hex[:12]}",
        detach=True,
        network=network,
        **kwargs,
    )
    try:
        status = container.wait(timeout=120)
        container.reload()
        out = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return Ran(int(status["StatusCode"]), out, bool(container.attrs["State"]["OOMKilled"]))
    finally:
        container.remove(force=True)


@contextlib.contextmanager
def host_listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP listener on all of the host's addresses (so also on a bridge's gateway address) that
    records who connected; it stops when the block ends."""
    accepted: list[str] = []
    srv = socket.create_server(("0.0.0.0", 0))  # all addresses: the point is to be reachable if anything is
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, peer = srv.accept()
                accepted.append(peer[0])
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        srv.close()


# -- the images -----------------------------------------------------------------------------------------
def test_agent_image_runs_as_10001_with_no_capabilities_and_no_shell(client: Any, images: Images, network: Net) -> None:
    result = run(
        client,
        images.agent,
        """
st = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
def write(path):
    try:
        open(path, "w").close()
        return "written"
    except OSError as e:
        return e.strerror
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "cap_eff": st["CapEff"].strip(),
    "no_new_privs": st["NoNewPrivs"].strip(), "sh": os.path.exists("/bin/sh") or os.path.exists("/usr/bin/sh"),
    "root_fs": write("/opt/legion/probe"), "tmp": write("/tmp/probe")}))
""",
        network.name,
    ).json()
    assert result == {
        "uid": AGENT_UID,
        "gid": AGENT_UID,
        "cap_eff": "0000000000000000",
        "no_new_privs": "1",
        "sh": False,
        "root_fs": "Read-only file system",
        "tmp": "written",
    }


def test_agent_image_entrypoint_is_the_agent_actor(client: Any, images: Images) -> None:
    attrs = client.images.get(images.agent).attrs["Config"]
    assert attrs["Entrypoint"] == ["/opt/legion/bin/python", "-m", "legion.actors.agent"]
    assert attrs["User"] == f"{AGENT_UID}:{AGENT_UID}"
    out = client.containers.run(images.agent, ["--help"], remove=True, network_mode="none", **HARDENED)
    assert b"--fleet-dir" in out


def test_nats_image_holds_only_the_server(client: Any, images: Images) -> None:
    container = client.containers.create(images.nats, name=f"legion-test-export-{uuid.uuid4().hex[:12]}")
    try:
        data = b"".join(container.export())
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name for m in tar.getmembers() if m.isfile() and m.size > 0}
    assert files == {"nats-server"}


# -- the network ----------------------------------------------------------------------------------------
def test_agent_reaches_nats_on_the_internal_network(client: Any, images: Images, network: Net, nats: str) -> None:
    result = run(client, images.agent, 'print(json.dumps({"nats": tcp("nats", 4222)}))', network.name).json()
    assert result["nats"].startswith("connected INFO")


def test_agent_cannot_reach_the_host_through_the_gateway(client: Any, images: Images, network: Net, nats: str) -> None:
    with host_listener() as (port, accepted):
        code = f'print(json.dumps({{"host": tcp("{network.gateway}", {port}), "nats": tcp("nats", 4222)}}))'
        result = run(client, images.agent, code, network.name).json()
    assert result["nats"].startswith("connected"), "the probe must work for its refusals to mean something"
    assert not result["host"].startswith("connected")
    assert accepted == []


def test_plain_internal_network_exposes_the_host(client: Any, images: Images, plain_internal: Net, nats: str) -> None:
    """Why agents' networks set inhibit_ipv4: with ``--internal`` alone the host holds the gateway
    address, and a container reaches every service the host listens with on all addresses."""
    with host_listener() as (port, accepted):
        code = f'print(json.dumps({{"host": tcp("{plain_internal.gateway}", {port})}}))'
        result = run(client, images.agent, code, plain_internal.name).json()
    assert result["host"].startswith("connected"), (
        "the host's INPUT chain filters the bridge: update docs/containers.md"
    )
    assert len(accepted) == 1


def test_agent_cannot_reach_the_metadata_address(client: Any, images: Images, network: Net) -> None:
    result = run(client, images.agent, 'print(json.dumps({"md": tcp("169.254.169.254", 80)}))', network.name).json()
    assert not result["md"].startswith("connected")


def test_agent_has_no_docker_socket(client: Any, images: Images, network: Net) -> None:
    code = 'print(json.dumps([p for p in ("/var/run/docker.sock", "/run/docker.sock") if os.path.exists(p)]))'
    assert run(client, images.agent, code, network.name).json() == []


# -- resources ------------------------------------------------------------------------------------------
FORK_BOMB = """
kids, err = 0, None
for _ in range(1000):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.strerror
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    kids += 1
print(json.dumps({"kids": kids, "err": err}))
"""


def test_fork_bomb_is_bounded_by_the_pids_limit(client: Any, images: Images, network: Net) -> None:
    result = run(client, images.agent, FORK_BOMB, network.name).json()
    assert result["kids"] < PIDS_LIMIT
    assert result["err"] == "Resource temporarily unavailable"


def test_allocating_past_the_memory_limit_is_oom_killed(client: Any, images: Images, network: Net) -> None:
    code = """
chunks = []
for i in range(64):
    chunks.append(bytearray(16 << 20))
    print((i + 1) * 16, flush=True)
"""
    ran = run(client, images.agent, code, network.name)
    assert ran.exit_code == 137
    assert ran.oom_killed
    assert int(ran.out.split()[-1]) < 256


# -- gVisor ---------------------------------------------------------------------------------------------
def test_gvisor_agent_reaches_nats_and_not_the_host(client: Any, images: Images, network: Net, nats: str) -> None:
    """gVisor with --network=host inside the netns Docker made (see docs/containers.md)."""
    if "runsc-hostnet" not in client.info().get("Runtimes", {}):
        pytest.skip("runtime runsc-hostnet not registered (sudo .ci/docker-setup --runsc)")
    with host_listener() as (port, accepted):
        code = f"""print(json.dumps({{"nats": tcp("nats", 4222), "host": tcp("{network.gateway}", {port}),
    "kernel": open("/proc/version").read()}}))"""
        result = run(client, images.agent, code, network.name, runtime="runsc-hostnet").json()
    assert result["nats"].startswith("connected INFO")
    assert not result["host"].startswith("connected")
    assert accepted == []
    assert "4.4.0" in result["kernel"]  # gVisor's Sentry answers, not the host's kernel
