"""One Snakemake run of the pipeline on the tiny config, inside pytest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import run_snakemake, tiny_workdir

pytestmark = pytest.mark.slow


def test_data_stages_produce_the_pixel_dataset(tiny_run: Path) -> None:
    ds = xr.open_dataset(tiny_run / "results" / "samples" / "pixels.nc")
    assert set(ds.attrs["sensors"].split()) == {"S2", "S1_ASC", "S1_DES"}
    splits = set(ds["split"].values.astype(str))
    assert splits <= {"train", "val", "test"} and "train" in splits
    # No parcel in two splits.
    ids, splits_ = ds["parcel_id"].values, ds["split"].values
    pairs = {(int(p), str(s)) for p, s in zip(ids, splits_, strict=True)}
    parcels = [p for p, _ in pairs]
    assert len(parcels) == len(set(parcels))
    assert set(ds["tile"].values.astype(str)) == {"T31TCJ", "T31UDQ"}
    assert set(ds["year"].values.tolist()) == {2022, 2023}
    v = ds["values_S2"].values
    assert np.isfinite(v).any() and np.nanmax(v) < 1.5 and np.nanmin(v) > -0.2
    # Every rule wrote a log.
    logs = list((tiny_run / "results" / "logs").rglob("*.log"))
    assert len(logs) >= 2 + 6 + 6 + 1


def test_every_model_is_trained(tiny_run: Path) -> None:
    import pandas as pd

    for model in ("gp_markov", "iid"):
        folder = tiny_run / "results" / "models" / model
        assert (folder / "best.pt").stat().st_size > 0
        m = pd.read_csv(folder / "metrics.csv")
        assert set(m["split"]) == {"train", "val"} and m["epoch"].max() == 2
        assert np.isfinite(m["elbo"]).all()


def test_dry_run_after_success_has_nothing_to_do(tiny_run: Path) -> None:
    proc = run_snakemake(tiny_run, "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_bad_config_key_stops_with_its_name(tmp_path: Path) -> None:
    text = (Path(__file__).parent / "data" / "tiny.yaml").read_text()
    tiny_workdir(tmp_path, text.replace("per_class:", "per_clas:"))
    proc = run_snakemake(tmp_path, "-n")
    assert proc.returncode != 0
    assert "sample.per_clas" in proc.stdout + proc.stderr
