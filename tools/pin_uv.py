"""Write tools/uv.txt: the uv version from uv.lock with every artifact hash (for pip --require-hashes)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    uv = next(p for p in lock["package"] if p["name"] == "uv")
    hashes = [w["hash"] for w in uv.get("wheels", [])] + ([uv["sdist"]["hash"]] if "sdist" in uv else [])
    lines = [
        "# uv, pinned by hash: `make` bootstraps it with pip --require-hashes, then uv installs uv.lock.",
        "# Regenerate with: make pin-uv (after changing the uv version in pyproject.toml and `uv lock`).",
        f"uv=={uv['version']} \\",
        *[f"    --hash={h} \\" for h in hashes[:-1]],
        f"    --hash={hashes[-1]}",
    ]
    (ROOT / "tools" / "uv.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
