"""THE rule that names every secret's environment variable. The vault reads keys by it, the console
writes ``.env`` by it, the launcher hands the vault exactly the variables it matches, and
``legion doctor`` checks them by it: one rule, so the four can never disagree.

Two kinds, one variable each:

- ``system``: a provider key named by ``models.<alias>.key``, in ``LEGION_SYSTEM_<NAME>``;
- ``credential``: an agent-tier credential listed in ``agents.<agent>.credentials``, in ``LEGION_CRED_<NAME>``.

``<NAME>`` is the name upper-cased, every character a shell cannot export (``-``, ``.``) as ``_``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal

from legion.contracts.errors import ConfigError
from legion.contracts.names import NAME_PATTERN

__all__ = [
    "CRED_PREFIX",
    "PREFIXES",
    "SECRET_PREFIXES",
    "SYSTEM_PREFIX",
    "SecretKind",
    "env_var",
    "secret_environ",
    "validate_secret_name",
]

SecretKind = Literal["system", "credential"]
SYSTEM_PREFIX: Final = "LEGION_SYSTEM_"
CRED_PREFIX: Final = "LEGION_CRED_"
SECRET_PREFIXES: Final = (SYSTEM_PREFIX, CRED_PREFIX)
PREFIXES: Final[dict[SecretKind, str]] = {"system": SYSTEM_PREFIX, "credential": CRED_PREFIX}
_NOT_ENV = re.compile(r"[^A-Z0-9_]")
_RULE = (
    "must match [a-z0-9_-]{1,64} (lower-case letters, digits, '_' or '-'), "
    "because it becomes part of an environment variable (e.g. openai -> LEGION_SYSTEM_OPENAI)"
)


def validate_secret_name(name: str) -> str:
    if NAME_PATTERN.fullmatch(name) is None:
        lowered = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:64]
        hint = f"; try {lowered!r}" if lowered and NAME_PATTERN.fullmatch(lowered) else ""
        raise ConfigError(f"secret name {name!r} is invalid: it {_RULE}{hint}")
    return name


def env_var(name: str, kind: SecretKind) -> str:
    """``openai`` -> ``LEGION_SYSTEM_OPENAI``; ``github-token`` -> ``LEGION_CRED_GITHUB_TOKEN``."""
    return PREFIXES[kind] + _NOT_ENV.sub("_", name.upper())


def secret_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The secret variables of ``environ`` (what only the vault may be given)."""
    return {k: v for k, v in environ.items() if k.startswith(SECRET_PREFIXES)}
