"""Which mechanism isolates an agent *process* (no container) on this machine: run as root,
``python3 tools/sandbox_study.py``; prints one table (results are in docs/containers.md).

A fake fleet in a temporary directory: ``keys/accounts.json`` and ``.env`` (root, 0600), one creds
file and one workspace per agent. A "beta" agent process holds a secret in its environment, and so does
this launcher. A probe runs as agent "alpha" under each mechanism and tries to read what it must not,
to write what it must, to signal beta, and to connect to two loopback listeners of this script: "nats"
(allowed) and "other" (a stand-in for any other local service). Traffic: 127.0.0.1 only.

Mechanisms: the process backend today (same uid as the launcher); a uid per agent (setuid/setgid,
0700/0400 files owned by that uid); bubblewrap (``bwrap``, Debian) as root, and started under the
agent's uid (user namespace); Landlock (ctypes, no package) on top of a uid per agent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ALPHA, BETA = 20001, 20002
PYTHON = "/usr/bin/python3"  # the agent's uid must be able to run it: pyenv's lives under /root (0700)

PROBE = r"""
import ctypes, json, os, signal, socket, struct, sys
cfg = json.loads(sys.argv[1])
def read(p):
    try:
        with open(p, "rb") as f:
            f.read(1)
        return "READ"
    except OSError as e:
        return e.strerror
def write(p):
    try:
        with open(p, "w") as f:
            f.write("x")
        return "WROTE"
    except OSError as e:
        return e.strerror
