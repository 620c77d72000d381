"""Rerun semantics: after a config edit, the dry-run job list holds exactly what depends on it.

One small local run (one tile, one S1 orbit, one year, two tiny models, up to the embeddings),
then edits of one setting at a time and `snakemake -n` / `--summary` on the edited config:
- one model's settings -> only that model's jobs (train, embed, and what follows them);
- the sampling -> sampling and everything after it, never the scene, extraction or masks;
- `--forcerun <rule> --until <rule>` (docs/slurm.md, README) -> that stage's jobs only.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

DATA_RULES = {"scene", "extract", "mask"}
#: Rules whose jobs never depend on a model's settings.
MODEL_FREE_RULES = DATA_RULES | {"sample", "table", "hide", "embed_raw", "gapfill_baseline"}
#: What the run builds (every data stage, both models' training and embeddings): the later
#: stages only add jobs downstream of these, with the same dependency structure.
TARGETS = ["results/models/m1/best.pt", "results/models/m2/best.pt",
           "results/embeddings/m1.nc", "results/embeddings/m2.nc"]


def _config() -> dict:
    """The tiny test config cut to the smallest DAG with every stage and two models."""
    cfg = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
    cfg["tiles"] = cfg["tiles"][:1]
    cfg["scene"]["years"] = cfg["scene"]["years"][:1]
    cfg["inputs"]["S1"]["orbits"] = ["ASC"]
    model = {"type": "gpvae", "prior": "markov", "sensors": ["S2"], "latent_dim": 2,
             "hidden": 8, "train": {"epochs": 1, "batch_size": 64}}
    cfg["models"] = {"m1": model, "m2": copy.deepcopy(model)}
    return cfg


def _write_config(workdir: Path, cfg: dict) -> None:
    # Key order kept as a user's editor would keep it: only the edited value changes.
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def job_counts(workdir: Path, *args: str, targets: list[str] = TARGETS) -> dict[str, int]:
    """Jobs per rule in the dry run's "Job stats" table ({} when nothing is to be done)."""
    proc = _snakemake(workdir, "-n", *args, *targets)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not m or m.group(1) == "total":
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def pending_outputs(workdir: Path) -> dict[str, str]:
    """Output file -> rule, for every output `snakemake --summary` plans to update."""
    proc = _snakemake(workdir, "--summary", *TARGETS)
    pending = {}
    for line in proc.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) >= 6 and fields[-1] == "update pending":
            pending[fields[0]] = fields[2]
    return pending


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("rerun")
    (work / "config").mkdir()
    _write_config(work, _config())
    _snakemake(work, *TARGETS)
    yield work
    shutil.rmtree(work / ".snakemake", ignore_errors=True)


@pytest.fixture
def edit(workdir: Path) -> Iterator:
    """Apply an edit to a fresh copy of the config; the original is restored afterwards."""
    def apply(change) -> None:
        cfg = _config()
        change(cfg)
        _write_config(workdir, cfg)

    yield apply
    _write_config(workdir, _config())


def test_completed_run_has_nothing_to_do(workdir: Path) -> None:
    assert job_counts(workdir) == {}


def test_editing_one_model_reruns_only_that_model(workdir: Path, edit) -> None:
    edit(lambda cfg: cfg["models"]["m1"].update(latent_dim=3))
    counts = job_counts(workdir)
    assert counts.get("train") == 1 and counts.get("embed") == 1
    assert not MODEL_FREE_RULES & set(counts)
    pending = pending_outputs(workdir)
    assert {"results/models/m1/best.pt", "results/embeddings/m1.nc"} <= set(pending)
    assert not MODEL_FREE_RULES & set(pending.values())
    assert not [p for p in pending if "m2" in Path(p).parts or Path(p).stem == "m2"]


def test_editing_training_settings_of_one_model_reruns_only_that_model(workdir: Path,
                                                                       edit) -> None:
    edit(lambda cfg: cfg["models"]["m2"]["train"].update(epochs=2))
    pending = pending_outputs(workdir)
    assert "results/models/m2/best.pt" in pending
    assert "results/models/m1/best.pt" not in pending
    assert "results/embeddings/m1.nc" not in pending
    assert not MODEL_FREE_RULES & set(pending.values())


def test_editing_the_sampling_reruns_sampling_and_after_not_extraction(workdir: Path,
                                                                       edit) -> None:
    edit(lambda cfg: cfg["sample"].update(per_class=cfg["sample"]["per_class"] - 5))
    counts = job_counts(workdir)
    assert counts.get("sample") == 1
    assert counts.get("train") == 2 and counts.get("embed") == 2  # new pixels, every model
    assert not DATA_RULES & set(counts)
    pending = pending_outputs(workdir)
    assert "results/samples/pixels.nc" in pending
    assert {"results/models/m1/best.pt", "results/models/m2/best.pt"} <= set(pending)
    assert not DATA_RULES & set(pending.values())


def test_editing_the_cloud_mask_reruns_masks_not_extraction(workdir: Path, edit) -> None:
    edit(lambda cfg: cfg["mask"].update(dilation_px=cfg["mask"]["dilation_px"] + 1))
    counts = job_counts(workdir)
    assert counts.get("mask") == 2 and counts.get("sample") == 1
    assert "extract" not in counts and "scene" not in counts


@pytest.mark.parametrize("rule, n_jobs", [("mask", 2), ("train", 2)])
def test_forcerun_until_reruns_exactly_one_stage(workdir: Path, rule: str, n_jobs: int) -> None:
    # The documented command, on the default target (--until cuts everything after `rule`).
    assert job_counts(workdir, "--forcerun", rule, "--until", rule, targets=[]) == {rule: n_jobs}
