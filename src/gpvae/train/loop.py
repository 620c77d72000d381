"""Training loop (`gpvae train`): Adam on the negative ELBO, early stopping, exact resume.

Every epoch writes ``checkpoint.pt`` (last state) and, when the validation ELBO improves,
``best.pt``, both atomically. Batch order depends on ``(seed, epoch)`` only and all RNG states
are checkpointed, so a run killed and resumed reproduces the uninterrupted run (on CPU).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gpvae.config import validate_section
from gpvae.data.checkpoint import (
    canonical_config,
    check_same_run,
    read_checkpoint,
    save_checkpoint,
)
from gpvae.data.dataset import (
    BlockSampler,
    DatasetInfo,
    PixelDataset,
    dataset_fingerprint,
    dataset_info,
    make_loader,
    pin_batch,
    sensor_bands_from_config,
)
from gpvae.data.normalise import Normalisation
from gpvae.data.stream import training_sampler
from gpvae.device import (
    autocast,
    fixed_rng,
    get_rng_state,
    resolve_device,
    seed_everything,
    set_rng_state,
)
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path

log = logging.getLogger(__name__)

#: The schema part of a model's ``train:`` settings (their defaults and checks).
TRAIN_SCHEMA = "#/definitions/model/properties/train"
#: Offset of the seed used for validation passes (common random numbers across epochs).
VAL_SEED_OFFSET = 1_000_003


def train_settings(model_cfg: dict) -> dict:
    """The model's ``train:`` mapping with the schema's defaults filled in and its values
    checked against the schema (InputError naming ``train.<key>``)."""
    return validate_section(copy.deepcopy(model_cfg.get("train") or {}), TRAIN_SCHEMA,
                            field="train", source="model config")


def run_epoch(model: torch.nn.Module, loader, *, device: torch.device, num_samples: int,
              mixed_precision: bool, optimizer: torch.optim.Optimizer | None = None,
              desc: str = "") -> dict[str, float]:
    """One pass over ``loader``: per-pixel mean ELBO, recon and KL (trains if ``optimizer``)."""
    training = optimizer is not None
    model.train(training)
    sums = {"elbo": 0.0, "recon": 0.0, "kl": 0.0}
    count = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not sys.stderr.isatty())
    with torch.set_grad_enabled(training):
        for batch in bar:
            if device.type == "cuda":
                batch = pin_batch(batch)
            batch = batch.to(device)
            with autocast(device, mixed_precision):
                terms = model.elbo(batch, num_samples=num_samples)
            elbo = terms.elbo.float()
            if not torch.isfinite(elbo).all():
                bad = batch.index[~torch.isfinite(elbo)][:10].tolist()
                raise FloatingPointError(f"non-finite ELBO ({desc}) for samples {bad}; "
                                         "lower train.lr or check the inputs")
            if training:
                optimizer.zero_grad(set_to_none=True)
                (-elbo.mean()).backward()
                optimizer.step()
            n = elbo.shape[0]
            for key in sums:
                sums[key] += float(getattr(terms, key).detach().float().sum())
            count += n
            bar.set_postfix(elbo=sums["elbo"] / count)
    return {key: value / max(count, 1) for key, value in sums.items()}


def write_metrics(path: Path, rows: list[dict]) -> None:
    """Rewrite the metrics CSV (one row per epoch and split) atomically."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _split_indices(dataset: PixelDataset, split: str):
    idx = dataset.indices(split)
    if idx.size == 0:
        raise InputError(f"no sample in split {split!r}", file=dataset.path, field="split",
                         fix="check the sampling stage's split fractions")
    return idx


