"""``legion init``: write a working fleet from a template (legion.yaml, each agent's workspace files,
a .gitignore that keeps .legion/ and .env out of git). Templates live in ``legion/cli/console/templates``."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from legion.contracts.errors import ConfigError
from legion.runtime.config import CONFIG_NAME, load_config

__all__ = ["TEMPLATES", "InitReport", "InitSpec", "init_fleet"]

TEMPLATES = ("starter", "devteam", "research", "monitor")
_COMMON_WORKSPACE = ("SOUL.md", "USER.md", "MEMORY.md")  # every agent gets these; templates add the rest
_IGNORED = (".legion/", ".env")


@dataclass(frozen=True, slots=True)
class InitSpec:
    fleet_dir: Path
    template: str = "starter"
    force: bool = False  # overwrite legion.yaml and the template's files


@dataclass(slots=True)
class InitReport:
    fleet_dir: Path
    template: str
    agents: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # paths relative to fleet_dir
    kept: list[str] = field(default_factory=list)  # existing files left alone (no --force)


def _templates() -> Traversable:
    return resources.files("legion.cli.console") / "templates"


def _walk(node: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            out.extend(_walk(child, rel + "/"))
        elif child.is_file():
            out.append((rel, child))
    return out


def _render(text: str, agent: str, role: str) -> str:
    return text.replace("{agent}", agent).replace("{role}", role or "an agent of this fleet.")


def init_fleet(spec: InitSpec) -> InitReport:
    """Write ``spec.template`` into ``spec.fleet_dir``. An existing legion.yaml is an error unless
    ``force``; other existing files are kept unless ``force``; .gitignore gets the missing lines."""
    if spec.template not in TEMPLATES:
        raise ConfigError(f"unknown template {spec.template!r}; choose one of: {', '.join(TEMPLATES)}")
    root = spec.fleet_dir
    config_path = root / CONFIG_NAME
    if config_path.exists() and not spec.force:
        raise ConfigError(
            f"{config_path} already exists; pass --force to overwrite it with the {spec.template} template"
        )
    src = _templates() / spec.template
    yaml_text = (src / CONFIG_NAME).read_text(encoding="utf-8")
    agents: dict[str, dict[str, object]] = (yaml.safe_load(yaml_text) or {}).get("agents") or {}
    files: dict[str, str] = {CONFIG_NAME: yaml_text}
    common = _templates() / "_common"
    for name, cfg in agents.items():
        role = str(cfg.get("role", ""))
        for fname in _COMMON_WORKSPACE:
            files[f"agents/{name}/{fname}"] = _render((common / fname).read_text(encoding="utf-8"), name, role)
    for rel, node in _walk(src):
        if rel != CONFIG_NAME:
            agent = rel.split("/")[1] if rel.startswith("agents/") else ""
            files[rel] = _render(node.read_text(encoding="utf-8"), agent, str(agents.get(agent, {}).get("role", "")))
    report = InitReport(fleet_dir=root, template=spec.template, agents=list(agents))
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        if path.exists() and not spec.force:
            report.kept.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        report.written.append(rel)
    _update_gitignore(root / ".gitignore", (common / "gitignore").read_text(encoding="utf-8"), report)
    load_config(root)  # a template that does not load is a bug: fail here, not at `legion up`
    return report


def _update_gitignore(path: Path, template: str, report: InitReport) -> None:
    if not path.exists():
        path.write_text(template, encoding="utf-8")
        report.written.append(".gitignore")
        return
    text = path.read_text(encoding="utf-8")
    present = {line.strip() for line in text.splitlines()}
    missing = [entry for entry in _IGNORED if entry not in present and entry.rstrip("/") not in present]
    if missing:
        sep = "" if text.endswith("\n") or not text else "\n"
        path.write_text(text + sep + "\n".join(missing) + "\n", encoding="utf-8")
        report.written.append(".gitignore")
    else:
        report.kept.append(".gitignore")
