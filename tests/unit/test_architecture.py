"""Layering, subject literals and public exports (STYLE.md 1, 2 and 9)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "legion"
LAYERS = ["contracts", "broker", "runtime", "actors", "cli"]  # each may import only those before it
TOOLS = {"testing"}  # the test kit may import any layer; no layer may import it


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m.split(".")[1] for m in found if m.startswith("legion.") and m.count(".") >= 1}


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_one_way(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    bad = []
    for path in (ROOT / layer).rglob("*.py"):
        wrong = _imports(path) - allowed
        if wrong:
            bad.append(f"{path.relative_to(ROOT)} imports legion.{sorted(wrong)}")
    assert not bad, "imports must point contracts <- broker <- runtime <- actors <- cli:\n" + "\n".join(bad)


def test_no_layer_imports_the_test_kit() -> None:
    bad = [str(p) for layer in LAYERS for p in (ROOT / layer).rglob("*.py") if _imports(p) & TOOLS]
    assert not bad


def test_subject_literals_only_in_contracts() -> None:
    pattern = re.compile(r"""["']legion\.(agent|vault|events|ledger|ext|stream|control|health|svc)\.""")
    bad = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if "contracts" not in p.relative_to(ROOT).parts and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert not bad, f"build subjects from legion.contracts.subjects templates: {bad}"


PUBLIC = {
    "legion.contracts": {"AssignTask", "Codec", "PermissionDenied", "UnknownEvent", "decode", "encode", "subjects"},
    "legion.broker": {"Broker", "EmbeddedNats", "FleetAuth", "PullConsumer", "provision", "agent_permissions"},
    "legion.testing": {"NatsTestServer", "TestFleet", "FakeLlmServer", "Reply", "LlmErrorReply", "ToolCall"},
    "legion.runtime": {"FleetConfig", "FleetNats", "load_config"},
    "legion.actors.vault": {"Vault", "VaultSpec", "ProviderKeys", "host_spec", "vault_permissions", "identify_caller"},
    "legion.actors.agent": {"Agent", "AgentSpec", "skill", "ToolError", "ToolContext", "MemoryStore", "Workspace"},
    "legion.actors.ledger": {"Ledger", "LedgerSpec", "Budgets", "ledger_host_spec", "ledger_permissions"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_exports_are_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    exported = set(mod.__all__)
    assert PUBLIC[module] <= exported
    for name in exported:
        assert hasattr(mod, name), f"{module}.__all__ lists missing {name}"
