"""Secrets in ``<fleet>/.env``: the provider keys and agent credentials the vault reads at start.

Two kinds, one variable each, named by the fleet's one rule (:mod:`legion.runtime.config.secrets`,
which the vault reads by too):

- ``system``: a provider key named by ``models.<alias>.key``, in ``LEGION_SYSTEM_<NAME>``;
- ``credential``: an agent-tier credential listed in ``agents.<agent>.credentials``, in ``LEGION_CRED_<NAME>``.

The file is created with mode 0600 and put back to 0600 if it is looser. Other lines and comments
stay as they are; a change is written to a new file that replaces the old one.

Why ``dotenv.parser`` (python-dotenv's parser module, which its docs do not cover) and not its
documented ``set_key`` / ``unset_key``: those drop the blank lines the parser attaches to the front
of a replaced or removed binding, so a user's layout changes (tests/cli/test_vault_cmds.py,
"other lines stay"). The parser has kept this interface since 0.10; python-dotenv is pinned below 2
in pyproject.toml, and the vault reads with the documented ``dotenv_values``. No function here
returns, prints or logs a value: only names, kinds and whether a value is set.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from dotenv.parser import Binding, parse_stream

from legion.cli.console.hints import hint
from legion.contracts.errors import ConfigError
from legion.runtime.config import FleetConfig, load_config
from legion.runtime.config.secrets import (
    CRED_PREFIX,
    PREFIXES,
    SYSTEM_PREFIX,
    SecretKind,
    env_var,
    validate_secret_name,
)

__all__ = [
    "CRED_PREFIX",
    "ENV_FILE",
    "OFFLINE_MODEL",
    "SYSTEM_PREFIX",
    "Reference",
    "SecretChange",
    "SecretInfo",
    "SecretKind",
    "add_secret",
    "env_var",
    "list_secrets",
    "references",
    "remove_secret",
    "restart_hint",
    "secure_env_file",
    "validate_secret_name",
]

OFFLINE_MODEL: Final = "legion/offline"
"""The vault's built-in offline model (``legion.actors.vault.offline``): it needs no key."""
ENV_FILE: Final = ".env"
MODE: Final = 0o600


def restart_hint(fleet_dir: Path) -> str:
    """What to run for the vault to read a changed ``.env``."""
    return f"restart the vault for it to pick the change up: `{hint('restart vault', fleet_dir)}`"


@dataclass(frozen=True, slots=True)
class SecretInfo:
    name: str
    kind: SecretKind
    env_var: str
    in_env_file: bool
    in_environment: bool
    referenced_by: tuple[str, ...]
    """``model <alias>`` or ``agent <name>`` entries of legion.yaml that use it."""

    @property
    def is_set(self) -> bool:
        return self.in_env_file or self.in_environment


@dataclass(frozen=True, slots=True)
class SecretChange:
    name: str
    kind: SecretKind
    env_var: str
    path: Path
    replaced: bool = False
    warnings: tuple[str, ...] = ()


# -- the file ------------------------------------------------------------------------------------
def secure_env_file(path: Path) -> str | None:
    """Put ``path`` back to mode 0600 if it is looser; returns the warning to show, or None."""
    if not path.exists():
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 == 0:
        return None
    path.chmod(MODE)
    return f"{path} was readable by others (mode {mode:04o}); set it to 0600"


def _bindings(path: Path) -> list[Binding]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return list(parse_stream(f))


def _leading_blank(text: str) -> str:
    """The blank lines the parser attached to the front of a binding (kept when it is replaced)."""
    return text[: len(text) - len(text.lstrip("\r\n"))]


def _write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a new 0600 file in the same directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    path.chmod(MODE)


