"""An actor process hardens itself: private files, not dumpable, secrets read from stdin (never the
environment). Each check runs in a real child process, as an actor would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = """
import json, os, pathlib, sys
from legion.runtime.host.hardening import not_dumpable, private_files, read_secrets
private_files()
path = pathlib.Path(sys.argv[1])
path.write_text("x")
secrets = read_secrets()
print(json.dumps({"dumpable_off": not_dumpable(), "mode": oct(path.stat().st_mode & 0o777),
                  "secrets": dict(secrets), "in_environ": "LEGION_SYSTEM_X" in os.environ}))
"""


def _child(tmp: str, *, stdin: bytes | None, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, os.path.join(tmp, "f")],
        input=stdin,
        capture_output=True,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **env},
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_secrets_come_on_stdin_files_are_private_and_the_process_is_not_dumpable(tmp_path: os.PathLike[str]) -> None:
    out = _child(
        str(tmp_path), stdin=json.dumps({"LEGION_SYSTEM_X": "sk-1"}).encode(), env={"LEGION_SECRETS_ON_STDIN": "1"}
    )
    assert out == {"dumpable_off": True, "mode": "0o600", "secrets": {"LEGION_SYSTEM_X": "sk-1"}, "in_environ": False}


def test_started_by_hand_the_environment_is_the_source(tmp_path: os.PathLike[str]) -> None:
    out = _child(str(tmp_path), stdin=None, env={"LEGION_SYSTEM_X": "sk-2"})
    secrets = out["secrets"]
    assert isinstance(secrets, dict) and secrets["LEGION_SYSTEM_X"] == "sk-2"
