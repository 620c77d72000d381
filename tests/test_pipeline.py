"""One Snakemake run of the pipeline on the tiny config, inside pytest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    # Jobs call `python`: make it this interpreter's (the virtual environment's).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("tiny")
    (work / "config").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "tiny.yaml", work / "config" / "config.yaml")
    proc = _snakemake(work)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return work


def test_data_stages_produce_the_pixel_dataset(tiny_run: Path) -> None:
    ds = xr.open_dataset(tiny_run / "results" / "samples" / "pixels.nc")
    assert set(ds.attrs["sensors"].split()) == {"S2", "S1_ASC", "S1_DES"}
    splits = set(ds["split"].values.astype(str))
    assert splits <= {"train", "val", "test"} and "train" in splits
    # No parcel in two splits.
    pairs = {(int(p), str(s)) for p, s in zip(ds["parcel_id"].values, ds["split"].values)}
    parcels = [p for p, _ in pairs]
    assert len(parcels) == len(set(parcels))
    assert set(ds["tile"].values.astype(str)) == {"T31TCJ", "T31UDQ"}
    assert set(ds["year"].values.tolist()) == {2022, 2023}
    v = ds["values_S2"].values
    assert np.isfinite(v).any() and np.nanmax(v) < 1.5 and np.nanmin(v) > -0.2
    # Every rule wrote a log.
    logs = list((tiny_run / "results" / "logs").rglob("*.log"))
    assert len(logs) >= 2 + 6 + 6 + 1


def test_dry_run_after_success_has_nothing_to_do(tiny_run: Path) -> None:
    proc = _snakemake(tiny_run, "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_bad_config_key_stops_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    text = (ROOT / "tests" / "data" / "tiny.yaml").read_text()
    (tmp_path / "config" / "config.yaml").write_text(text.replace("per_class:", "per_clas:"))
    proc = _snakemake(tmp_path, "-n")
    assert proc.returncode != 0
    assert "sample.per_clas" in proc.stdout + proc.stderr
