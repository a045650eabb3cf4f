"""What an actor process does to itself before it holds anything worth stealing.

- :func:`private_files`: umask 077, so every file and directory an actor (or the launcher, or the
  CLI) creates under ``.legion/`` and in the workspaces is 0600/0700: another local user reads
  none of it.
- :func:`not_dumpable`: ``prctl(PR_SET_DUMPABLE, 0)``. The kernel then refuses other processes of
  the same uid ``/proc/<pid>/environ``, ``/proc/<pid>/mem`` and ptrace on this one (root still can).
  The vault calls it before it reads a key.
- :func:`read_secrets`: the secrets the backend handed over on stdin (never in the environment,
  where ``/proc/<pid>/environ`` would show them to anyone who may read the process's files).

Hand-written with ctypes rather than a dependency (python-prctl): one call, no compiled extension.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import sys
from collections.abc import Mapping
from typing import Final

from legion.contracts.errors import ConfigError

__all__ = ["SECRETS_ON_STDIN", "not_dumpable", "private_files", "read_secrets"]

SECRETS_ON_STDIN: Final = "LEGION_SECRETS_ON_STDIN"
"""Set to 1 by a backend that writes the actor's secrets to its stdin as one JSON object."""
_PR_SET_DUMPABLE: Final = 4
_PR_GET_DUMPABLE: Final = 3


def private_files() -> None:
    os.umask(0o077)


def not_dumpable() -> bool:
    """Make this process non-dumpable; True if the kernel agreed (Linux), False elsewhere."""
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        return False
    return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)


@functools.cache
def read_secrets() -> Mapping[str, str]:
    """The secrets on stdin (once; stdin is closed after), or the environment's when the actor was
    started by hand without them (``python -m legion.actors.vault`` in a shell)."""
    if os.environ.get(SECRETS_ON_STDIN) != "1":
        return dict(os.environ)
    raw = sys.stdin.buffer.read()
    sys.stdin.close()
    try:
        value = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ConfigError(f"the secrets on stdin are not a JSON object: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError("the secrets on stdin must be one JSON object of strings")
    return value