def tcp(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return "CONNECTED"
    except OSError as e:
        return e.strerror or type(e).__name__
def sig(pid):
    try:
        os.kill(pid, 0)
        return "SIGNALLED"
    except OSError as e:
        return e.strerror
if cfg.get("landlock"):
    libc = ctypes.CDLL(None, use_errno=True)
    R = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read_file, read_dir
    W = sum(1 << b for b in (1, *range(4, 15)))  # write_file, remove_*, make_*, refer, truncate
    abi = libc.syscall(444, None, 0, 1)
    fs = R | W | ((1 << 15) if abi >= 5 else 0)  # W includes refer (13) and truncate (14); 15: ioctl_dev
    net = 2  # LANDLOCK_ACCESS_NET_CONNECT_TCP (bind is not handled: not needed here)
    scoped = 3 if abi >= 6 else 0  # abstract unix sockets and signals stay within the domain
    attr = struct.pack("QQQ", fs, net, scoped)
    rs = libc.syscall(444, attr, len(attr), 0)
    assert rs >= 0, os.strerror(ctypes.get_errno())
    def allow(path, access):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = struct.pack("=Qi", access, fd)
        assert libc.syscall(445, rs, 1, rule, 0) == 0, (path, os.strerror(ctypes.get_errno()))
        os.close(fd)
    for p in ("/usr", "/etc"):
        allow(p, R)
    for p in ("/dev/null", "/dev/urandom"):
        allow(p, (1 << 1) | (1 << 2))  # a file takes only file rights: write_file, read_file
    allow(cfg["creds"], (1 << 2))
    allow(cfg["own_ws"], R | W)
    port = struct.pack("=QQ", 2, cfg["nats"])
    assert libc.syscall(445, rs, 2, port, 0) == 0, os.strerror(ctypes.get_errno())
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    assert libc.syscall(446, rs, 0) == 0, os.strerror(ctypes.get_errno())
try:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
except OSError as e:
    pids = e.strerror
print(json.dumps({
    "uid": os.getuid(),
    "keys/accounts.json": read(cfg["keys"]),
    ".env": read(cfg["env"]),
    "own creds": read(cfg["creds"]),
    "beta creds": read(cfg["beta_creds"]),
    "own workspace": write(cfg["own_ws"] + "/" + cfg["name"]),
    "beta workspace": read(cfg["beta_ws"] + "/f"),
    "beta environ": read(f"/proc/{cfg['beta_pid']}/environ"),
    "launcher environ": read(f"/proc/{cfg['launcher_pid']}/environ"),
    "signal beta": sig(cfg["beta_pid"]),
    "sees beta": pids if isinstance(pids, str) else ("yes" if cfg["beta_pid"] in pids else "no"),
    "tcp nats": tcp(cfg["nats"]),
    "tcp other": tcp(cfg["other"]),
}))
"""


def listener() -> int:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.5)

    def serve() -> None:
        for _ in range(400):  # bounded: about 200 s
            try:
                srv.accept()[0].close()
            except TimeoutError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    port: int = srv.getsockname()[1]
    return port


def fleet(root: Path) -> dict[str, str]:
    for d in ("keys", ".legion/creds", "work/alpha", "work/beta"):
        (root / d).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    (root / "keys").chmod(0o700)
    for path, owner, mode in (
        ("keys/accounts.json", 0, 0o600),
        (".env", 0, 0o600),
        (".legion/creds/alpha.creds", ALPHA, 0o400),
        (".legion/creds/beta.creds", BETA, 0o400),
        ("work/beta/f", BETA, 0o600),
    ):
        (root / path).write_text("secret\n")
        os.chown(root / path, owner, owner)
        (root / path).chmod(mode)
    for d, owner in (("work/alpha", ALPHA), ("work/beta", BETA)):
        os.chown(root / d, owner, owner)
        (root / d).chmod(0o700)
    (root / ".legion").chmod(0o755)
    (root / ".legion/creds").chmod(0o711)  # traversable, not listable: each agent opens its own file
    return {
        "keys": str(root / "keys/accounts.json"),
        "env": str(root / ".env"),
        "creds": str(root / ".legion/creds/alpha.creds"),
        "beta_creds": str(root / ".legion/creds/beta.creds"),
        "own_ws": str(root / "work/alpha"),
        "beta_ws": str(root / "work/beta"),
    }


def as_uid(uid: int) -> dict[str, object]:
    return {"user": uid, "group": uid, "extra_groups": []}


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("run as root: the study switches uids")
    os.environ["LAUNCHER_SECRET"] = "launcher-secret"  # noqa: S105 - a marker to find, not a password
    with tempfile.TemporaryDirectory(prefix="legion-sandbox-") as tmp:
        root = Path(tmp) / "fleet"
        cfg: dict[str, object] = dict(fleet(root))
        Path(tmp).chmod(0o755)
        beta = subprocess.Popen(
            [PYTHON, "-c", "import sys; sys.stdin.read()"],
            stdin=subprocess.PIPE,
            env={"BETA_SECRET": "beta-secret"},
            **as_uid(BETA),  # type: ignore[arg-type]
        )
        cfg.update(beta_pid=beta.pid, launcher_pid=os.getpid(), nats=listener(), other=listener())
        bwrap = shutil.which("bwrap")
        hide = ["--tmpfs", str(root)]  # the fleet dir is empty inside; then bind back what the agent needs
        keep = ["--ro-bind", str(cfg["creds"]), str(cfg["creds"]), "--bind", str(cfg["own_ws"]), str(cfg["own_ws"])]
        bw = [bwrap or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]  # noqa: S108 - a tmpfs inside the sandbox
        bw += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", *hide, *keep]
        runs: list[tuple[str, list[str], dict[str, object], dict[str, object]]] = [
            ("same uid as launcher (today)", [], {}, {}),
            ("uid per agent", [], as_uid(ALPHA), {}),
            ("bwrap as root", bw, {}, {}),
            ("bwrap under agent uid (userns)", [*bw, "--unshare-user"], as_uid(ALPHA), {}),
            ("landlock, same uid", [], {}, {"landlock": True}),
            ("uid per agent + landlock", [], as_uid(ALPHA), {"landlock": True}),
        ]
        rows = []
        for name, prefix, opts, extra in runs:
            done = subprocess.run(
                [*prefix, PYTHON, "-c", PROBE, json.dumps({**cfg, **extra, "name": f"probe{len(rows)}"})],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                env={"PATH": "/usr/bin:/bin"},
                **opts,  # type: ignore[arg-type]
            )
            if done.returncode != 0:
                rows.append((name, {"error": done.stderr.strip().splitlines()[-1:]}))
            else:
                rows.append((name, json.loads(done.stdout)))
        beta.communicate(b"", timeout=5)
    keys = [k for k in rows[0][1] if k != "uid"]
    print("| check | " + " | ".join(name for name, _ in rows) + " |")
    print("|---" * (len(rows) + 1) + "|")
    for k in ["uid", *keys]:
        print(f"| {k} | " + " | ".join(str(r.get(k, r.get("error", "?"))) for _, r in rows) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
