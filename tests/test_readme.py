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


def test_readme_job_count_is_the_dry_run_total(tmp_path: Path) -> None:
    import os
    import re
    import shutil
    import subprocess
    import sys

    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                           "-d", str(tmp_path), "-n", "--cores", "2"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    total = re.search(r"^total\s+(\d+)$", proc.stdout + proc.stderr, flags=re.M)
    assert total, proc.stdout[-2000:]
    readme = (ROOT / "README.md").read_text()
    assert f"{total.group(1)} jobs (the total `snakemake -n` plans" in readme
