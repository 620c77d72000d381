"""Checkpoints (contracts.md section 3): weights, full config, normalisation, RNG, versions.

Saved with ``torch.save`` through :func:`gpvae.io.atomic.atomic_path` and read with
``weights_only=True`` (plain containers and tensors only), so a checkpoint is safe to load and
loadable with no code edits: :func:`gpvae.models.build.load_model` rebuilds the model from
the stored config.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

import gpvae
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path

FORMAT = "gpvae-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model_name", "model_cfg", "sensor_bands",
                 "normalisation", "model_state", "epoch")


def versions() -> dict[str, str]:
    """Software versions recorded in every checkpoint."""
    import gpytorch

    return {"gpvae": str(gpvae.__version__), "torch": str(torch.__version__),
            "gpytorch": str(gpytorch.__version__)}


#: ``train:`` settings that change how fast a run goes, never what it computes: a run (and its
#: checkpoint) stays the same run when only these change.
RESOURCE_SETTINGS = ("in_memory_mb", "num_workers")


def canonical_config(model_cfg: dict) -> str:
    """A model config as canonical JSON (sorted keys, :data:`RESOURCE_SETTINGS` left out),
    for equality checks and run ids."""
    cfg = dict(model_cfg)
    if isinstance(cfg.get("train"), dict):
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in RESOURCE_SETTINGS}
    return json.dumps(cfg, sort_keys=True, default=str)


def fingerprint(model_name: str, model_cfg: dict) -> str:
    """Short hash of a model's name and settings (:func:`canonical_config`): what a
    checkpoint was trained for."""
    text = json.dumps({"name": model_name, "cfg": canonical_config(model_cfg)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_fingerprint(path: str | os.PathLike, model_name: str, model_cfg: dict) -> None:
    """InputError unless the checkpoint at ``path`` was trained for ``model_name`` with
    ``model_cfg`` (a foreign ``best.pt`` dropped in place is refused, not used silently)."""
    state = read_checkpoint(path)
    stored = state.get("fingerprint") or fingerprint(state["model_name"], state["model_cfg"])
    if stored == fingerprint(model_name, model_cfg):
        return
    if state["model_name"] != model_name:
        what = (f"checkpoint belongs to model {state['model_name']!r}, not to {model_name!r} "
                "(another model's file?)")
    else:
        what = (f"checkpoint of {model_name!r} was trained with other settings than the "
                f"config now gives: stored {canonical_config(state['model_cfg'])}, now "
                f"{canonical_config(model_cfg)}")
    raise InputError(what, file=path, field="fingerprint",
                     fix=f"delete {path} and rerun (Snakemake trains the model again), or "
                         f"`snakemake --forcerun train`")


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (plus format tag, versions and the settings' :func:`fingerprint`) to
    ``path`` atomically."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(),
               **state}
    if "model_name" in state and "model_cfg" in state:
        payload["fingerprint"] = fingerprint(state["model_name"], state["model_cfg"])
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint; unreadable, corrupted or foreign files -> InputError."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise InputError("checkpoint not found", file=path,
                         fix="train the model first (gpvae train)") from err
    except Exception as err:  # torch raises many types for truncated/garbage files
        raise InputError(f"checkpoint is corrupted or not a gpvae checkpoint ({err})",
                         file=path, field="format", fix="delete it and train again") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError("file is not a gpvae checkpoint", file=path, field="format",
                         fix="delete it and train again")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise InputError(f"checkpoint lacks {missing}", file=path, field=missing[0],
                         fix="delete it and train again")
    if state["format_version"] > FORMAT_VERSION:
        raise InputError(f"checkpoint format {state['format_version']} is newer than this "
                         f"gpvae ({FORMAT_VERSION})", file=path, field="format_version",
                         fix="upgrade gpvae")
    return state


def check_same_run(state: dict, model_name: str, model_cfg: dict, *, file: object) -> None:
    """A checkpoint may only be resumed by the same model name and identical config."""
    if state["model_name"] != model_name:
        raise InputError(f"checkpoint belongs to model {state['model_name']!r}, not "
                         f"{model_name!r}", file=file, field="model_name",
                         fix="use another output folder or delete the checkpoint")
    if canonical_config(state["model_cfg"]) != canonical_config(model_cfg):
        raise InputError("checkpoint was trained with a different model config: stored "
                         f"{canonical_config(state['model_cfg'])}, now "
                         f"{canonical_config(model_cfg)}", file=file, field="model_cfg",
                         fix="delete the checkpoint (or train without resume) to start over")
