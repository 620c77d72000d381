"""Config schema: defaults filled in, and errors that name the bad key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from gpvae.config import load_config, validate_config
from gpvae.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "gpvae" / "schema" / "config.schema.yaml"


@pytest.fixture
def demo() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_demo_config_is_valid_and_defaults_are_filled(demo: dict) -> None:
    cfg = validate_config(copy.deepcopy(demo), SCHEMA)
    assert cfg["mask"]["dilation_px"] == demo["mask"]["dilation_px"]
    assert cfg["inputs"]["parcels"]["class_field"] == "class"
    assert cfg["extract"]["bands"] is None


def test_model_defaults_are_filled(demo: dict) -> None:
    demo["models"] = {"m": {"type": "gpvae"}}
    cfg = validate_config(demo, SCHEMA)
    m = cfg["models"]["m"]
    assert m["prior"] == "markov" and m["latent_dim"] == 8 and m["train"]["epochs"] == 30


def test_unknown_key_is_named(demo: dict) -> None:
    demo["sample"]["per_clas"] = 3
    with pytest.raises(InputError, match=r"sample\.per_clas"):
        validate_config(demo, SCHEMA)


def test_wrong_type_is_named(demo: dict) -> None:
    demo["mask"]["dilation_px"] = "two"
    with pytest.raises(InputError, match=r"mask\.dilation_px.*integer"):
        validate_config(demo, SCHEMA)


def test_unknown_prior_is_named(demo: dict) -> None:
    demo["models"] = {"m": {"type": "gpvae", "prior": "magic"}}
    with pytest.raises(InputError, match=r"models\.m\.prior"):
        validate_config(demo, SCHEMA)


def test_latent_size_zero_is_refused(demo: dict) -> None:
    demo["models"] = {"m": {"type": "gpvae", "latent_dim": 0}}
    with pytest.raises(InputError, match=r"models\.m\.latent_dim"):
        validate_config(demo, SCHEMA)


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml", SCHEMA)
