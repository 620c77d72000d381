"""The conda environment of the rules lists the same packages as pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI names.
CONDA_TO_PYPI = {"pytorch": "torch", "netcdf4": "netcdf4"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!\[ ]", spec.strip(), maxsplit=1)[0].lower()


def test_conda_env_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = {_name(d) for d in project["dependencies"]}
    env = yaml.safe_load((ROOT / "envs" / "gpvae.yaml").read_text())
    conda = {CONDA_TO_PYPI.get(_name(d), _name(d)) for d in env["dependencies"]
             if isinstance(d, str)} - {"python", "pip"}
    conda |= {_name(d) for part in env["dependencies"] if isinstance(part, dict)
              for d in part.get("pip", [])}
    assert conda == pypi, f"only in envs: {conda - pypi}; only in pyproject: {pypi - conda}"


def test_every_rule_names_the_env_file() -> None:
    rules = list((ROOT / "workflow" / "rules").glob("*.smk"))
    assert rules
    for f in rules:
        text = f.read_text()
        if "\nrule " in text or text.startswith("rule ") or "    rule " in text:
            assert "conda:" in text and "log:" in text and "message:" in text, f
