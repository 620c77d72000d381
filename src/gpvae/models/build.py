"""Build a model from one entry of the config's ``models:`` mapping (validating every key), or
rebuild a trained one from its checkpoint (:func:`load_model`)."""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import numpy as np
import torch

from gpvae.config import defaults
from gpvae.data.checkpoint import read_checkpoint
from gpvae.data.normalise import Normalisation
from gpvae.data.summary import DataSummary
from gpvae.device import resolve_device
from gpvae.errors import InputError
from gpvae.io.sensors import registry_from_json
from gpvae.models.decoders import MLPDecoder
from gpvae.models.encoders import SinusoidalTimeEncoding, SiteEncoder
from gpvae.models.likelihoods import LIKELIHOODS, Likelihood, make_likelihood
from gpvae.models.vae import SITSVAE

log = logging.getLogger(__name__)

MODEL_TYPES = ("gpvae", "banded_gpvae", "iid_vae", "hivae", "seq_vae")
#: The schema part of one model (gpvae/schema/config.schema.yaml): its defaults are the
#: defaults of every key here (the schema is their only source).
MODEL_SCHEMA = "#/definitions/model"
#: The span assumed by ``time_range: null`` when a model is built without data (library
#: calls without a ``span``): one year from the sample origin.
ONE_YEAR = (0.0, 365.25)


def _error(what: str, key: str, fix: str, name: str | None) -> InputError:
    field = f"models.{name}.{key}" if name else key
    return InputError(what, field=field, fix=fix)


def _choice(out: dict, key: str, valid: tuple[str, ...], name: str | None) -> None:
    if out[key] not in valid:
        raise _error(f"unknown {key} {out[key]!r}", key, f"use one of {', '.join(valid)}", name)


def _integer(out: dict, key: str, minimum: int, name: str | None) -> None:
    v = out[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _error(f"{key} must be an integer >= {minimum}, got {v!r}", key,
                     f"set {key} to an integer >= {minimum}", name)


def _number(out: dict, key: str, name: str | None, *, strict: bool = True) -> None:
    v = out[key]
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < 0 or (strict and v == 0):
        raise _error(f"{key} must be a number {'>' if strict else '>='} 0, got {v!r}", key,
                     "use a positive number", name)


def _sensors(out: dict, sensor_bands: dict[str, list[str]], name: str | None) -> None:
    if not out["sensors"]:
        raise _error("no sensor selected", "sensors", "list at least one sensor", name)
    for s in out["sensors"]:
        if s not in sensor_bands:
            raise _error(f"unknown sensor {s!r}: the pixel dataset has "
                         f"{', '.join(sensor_bands) or 'none'}", "sensors",
                         f"use sensors among {', '.join(sensor_bands)}", name)
        if not sensor_bands.get(s):
            raise _error(f"sensor {s!r} has no bands in the pixel dataset", "sensors",
                         f"add {s} to the dataset or drop it from the model's sensors", name)


def _bands(cfg: dict, out: dict, sensor_bands: dict[str, list[str]], name: str | None
           ) -> dict[str, list[str]]:
    """Bands the model uses per sensor: ``cfg['bands'][s]`` (a subset of the dataset's, in
    that order) or all the dataset's bands."""
    wanted = cfg.get("bands") or {}
    if not isinstance(wanted, dict):
        raise _error("bands must map sensor -> list of bands", "bands",
                     "e.g. bands: {S2: [B04, B08]}", name)
    extra = sorted(set(wanted) - set(out["sensors"]))
    if extra:
        raise _error(f"bands given for sensors {extra} not in the model's sensors", "bands",
                     "add them to `sensors` or remove them from `bands`", name)
    out_bands = {}
    for s in out["sensors"]:
        chosen = list(wanted.get(s) or sensor_bands[s])
        missing = [b for b in chosen if b not in sensor_bands[s]]
        if missing or not chosen:
            raise _error(f"sensor {s}: bands {missing} are not in the pixel dataset "
                         f"(it has {sensor_bands[s]})", "bands",
                         f"choose bands among {sensor_bands[s]}", name)
        out_bands[s] = chosen
    return out_bands


def _time_range(out: dict, span: tuple[float, float] | None, name: str | None) -> None:
    """``time_range`` null -> the data's ``span`` (:data:`ONE_YEAR` without data); checked."""
    if out["time_range"] is None:
        out["time_range"] = [float(v) for v in (ONE_YEAR if span is None else span)]
    tr = out["time_range"]
    ok = (isinstance(tr, list | tuple) and len(tr) == 2
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in tr)
          and tr[0] < tr[1])
    if not ok:
        raise _error(f"time_range must be [start, end] with start < end, got {tr!r}",
                     "time_range", "e.g. [-30, 400] days from the sample origin", name)


