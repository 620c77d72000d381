"""The README's commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    test_lines = [ln for ln in ci if "pytest" in ln and not ln.startswith("#")]
    assert test_lines, "no pytest command in .ci/run"
    for line in test_lines:
        assert line.strip() in readme, f"README lacks the CI test command: {line}"


def test_readme_has_the_demo_command() -> None:
    assert "snakemake --cores all" in (ROOT / "README.md").read_text()


def test_readme_config_examples_are_valid() -> None:
    import re

    import yaml

    from gpvae.config import validate_config

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        cfg = yaml.safe_load(block)
        if "inputs" in cfg:
            validate_config(cfg)
