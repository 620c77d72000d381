"""A new sensor added to a trained model (``init_from``): only its parts learn.

The new model is the trained one's config with more ``sensors``. It starts from the trained
model's weights (prior, encoders, decoders, likelihoods, date effects of the old sensors,
seasonal features) and its normalisation and data summary for the old sensors; everything
of the old sensors and the prior stays frozen, and only the new sensors' encoder, decoder,
likelihood and date effects are trained. The latent space is the trained model's (its
decoders are frozen), so classifiers and products built on it keep working, and the new
sensor's sites only add information. The new encoders start with wide, zero-mean sites
(:data:`NEW_SITE_VAR`): at step 0 the new model's posterior is close to the old one's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch

from gpvae.config import INIT_FROM_FREE_KEYS
from gpvae.data.checkpoint import read_checkpoint
from gpvae.data.normalise import Normalisation
from gpvae.data.summary import DataSummary
from gpvae.errors import InputError

log = logging.getLogger(__name__)

#: Model settings an added-sensor model may change; every other one must be the trained
#: model's (its latent space, prior and decoders are reused as they are).
FREE_KEYS = INIT_FROM_FREE_KEYS
#: Initial site variance of a new sensor's encoder (latent units: the prior's is ~2), with
#: site means 0: its first sites carry little information (and no noise) until training
#: makes them useful. Wider would be safer at step 0 but slower to learn: the variance is a
#: softplus, which Adam moves by about the learning rate per step.
NEW_SITE_VAR = 10.0
#: Module prefixes of one sensor's trainable parts.
SENSOR_PARTS = ("encoders", "decoders", "likelihoods", "date_effects")


@dataclasses.dataclass(frozen=True)
class BaseModel:
    """The trained model a new sensor is added to: its checkpoint path and contents."""

    path: Path
    state: dict

    @property
    def name(self) -> str:
        return str(self.state["model_name"])

    @property
    def sensors(self) -> list[str]:
        return list(self.state["sensor_bands"])

    def record(self) -> dict:
        """What the new model's checkpoint records of it."""
        return {"checkpoint": str(self.path), "model_name": self.name,
                "sensors": self.sensors, "fingerprint": self.state.get("fingerprint"),
                "best_step": self.state.get("best_step")}


def load_base(path: Path, model_cfg: dict, sensor_bands: dict[str, list[str]]) -> BaseModel:
    """The trained model's checkpoint, checked against the new model's settings: a GP-VAE,
    the same settings but for :data:`FREE_KEYS`, its sensors (with their bands) among the
    new ones, at least one sensor new."""
    from gpvae.models.build import resolve_config

    base = BaseModel(Path(path), read_checkpoint(path))
    field = "models.<name>.init_from"
    old = base.state.get("model_config") or {}
    new = resolve_config(model_cfg, sensor_bands, span=base.state.get("span"))
    if old.get("type") != "gpvae" or new["type"] != "gpvae":
        raise InputError(f"a sensor is added to GP-VAEs only (trained model: type "
                         f"{old.get('type')}, new: {new['type']})", file=path, field=field,
                         fix="use init_from with type: gpvae models")
    differ = sorted(k for k in set(old) | set(new) if k not in FREE_KEYS
                    and old.get(k) != new.get(k))
    if differ:
        k = differ[0]
        raise InputError(f"the new model's {k} ({new.get(k)!r}) is not the trained model's "
                         f"({old.get(k)!r}): its latent space would not be the same",
                         file=path, field=f"models.<name>.{k}",
                         fix=f"give {k} the value of model {base.name}, or train a new model "
                         "(no init_from)")
    for s, bands in base.state["sensor_bands"].items():
        if sensor_bands.get(s) != list(bands):
            raise InputError(f"the new model does not read {s} with the bands {bands} of the "
                             f"trained model {base.name}", file=path,
                             field="models.<name>.sensors",
                             fix=f"keep every sensor of {base.name} with its bands and add "
                             "new ones")
    if not set(sensor_bands) - set(base.sensors):
        raise InputError(f"no sensor to add: the new model reads {list(sensor_bands)}, like "
                         f"{base.name}", file=path, field="models.<name>.sensors",
                         fix="add at least one sensor to the model's sensors")
    return base


def merged_normalisation(base: BaseModel, computed: Normalisation) -> Normalisation:
    """The trained model's statistics for its sensors, ``computed`` ones for the new."""
    old = Normalisation.from_dict(base.state["normalisation"])
    stats = {s: old.sensors.get(s, v) for s, v in computed.sensors.items()}
    return Normalisation(stats, computed.db_floor_linear,
                         {**computed.meta, "init_from": str(base.path)})


def merged_summary(base: BaseModel, computed: DataSummary) -> DataSummary:
    """The trained model's regions and date keys; the new sensors' keys from ``computed``
    (coded with the trained model's regions)."""
    old = DataSummary.from_dict(base.state.get("data_summary"))
    keys = {s: computed.date_keys[s] for s in computed.date_keys if s not in base.sensors}
    return DataSummary(old.regions, {**keys, **old.date_keys}, old.num_train)


def new_sensors(model: torch.nn.Module, base_sensors: list[str]) -> list[str]:
    return [s for s in model.sensors if s not in base_sensors]


def start_from(model: torch.nn.Module, base: BaseModel) -> None:
    """Load the trained model's weights into ``model`` (its new sensors' parts excepted) and
    widen the new encoders' initial sites."""
    missing, unexpected = model.load_state_dict(base.state["model_state"], strict=False)
    added = new_sensors(model, base.sensors)
    bad = [k for k in missing if not any(k.startswith(f"{p}.{s}.") for p in SENSOR_PARTS
                                         for s in added)]
    if unexpected or bad:
        raise InputError(f"the trained model's weights do not fit the new model (unexpected "
                         f"{list(unexpected)[:3]}, missing {bad[:3]})", file=base.path,
                         field="model_state", fix="train the base model with this gpvae "
                         "version, or train the new model from scratch (no init_from)")
    with torch.no_grad():
        for s in added:  # sites N(0; z, NEW_SITE_VAR) whatever the input at first
            head = model.encoders[s].head.linear
            latent = head.out_features // 2
            head.weight.zero_()
            head.bias[:latent] = 0.0
            head.bias[latent:] = math.log(math.expm1(NEW_SITE_VAR))
    log.info("added sensors %s to %s (%s): its other weights loaded and frozen", added,
             base.name, base.path)


def freeze(model: torch.nn.Module, base_sensors: list[str]) -> list[str]:
    """Only the new sensors' parts train; returns the names of the trainable parameters."""
    prefixes = tuple(f"{p}.{s}." for p in SENSOR_PARTS for s in new_sensors(model, base_sensors))
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefixes))
        if p.requires_grad:
            trainable.append(name)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %d of %d parameters (%s)", n, sum(p.numel() for p in model.parameters()),
             ", ".join(sorted({k.split(".")[1] for k in trainable})))
    return trainable


def frozen_sensors(state: dict | None) -> list[str] | None:
    """The base sensors recorded in a checkpoint of an added-sensor model (None: none)."""
    record = (state or {}).get("init_from")
    return None if not record else list(record["sensors"])