def resolve_config(cfg: dict, sensor_bands: dict[str, list[str]], name: str | None = None,
                   span: tuple[float, float] | None = None) -> dict[str, Any]:
    """Validated config with the schema's defaults filled in; InputError naming the bad key.

    ``sensors`` null = every sensor of ``sensor_bands``; ``time_range`` null = ``span`` (the
    training data's span in days from the sample origin)."""
    from gpvae.models.kernels import KERNELS
    from gpvae.models.priors import PRIORS

    if not isinstance(cfg, dict):
        raise _error(f"model config must be a mapping, got {type(cfg).__name__}", "",
                     "write the model as `name: {type: gpvae, ...}`", name)
    default = defaults(MODEL_SCHEMA)
    known = {*default, "description", "bands"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        log.warning("model %s: ignoring unknown keys %s", name or "", unknown)
    out = {**default, **{k: v for k, v in cfg.items() if k in default and k != "train"}}
    out.pop("train", None)
    sensors = out["sensors"] if out["sensors"] is not None else list(sensor_bands)
    out["sensors"] = [sensors] if isinstance(sensors, str) else list(sensors)

    _choice(out, "type", MODEL_TYPES, name)
    _sensors(out, sensor_bands, name)
    out["bands"] = _bands(cfg, out, sensor_bands, name)
    for key in ("latent_dim", "hidden", "num_inducing", "num_components", "time_encoding_dim"):
        _integer(out, key, 1, name)
    _integer(out, "decoder_layers", 0, name)
    _integer(out, "seasonal_harmonics", 0, name)
    for key in ("init_noise_std", "init_site_var"):
        _number(out, key, name)
    _number(out, "bias", name, strict=False)
    if not isinstance(out["date_effects"], bool):
        raise _error("date_effects must be true or false", "date_effects",
                     "use true or false", name)
    if out["time_encoding_dim"] % 2:
        raise _error("time_encoding_dim must be even", "time_encoding_dim",
                     "use an even number", name)
    for key in ("lengthscale", "outputscale", "period", "grid_step_days"):
        _number(out, key, name)
    _number(out, "beta", name, strict=False)
    _time_range(out, span, name)
    _choice(out, "likelihood", LIKELIHOODS, name)
    if not isinstance(out["heteroscedastic"], bool):
        raise _error("heteroscedastic must be true or false", "heteroscedastic",
                     "use true or false", name)
    if out["type"] == "gpvae":
        _choice(out, "prior", PRIORS, name)
    if out["type"] in ("gpvae", "banded_gpvae"):
        _choice(out, "kernel", KERNELS, name)
    return out


def sensor_heads(cfg: dict, sensor_bands: dict[str, list[str]], in_dim: int
                 ) -> tuple[dict[str, MLPDecoder], dict[str, Likelihood]]:
    """One decoder (in_dim -> bands) and one likelihood per sensor."""
    dec = {s: MLPDecoder(in_dim, len(b), cfg["hidden"], depth=cfg["decoder_layers"],
                         heteroscedastic=cfg["heteroscedastic"]) for s, b in sensor_bands.items()}
    lik = {s: make_likelihood(cfg["likelihood"], len(b), heteroscedastic=cfg["heteroscedastic"],
                              init_scale=float(cfg["init_noise_std"]))
           for s, b in sensor_bands.items()}
    return dec, lik


def site_encoders(cfg: dict, sensor_bands: dict[str, list[str]]) -> dict[str, SiteEncoder]:
    """One amortised site encoder per sensor."""
    return {s: SiteEncoder(len(b), cfg["hidden"], cfg["latent_dim"],
                           init_var=float(cfg["init_site_var"]))
            for s, b in sensor_bands.items()}


def _kernel(cfg: dict, bias: bool = False):
    from gpvae.models.kernels import make_kernel
    return make_kernel(cfg["kernel"], cfg["latent_dim"], lengthscale=float(cfg["lengthscale"]),
                       outputscale=float(cfg["outputscale"]), period=float(cfg["period"]),
                       bias=float(cfg["bias"]) if bias else 0.0)


def _grid(cfg: dict) -> torch.Tensor:
    t0, t1 = (float(v) for v in cfg["time_range"])
    return torch.arange(t0, t1 + 1e-9, float(cfg["grid_step_days"]), dtype=torch.float32)


def build_model(cfg: dict, sensor_bands: dict[str, list[str]], name: str | None = None, *,
                span: tuple[float, float] | None = None, data: DataSummary | None = None
                ) -> SITSVAE:
    """The model described by ``cfg`` (one ``models:`` entry) for the dataset's sensor bands.

    ``sensor_bands``: sensor -> band names as in the pixel dataset. The model uses the bands
    of ``cfg['bands']`` (default: all), in that order: batches must carry exactly
    ``model.sensor_bands[s]`` for each sensor. Keys not given take the schema's defaults;
    ``span``: the training data's span (days from the sample origin) that ``time_range:
    null`` stands for; ``data`` summarises the training data (regions, acquisition keys of
    the date effects, training size): without it a GP-VAE has no date-effect table.
    ``model.config`` keeps the resolved config; ``build_model(model.config,
    model.sensor_bands, data=model.data)`` rebuilds it (e.g. from a checkpoint).
    """
    cfg = resolve_config(cfg, sensor_bands, name, span)
    bands = cfg["bands"]
    L, H = cfg["latent_dim"], cfg["hidden"]
    common = {"beta": float(cfg["beta"])}
    kind = cfg["type"]
    if kind == "gpvae":
        from gpvae.models.gpvae import GPVAE
        from gpvae.models.priors import make_prior
        kw = {}
        if cfg["prior"] == "sparse":
            kw = {"num_inducing": cfg["num_inducing"],
                  "time_range": tuple(float(v) for v in cfg["time_range"])}
        from gpvae.models.date_effects import DateEffects, SeasonalFeatures
        seasonal = (SeasonalFeatures(cfg["seasonal_harmonics"])
                    if cfg["seasonal_harmonics"] else None)
        dec, lik = sensor_heads(cfg, bands, L + (seasonal.dim if seasonal else 0))
        effects = {}
        if cfg["date_effects"] and data is not None:
            effects = {s: DateEffects(data.date_keys.get(s, np.zeros(0, np.int64)), len(b))
                       for s, b in bands.items()}
        model: SITSVAE = GPVAE(bands, L, prior=make_prior(cfg["prior"], _kernel(cfg, True), **kw),
                               encoders=site_encoders(cfg, bands), decoders=dec, likelihoods=lik,
                               date_effects=effects, seasonal=seasonal,
                               num_train=data.num_train if data else 1, **common)
    elif kind == "banded_gpvae":
        from gpvae.models.banded_vae import BandedGPVAE
        from gpvae.models.priors.banded import BandedGPPosterior
        dec, lik = sensor_heads(cfg, bands, L)
        model = BandedGPVAE(bands, L, posterior=BandedGPPosterior(_kernel(cfg)), grid=_grid(cfg),
                            hidden=H, decoders=dec, likelihoods=lik, **common)
    elif kind == "iid_vae":
        from gpvae.models.baselines import IIDVAE
        dec, lik = sensor_heads(cfg, bands, L)
        model = IIDVAE(bands, L, encoders=site_encoders(cfg, bands), decoders=dec,
                       likelihoods=lik, **common)
    elif kind == "hivae":
        from gpvae.models.baselines import HIVAE
        dec, lik = sensor_heads(cfg, bands, L)
        model = HIVAE(bands, L, hidden=H, num_components=cfg["num_components"], decoders=dec,
                      likelihoods=lik, **common)
    else:
        from gpvae.models.baselines import SeqVAE
        te = SinusoidalTimeEncoding(cfg["time_encoding_dim"])
        dec, lik = sensor_heads(cfg, bands, L + te.dim)
        model = SeqVAE(bands, L, hidden=H, time_encoding=te, decoders=dec, likelihoods=lik,
                       **common)
    model.config = cfg
    model.data = data
    log.info("built model %s (%s): %d parameters, sensors %s", name or "", kind,
             sum(p.numel() for p in model.parameters()), cfg["sensors"])
    return model


def load_model(checkpoint: str | os.PathLike, device: str | torch.device = "auto"
               ) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained model from a checkpoint; returns ``(model in eval mode, meta)``.

    ``meta`` holds ``model_name``, ``model_cfg``, ``sensor_bands``, ``normalisation`` (a
    :class:`~gpvae.data.normalise.Normalisation`), ``sensors`` (the registry: built-ins plus
    the definitions the checkpoint carries), ``span`` (the training data's span in days),
    ``data_span`` (its span rule, :class:`~gpvae.data.span.Span` as a dict), ``data_summary``
    (:class:`~gpvae.data.summary.DataSummary` or None), ``step``, ``epoch``, ``best_step``,
    ``best_val``, ``versions``.
    """
    state = read_checkpoint(checkpoint)
    summary = DataSummary.from_dict(state["data_summary"]) if state.get("data_summary") else None
    model = build_model(state.get("model_config") or state["model_cfg"], state["sensor_bands"],
                        span=state.get("span"), data=summary)
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as err:
        raise InputError(f"checkpoint weights do not fit the model built from its config "
                         f"({err})", file=checkpoint, field="model_state",
                         fix="use the gpvae version that wrote it: "
                         f"{state.get('versions', {})}") from err
    model.to(resolve_device(device)).eval()
    meta = {k: state.get(k) for k in ("model_name", "model_cfg", "sensor_bands", "epoch",
                                      "step", "best_val", "best_step", "versions", "span",
                                      "data_span")}
    meta["sensors"] = registry_from_json(json.dumps(state.get("sensors") or {}),
                                         source=checkpoint)
    meta["normalisation"] = Normalisation.from_dict(state["normalisation"])
    meta["data_summary"] = summary
    return model, meta
