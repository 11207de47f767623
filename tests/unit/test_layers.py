"""The package's layers import downwards only: the architecture the README describes."""

from __future__ import annotations

import ast
from pathlib import Path

import registryd

# A package may import its own modules and those of any lower rank, never a higher or
# equal one. The modules at the package's top (config, errors, names, digest, ...) are
# shared vocabulary and rank below everything; app.py, cli.py, server.py and workers.py
# compose the rest and are not checked.
RANKS = {
    "db": 0,
    "storage": 0,
    "http": 1,
    "access": 1,
    "domain": 2,
    "auth": 3,
    "gc": 3,
    "v1": 4,
    "v2": 4,
    "ops": 4,
    "mirror": 5,
    "ui": 6,
}
ROOT = Path(registryd.__file__).parent


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "registryd" and len(parts) > 1 and parts[1] in RANKS:
                layers.add(parts[1])
    return layers


def test_every_package_is_ranked() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(RANKS)


def test_imports_go_downwards_only() -> None:
    upward = []
    for layer, rank in RANKS.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            for target in _imported_layers(path) - {layer}:
                if RANKS[target] >= rank:
                    upward.append(f"{path.relative_to(ROOT)} imports registryd.{target}")
    assert upward == []
