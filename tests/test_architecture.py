"""The layer graph, third-party edges, subject literals, private imports and public exports
(STYLE.md 1, 2, 9; LAYOUT.md). Every check reads the real tree: a test first asserts it found it."""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "legion"
LAYERS = ["contracts", "broker", "runtime", "actors", "cli"]  # each may import only those before it
# inside runtime: config <- host, kinds <- fleet; clients use the broker only
RUNTIME = {
    "config": {"config"},
    "clients": {"clients", "config"},
    "host": {"host", "config"},
    "kinds": {"kinds", "config"},
    "fleet": {"fleet", "config", "host", "kinds", "clients"},
}
THIRD_PARTY = {  # package -> where it may be imported (path prefixes relative to legion/)
    "typer": ("cli/",),
    "rich": ("cli/",),
    "litellm": ("actors/vault/",),
    "aiohttp.web": ("testing/",),
}
CONSOLE_FORBIDDEN = ("typer", "rich")
BUILTIN_ERRORS = {"Exception", "BaseException", "ValueError", "RuntimeError", "KeyError", "TypeError"}


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


@cache
def _imports(path: Path) -> frozenset[str]:
    """Every absolute module name ``path`` imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return frozenset(found)


def _legion_parts(path: Path) -> set[tuple[str, ...]]:
    return {tuple(m.split(".")[1:]) for m in _imports(path) if m.startswith("legion.")}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_tree_is_where_the_checks_look() -> None:
    assert (ROOT / "runtime" / "kinds.py").is_file(), ROOT
    assert len(_modules()) > 100


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_one_way(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    bad = []
    for path in (ROOT / layer).rglob("*.py"):
        wrong = {parts[0] for parts in _legion_parts(path) if parts} - allowed
        if wrong:
            bad.append(f"{_rel(path)} imports legion.{sorted(wrong)}")
    assert not bad, "imports must point contracts <- broker <- runtime <- actors <- cli:\n" + "\n".join(bad)


def test_runtime_parts_point_one_way() -> None:
    """config <- host, kinds <- fleet: the fleet reaches actor kinds only through the registry."""
    bad = []
    for part, allowed in RUNTIME.items():
        base = ROOT / "runtime" / part
        files = list(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
        for path in files:
            used = {p[1] for p in _legion_parts(path) if len(p) > 1 and p[0] == "runtime"}
            if used - allowed:
                bad.append(f"{_rel(path)} imports legion.runtime.{sorted(used - allowed)}")
    assert not bad, "\n".join(bad)


def test_actor_packages_never_import_each_other() -> None:
    kinds = [p.name for p in (ROOT / "actors").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert {"agent", "vault", "ledger", "scheduler"} <= set(kinds)
    bad = []
    for kind in kinds:
        for path in (ROOT / "actors" / kind).rglob("*.py"):
            others = {p[1] for p in _legion_parts(path) if len(p) > 1 and p[0] == "actors"} - {kind}
            if others:
                bad.append(f"{_rel(path)} imports legion.actors.{sorted(others)}")
    assert not bad, "\n".join(bad)


def test_no_layer_imports_the_test_kit() -> None:
    bad = [
        _rel(p)
        for layer in LAYERS
        for p in (ROOT / layer).rglob("*.py")
        if ("testing",) in {x[:1] for x in _legion_parts(p)}
    ]
    assert not bad


@pytest.mark.parametrize("package", sorted(THIRD_PARTY))
def test_third_party_edges(package: str) -> None:
    allowed = THIRD_PARTY[package]
    bad = [
        _rel(p)
        for p in _modules()
        if any(m == package or m.startswith(package + ".") for m in _imports(p)) and not _rel(p).startswith(allowed)
    ]
    assert not bad, f"{package} may be imported only under {allowed}: {bad}"


def test_the_console_returns_data_and_never_renders() -> None:
    bad = [
        _rel(p)
        for p in (ROOT / "cli" / "console").rglob("*.py")
        if any(m.split(".")[0] in CONSOLE_FORBIDDEN for m in _imports(p))
        or any(parts[:1] == ("cli",) and parts[1:2] != ("console",) for parts in _legion_parts(p))
    ]
    assert not bad, f"cli/console imports typer, rich or the commands: {bad}"


def test_no_module_imports_a_private_name_of_another() -> None:
    bad = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("legion"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    bad.append(f"{_rel(path)}: from {node.module} import {', '.join(private)}")
    assert not bad, "\n".join(bad)


def test_subject_literals_only_in_contracts() -> None:
    pattern = re.compile(r"""["']legion\.(agent|vault|events|ledger|ext|stream|control|health|svc)\.""")
    bad = [
        _rel(p)
        for p in _modules()
        if "contracts" not in p.relative_to(ROOT).parts and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert not bad, f"build subjects from legion.contracts.subjects templates: {bad}"


def test_every_error_derives_from_the_one_root() -> None:
    """Every exception class Legion defines is a LegionError (control flow: its Refused branch)."""
    bad = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or node.name == "LegionError":
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            if bases and bases <= BUILTIN_ERRORS:
                bad.append(f"{_rel(path)}: {node.name}")
    assert not bad, f"derive from LegionError (legion/contracts/errors.py): {bad}"


PUBLIC = {
    "legion.contracts.errors": {
        "ConcurrencyConflict",
        "ConfigError",
        "ContractError",
        "LegionError",
        "NotFound",
        "PermissionDenied",
        "QuotaExceeded",
        "Refused",
        "RequestTimeout",
        "Unavailable",
    },
    "legion.runtime": {
        "AgentConfig",
        "FleetConfig",
        "FleetHealth",
        "FleetNats",
        "NatsConfig",
        "load_config",
        "state_dir_of",
    },
    "legion.runtime.kinds": {
        "ENTRY_POINT_GROUP",
        "ActorKind",
        "FleetActor",
        "KindContext",
        "fleet_actors",
        "kind_streams",
        "load_kinds",
        "singleton",
    },
    "legion.runtime.fleet.backends": {
        "BACKENDS",
        "ActorRef",
        "ActorSpec",
        "Backend",
        "ProcessBackend",
        "RunningActor",
        "backend_for",
    },
    "legion.runtime.clients": {
        "DECLARED_BY",
        "LEDGER_SERVICE",
        "SCHEDULER_SERVICE",
        "LedgerClient",
        "LedgerUnavailable",
        "ScheduleAdmin",
        "SchedulerClient",
        "SyncReport",
        "sync_declared",
    },
    "legion.runtime.host": {
        "CONFIG_EXIT",
        "Actor",
        "ActorFactory",
        "ActorHost",
        "Context",
        "HostSpec",
        "Route",
        "ServiceSpec",
        "actor_args",
        "handler",
        "routes_of",
        "run_actor_process",
    },
    "legion.broker.reader": {"ReadSpec", "StreamReader", "read_all"},
    "legion.testing": {
        "AgentHandle",
        "FakeLlmServer",
        "LlmErrorReply",
        "NatsTestServer",
        "RecordedRequest",
        "Reply",
        "ScriptedResponse",
        "TestFleet",
        "ToolCall",
        "read_stream",
    },
    "legion.actors.ledger": {
        "SERVICE",
        "Alert",
        "Budgets",
        "Decision",
        "Entry",
        "FeedSpec",
        "Ledger",
        "LedgerSpec",
        "LedgerState",
        "LedgerStore",
        "Limits",
        "ReplayStats",
        "Reservation",
        "Snapshot",
        "StreamFeed",
        "StreamRecord",
        "entry_of",
        "ledger_db_path",
        "ledger_factory",
        "ledger_host_spec",
        "ledger_permissions",
    },
}
SUBSET = {  # large public surfaces pinned by their core names (every listed name must exist)
    "legion.contracts": {"AssignTask", "Codec", "PermissionDenied", "UnknownEvent", "decode", "encode", "subjects"},
    "legion.broker": {"Broker", "EmbeddedNats", "FleetAuth", "PullConsumer", "provision", "agent_permissions"},
    "legion.actors.vault": {"Vault", "VaultSpec", "ProviderKeys", "host_spec", "vault_permissions", "identify_caller"},
    "legion.actors.agent": {"Agent", "AgentSpec", "skill", "ToolError", "ToolContext", "MemoryStore", "Workspace"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_exports_are_pinned_exactly(module: str) -> None:
    """A missing name and an unplanned new one both fail: change the list on purpose."""
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ lists missing {name}"


@pytest.mark.parametrize("module", sorted(SUBSET))
def test_core_exports_exist(module: str) -> None:
    mod = importlib.import_module(module)
    assert SUBSET[module] <= set(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ lists missing {name}"


def test_the_registry_holds_legions_own_kinds_in_start_order() -> None:
    from legion.runtime.kinds import load_kinds  # noqa: PLC0415 - the registry reads installed entry points

    kinds = load_kinds()
    assert list(kinds)[:3] == ["ledger", "vault", "scheduler"] and list(kinds)[-1] == "agent"
    assert kinds["agent"].account == "AGENTS" and kinds["scheduler"].account == "LEGION"
    assert kinds["ledger"].stage < kinds["vault"].stage < kinds["scheduler"].stage < kinds["agent"].stage