def train_model(pixels: Path, model_name: str, model_cfg: dict, out_dir: Path, *,
                device: str = "auto", resume: bool = True, log_every: int = 1,
                max_epochs: int | None = None) -> Path:
    """Train one model; writes out_dir/checkpoint.pt (last), out_dir/best.pt (best val ELBO),
    out_dir/metrics.csv (one row per epoch: epoch, split, elbo, recon, kl, seconds, lr, plus
    kernel hyperparameters per latent from model.hyperparameters()), out_dir/normalisation.json;
    returns out_dir/best.pt."""
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    settings = train_settings(model_cfg)
    info = dataset_info(pixels)
    sensor_bands = sensor_bands_from_config(model_cfg, info.sensors, info.bands, info.registry)
    state = None
    if resume and ckpt_path.exists():
        state = read_checkpoint(ckpt_path)
        check_same_run(state, model_name, model_cfg, file=ckpt_path)
        log.info("resuming %s from %s (epoch %d)", model_name, ckpt_path, state["epoch"])
    dev = resolve_device(device)
    if settings["mixed_precision"] and dev.type != "cuda":
        log.warning("mixed_precision needs CUDA; training in float32 on %s", dev)
    dataset = PixelDataset(pixels, sensor_bands, in_memory_mb=settings["in_memory_mb"])
    try:  # close the file explicitly, also on errors
        _fit(dataset, model_name, model_cfg, out_dir, state=state, device=dev,
             settings=settings, log_every=log_every, max_epochs=max_epochs, info=info)
    finally:
        dataset.close()
    best_path = out_dir / "best.pt"
    if not best_path.exists():
        raise InputError("best.pt is missing although the checkpoint says training ran",
                         file=best_path, fix="delete checkpoint.pt and train again")
    return best_path


def _fit(dataset: PixelDataset, model_name: str, model_cfg: dict, out_dir: Path, *,
         state: dict | None, device: torch.device, settings: dict, log_every: int,
         max_epochs: int | None, info: DatasetInfo) -> None:
    """Epoch loop of :func:`train_model` (from scratch, or from a validated ``state``)."""
    from gpvae.models.build import build_model

    dev, sensor_bands = device, dataset.sensor_bands
    train_idx, val_idx = _split_indices(dataset, "train"), _split_indices(dataset, "val")
    if state is not None:
        normalisation = Normalisation.from_dict(state["normalisation"])
    else:
        normalisation = dataset.compute_normalisation("train")
    dataset.normalisation = normalisation
    out_dir.mkdir(parents=True, exist_ok=True)
    normalisation.save(out_dir / "normalisation.json")

    seed = settings["seed"]
    seed_everything(seed)
    span = state["span"] if state is not None and state.get("span") else info.time_range
    model = build_model(model_cfg, sensor_bands, span=span).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    epoch, best_val, best_epoch, bad_epochs, stopped, rows = 0, -math.inf, 0, 0, False, []
    if state is not None:
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        set_rng_state(state["rng"])
        epoch, best_val, best_epoch = state["epoch"], state["best_val"], state["best_epoch"]
        bad_epochs, stopped, rows = state["bad_epochs"], state["stopped"], list(state["metrics"])

    train_sampler = training_sampler(dataset, train_idx, settings["batch_size"], seed=seed,
                                     window=settings["shuffle_window"] or None)
    val_sampler = BlockSampler(val_idx, settings["batch_size"], shuffle=False)
    train_loader = make_loader(dataset, train_sampler, num_workers=settings["num_workers"])
    val_loader = make_loader(dataset, val_sampler, num_workers=settings["num_workers"])
    last = settings["epochs"] if max_epochs is None else min(settings["epochs"], max_epochs)
    common = {"device": dev, "num_samples": settings["num_samples"],
              "mixed_precision": settings["mixed_precision"]}
    log.info("training %s on %s: %d train / %d val pixels, epochs %d..%d", model_name, dev,
             train_idx.size, val_idx.size, epoch + 1, last)

    while epoch < last and not stopped:
        start = time.perf_counter()
        train_sampler.set_epoch(epoch)
        train = run_epoch(model, train_loader, optimizer=optimizer,
                          desc=f"{model_name} epoch {epoch + 1} train", **common)
        train_seconds = time.perf_counter() - start
        with fixed_rng(seed + VAL_SEED_OFFSET, dev):
            val = run_epoch(model, val_loader, desc=f"{model_name} epoch {epoch + 1} val",
                            **common)
        epoch += 1
        hyper = {k: float(v) for k, v in model.hyperparameters().items()}
        lr = optimizer.param_groups[0]["lr"]
        rows += [{"epoch": epoch, "split": "train", **train, "seconds": train_seconds,
                  "lr": lr, **hyper},
                 {"epoch": epoch, "split": "val", **val,
                  "seconds": time.perf_counter() - start - train_seconds, "lr": lr, **hyper}]
        improved = val["elbo"] > best_val
        if improved:
            best_val, best_epoch, bad_epochs = val["elbo"], epoch, 0
        else:
            bad_epochs += 1
        stopped = 0 < settings["patience"] <= bad_epochs  # patience 0: no early stopping
        common_state = {"model_name": model_name, "model_cfg": model_cfg,
                        "model_config": getattr(model, "config", None), "span": list(span),
                        "data_span": dataclasses.asdict(info.span),
                        "sensors": info.registry.declarations(sensor_bands),
                        "sensor_bands": sensor_bands,
                        "normalisation": normalisation.to_dict(), "epoch": epoch,
                        "best_val": best_val, "best_epoch": best_epoch,
                        "model_state": model.state_dict(), "pixels": str(dataset.path)}
        if improved:
            save_checkpoint(out_dir / "best.pt", common_state)
        write_metrics(out_dir / "metrics.csv", rows)
        save_checkpoint(out_dir / "checkpoint.pt",
                        {**common_state, "optimizer_state": optimizer.state_dict(),
                         "bad_epochs": bad_epochs, "stopped": stopped, "rng": get_rng_state(),
                         "metrics": rows, "settings": settings})
        if log_every and (epoch % log_every == 0 or stopped or epoch == last):
            log.info("%s epoch %d: train elbo %.4g (recon %.4g, kl %.4g) | val elbo %.4g "
                     "(best %.4g at %d) | %.1fs", model_name, epoch, train["elbo"],
                     train["recon"], train["kl"], val["elbo"], best_val, best_epoch,
                     time.perf_counter() - start)
        if stopped:
            log.info("%s: early stop after epoch %d (no val improvement for %d epochs)",
                     model_name, epoch, bad_epochs)


