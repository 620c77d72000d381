"""Shared fixtures: one Snakemake run of the whole pipeline on the tiny config per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"


def run_snakemake(workdir: Path, *args: str, timeout: float = 1800
                  ) -> subprocess.CompletedProcess:
    """Run this repo's Snakefile in ``workdir`` (jobs use this interpreter's environment)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def tiny_workdir(path: Path, text: str | None = None) -> Path:
    """A Snakemake working folder holding the tiny config as config/config.yaml."""
    (path / "config").mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copy(TINY, path / "config" / "config.yaml")
    else:
        (path / "config" / "config.yaml").write_text(text)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline run end to end (all of `rule all`); returns its working folder."""
    work = tiny_workdir(tmp_path_factory.mktemp("tiny"))
    proc = run_snakemake(work)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return work
