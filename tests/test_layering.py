"""Layers run one way: io -> data -> models -> train / evaluate -> report -> cli (checked on
the source's imports, including imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gpvae"
#: Package -> packages it must never import.
FORBIDDEN = {
    "io": ("preprocess", "data", "models", "train", "evaluate", "report", "scene", "cli"),
    "data": ("preprocess", "models", "train", "evaluate", "report", "cli"),
    "models": ("preprocess", "train", "evaluate", "report", "cli"),
    "train": ("evaluate", "report", "cli"),
    "evaluate": ("train", "report", "cli"),
    "preprocess": ("models", "train", "evaluate", "report", "cli"),
    "protocols": ("report", "cli"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_against_the_layers(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "gpvae" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not bad, bad


def test_one_sensor_registry():
    """Band lists of the built-in sensors are declared in gpvae/schema/sensors.yaml only."""
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for needle in ('"B07", "B08", "B8A", "B11"', "'B07', 'B08', 'B8A', 'B11'",
                       '["VV", "VH"]', '"SR_B1", "SR_B2"', '"NDVI", "EVI"'):
            if needle in text:
                hits.append(f"{path.relative_to(PACKAGE)}: {needle}")
    assert not hits, hits