def run_id(model_name: str, model_cfg: dict, pixels: Path | None = None) -> str:
    """Short hash naming a training run's state folder: one per (model name, settings, data).

    The pixel dataset enters by its content (gpvae.data.dataset.dataset_fingerprint), so a
    resampled dataset starts a new run while a killed job on unchanged data resumes, also
    from a copy of the dataset (scratch, another node).
    """
    data = None
    if pixels is not None and Path(pixels).exists():
        data = dataset_fingerprint(pixels)
    text = json.dumps({"name": model_name, "cfg": canonical_config(model_cfg), "data": data},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def train_and_publish(pixels: Path, model_name: str, model_cfg: dict, model_dir: Path, *,
                      device: str = "auto", resume: bool = True,
                      max_epochs: int | None = None) -> Path:
    """Train in ``model_dir/state/<run_id>/`` (resumable), then publish the results.

    The state folder is never a pipeline output, so a killed job resumes from its last
    checkpoint on rerun, while changed settings get a fresh folder (a new run, nothing
    overwritten). Published atomically into ``model_dir``: ``best.pt``, ``metrics.csv``,
    ``normalisation.json``.
    """
    model_dir = Path(model_dir)
    run_dir = model_dir / "state" / run_id(model_name, model_cfg, pixels)
    log.info("%s: run folder %s", model_name, run_dir)
    train_model(pixels, model_name, model_cfg, run_dir, device=device, resume=resume,
                max_epochs=max_epochs)
    for name in ("normalisation.json", "metrics.csv", "best.pt"):
        with atomic_path(model_dir / name) as tmp:
            shutil.copyfile(run_dir / name, tmp)
    return model_dir / "best.pt"