def _quoted(value: str) -> str:
    """A single-quoted dotenv value (python-dotenv unescapes ``\\\\`` and ``\\'`` in it)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_value(value: str) -> str:
    value = value.removesuffix("\n").removesuffix("\r")
    if not value.strip():
        raise ConfigError("the secret is empty; nothing was written")
    if any(c in value for c in "\n\r\0"):
        raise ConfigError("the secret holds a line break or NUL; a secret is one line")
    return value


# -- legion.yaml ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reference:
    name: str
    """As legion.yaml spells it."""
    kind: SecretKind
    users: tuple[str, ...]
    """``model <alias>`` or ``agent <name>``."""


def references(config: FleetConfig) -> dict[str, Reference]:
    """Environment variable -> what legion.yaml says needs it (offline models need no key)."""
    found: dict[str, tuple[str, SecretKind, list[str]]] = {}
    for alias, model in config.models.items():
        if model.key and model.model.strip().lower() != OFFLINE_MODEL:
            found.setdefault(env_var(model.key, "system"), (model.key, "system", []))[2].append(f"model {alias}")
    for agent, cfg in config.agents.items():
        for name in cfg.credentials:
            found.setdefault(env_var(name, "credential"), (name, "credential", []))[2].append(f"agent {agent}")
    return {var: Reference(name=n, kind=k, users=tuple(u)) for var, (n, k, u) in found.items()}


def _kind_of(name: str, config: FleetConfig | None) -> SecretKind:
    """Default kind: ``credential`` if legion.yaml uses ``name`` only as an agent credential, else ``system``."""
    if config is None:
        return "system"
    refs = references(config)
    if env_var(name, "credential") in refs and env_var(name, "system") not in refs:
        return "credential"
    return "system"


def _config_or_none(fleet_dir: Path) -> FleetConfig | None:
    try:
        return load_config(fleet_dir)
    except ConfigError:
        return None


# -- commands -----------------------------------------------------------------------------------------
def add_secret(
    fleet_dir: Path, name: str, value: str, *, kind: SecretKind | None = None, force: bool = False
) -> SecretChange:
    """Write ``name`` into ``<fleet>/.env``; replacing an existing value needs ``force``."""
    validate_secret_name(name)
    value = _check_value(value)
    kind = kind or _kind_of(name, _config_or_none(fleet_dir))
    var = env_var(name, kind)
    path = fleet_dir / ENV_FILE
    warning = secure_env_file(path)
    bindings = _bindings(path)
    line = f"{var}={_quoted(value)}\n"
    parts: list[str] = []
    replaced = False
    for b in bindings:
        if b.key == var:
            if replaced:
                continue  # a duplicate: the new value is the only one
            if not force:
                raise ConfigError(f"{var} is already set in {path}; pass --force to replace it")
            parts.append(_leading_blank(b.original.string) + line)
            replaced = True
        else:
            parts.append(b.original.string)
    if not replaced:
        if parts and not parts[-1].endswith("\n"):
            parts.append("\n")
        parts.append(line)
    _write(path, "".join(parts))
    return SecretChange(
        name=name, kind=kind, env_var=var, path=path, replaced=replaced, warnings=(warning,) if warning else ()
    )


def remove_secret(fleet_dir: Path, name: str, *, kind: SecretKind | None = None) -> SecretChange:
    """Remove ``name`` from ``<fleet>/.env`` (both kinds are looked for unless ``kind`` is given)."""
    validate_secret_name(name)
    path = fleet_dir / ENV_FILE
    warning = secure_env_file(path)
    bindings = _bindings(path)
    present = {b.key for b in bindings if b.key}
    kinds: list[SecretKind] = [kind] if kind else ["system", "credential"]
    found = [k for k in kinds if env_var(name, k) in present]
    if not found:
        wanted = " or ".join(env_var(name, k) for k in kinds)
        raise ConfigError(f"no {wanted} in {path}; see `legion vault ls`")
    if len(found) > 1:
        raise ConfigError(
            f"both {env_var(name, 'system')} and {env_var(name, 'credential')} are in {path}; "
            "say which with --system or --credential"
        )
    var = env_var(name, found[0])
    kept = [b.original.string if b.key != var else _leading_blank(b.original.string) for b in bindings]
    _write(path, "".join(kept))
    return SecretChange(name=name, kind=found[0], env_var=var, path=path, warnings=(warning,) if warning else ())


def list_secrets(
    fleet_dir: Path, *, config: FleetConfig | None = None, environ: Mapping[str, str] | None = None
) -> tuple[list[SecretInfo], list[str]]:
    """Every secret named by legion.yaml or present in ``.env`` (never a value), and warnings."""
    env = os.environ if environ is None else environ
    path = fleet_dir / ENV_FILE
    warnings = [w for w in (secure_env_file(path),) if w]
    in_file = {b.key for b in _bindings(path) if b.key and b.value}
    refs = references(config) if config is not None else {}
    names: dict[str, tuple[str, SecretKind]] = {var: (ref.name, ref.kind) for var, ref in refs.items()}
    for var in in_file - set(refs):
        for kind, prefix in PREFIXES.items():
            if var.startswith(prefix) and var != prefix:
                names[var] = (var.removeprefix(prefix).lower(), kind)
    out = [
        SecretInfo(
            name=name,
            kind=kind,
            env_var=var,
            in_env_file=var in in_file,
            in_environment=bool(env.get(var)),
            referenced_by=refs[var].users if var in refs else (),
        )
        for var, (name, kind) in names.items()
    ]
    return sorted(out, key=lambda s: (s.kind, s.name)), warnings
