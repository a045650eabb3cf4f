"""JSON Schema for every contract, so systems in any language can publish valid messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from legion.contracts.base import contracts

__all__ = ["json_schemas", "write_schemas"]


def json_schemas() -> dict[str, dict[str, Any]]:
    """One self-contained JSON Schema (draft 2020-12) per contract tag."""
    out: dict[str, dict[str, Any]] = {}
    for tag, cls in sorted(contracts().items()):
        schema = msgspec.json.schema(cls)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:legion:contract:{tag}",
            "title": tag,
            "description": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
            "x-legion-header": {"Legion-Type": tag},
            **schema,
        }
        out[tag] = schema
    return out


def write_schemas(out_dir: Path) -> list[Path]:
    """Write ``<tag>.json`` per contract and an ``index.json``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    schemas = json_schemas()
    for tag, schema in schemas.items():
        path = out_dir / f"{tag}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    index = out_dir / "index.json"
    index.write_text(json.dumps({"contracts": sorted(schemas)}, indent=2) + "\n", encoding="utf-8")
    written.append(index)
    return written
