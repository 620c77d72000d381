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
    assert m["prior"] == "markov" and m["latent_dim"] == 8 and m["train"]["steps"] == 3000


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


def test_the_schema_is_the_only_source_of_defaults() -> None:
    """Library calls get the schema's defaults: a model built from {} and the train settings
    of {} hold exactly the schema's values."""
    from gpvae.config import defaults
    from gpvae.models.build import build_model
    from gpvae.train.loop import train_settings

    model_defaults = defaults("#/definitions/model")
    train_defaults = model_defaults.pop("train")
    built = build_model({}, {"S2": ["B04", "B08"]}).config
    for key, value in model_defaults.items():
        if key not in ("sensors", "time_range"):  # null: the dataset's sensors and span
            assert built[key] == value, key
    assert built["sensors"] == ["S2"] and built["time_range"] == [0.0, 365.25]
    assert train_settings({}) == train_defaults
    assert train_defaults["steps"] == 3000 and model_defaults["prior"] == "markov"


def test_train_settings_errors_name_the_key() -> None:
    from gpvae.train.loop import train_settings

    with pytest.raises(InputError, match=r"train\.batch_size"):
        train_settings({"train": {"batch_size": 0}})
    with pytest.raises(InputError, match=r"train\.learning_rate"):
        train_settings({"train": {"learning_rate": 0.1}})


def test_any_sensor_input_and_sensor_declarations_validate(demo: dict) -> None:
    demo["sensors"] = {"DRONE": {"kind": "optical", "resolution_m": 0.1, "bands": ["r", "g"]}}
    demo["inputs"]["DRONE"] = {"path": "d.nc", "bands": {"r": "red"},
                               "mask": [{"variable": "qa", "kind": "bits", "invalid": [1]},
                                        {"variable": "sat", "kind": "boolean"}]}
    demo["sample"]["span"] = "season"
    cfg = validate_config(demo, SCHEMA)
    assert cfg["inputs"]["DRONE"]["format"] == "generic"
    assert cfg["sample"]["season_start"] == "01-01"
    demo["sensors"]["DRONE"]["kind"] = "lidar"
    with pytest.raises(InputError, match=r"sensors\.DRONE\.kind"):
        validate_config(demo, SCHEMA)
