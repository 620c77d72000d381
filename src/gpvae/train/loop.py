"""Training loop (`gpvae train`): Adam on the negative ELBO with a step budget, exact resume.

The budget is ``train.steps`` optimiser steps (or ``train.epochs`` passes), with a linear
warm-up and a cosine decay of the learning rate (kernel, noise and date-effect scales at
``hyper_lr_factor`` times the rate). At each step a random share of the dates (and one window)
lose their encoder sites (``train.hiding``, :mod:`gpvae.train.hiding`) so that the model learns
to predict dates it does not see. Every ``validate_every`` steps the model fills held-out
observations of validation series (:mod:`gpvae.train.validation`); ``best.pt`` keeps the
model with the lowest validation gap-filling error (the ELBO is logged beside it), training
stops after ``patience`` validations without improvement, and ``checkpoint.pt`` (last state)
is written. Batch order depends on ``(seed, epoch)`` only, the hiding on ``(seed, step)``, and
all RNG states are checkpointed, so a run killed and resumed reproduces the uninterrupted run
(on CPU).
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

import numpy as np
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
from gpvae.data.summary import DataSummary
from gpvae.device import (
    autocast,
    get_rng_state,
    resolve_device,
    seed_everything,
    set_rng_state,
)
from gpvae.errors import InputError
from gpvae.io.atomic import atomic_path
from gpvae.train import add_sensor
from gpvae.train.hiding import SiteHiding, step_generator
from gpvae.train.schedule import lr_factor
from gpvae.train.validation import ValidationGapfill

log = logging.getLogger(__name__)

#: The schema part of a model's ``train:`` settings (their defaults and checks).
TRAIN_SCHEMA = "#/definitions/model/properties/train"
#: Bounds of the automatic batch size.
AUTO_BATCH = (16, 256)
#: Parameter names (substrings) trained at ``hyper_lr_factor`` times the learning rate.
HYPER_PARAMETERS = ("prior.", "likelihoods.", "log_prior_std")


def train_settings(model_cfg: dict) -> dict:
    """The model's ``train:`` mapping with the schema's defaults filled in and its values
    checked against the schema (InputError naming ``train.<key>``)."""
    return validate_section(copy.deepcopy(model_cfg.get("train") or {}), TRAIN_SCHEMA,
                            field="train", source="model config")


def auto_batch_size(num_train: int) -> int:
    """2^round(log2(N / 16)) within [16, 256]: ~16 batches per pass on small sets, 256 pixels
    a step on large ones (so 300 and 300 000 training pixels both get enough steps)."""
    lo, hi = AUTO_BATCH
    return int(min(hi, max(lo, 2 ** round(math.log2(max(num_train, 1) / 16)))))


@dataclasses.dataclass(frozen=True)
class Budget:
    """Resolved step budget: batch size, steps per pass, total steps, validation interval."""

    batch_size: int
    steps_per_epoch: int
    total_steps: int
    validate_every: int
    warmup_steps: int

    @classmethod
    def from_settings(cls, settings: dict, num_train: int) -> Budget:
        bs = settings["batch_size"]
        batch_size = auto_batch_size(num_train) if bs == "auto" else int(bs)
        per_epoch = max(1, math.ceil(num_train / batch_size))
        epochs = settings.get("epochs")
        total = int(epochs) * per_epoch if epochs else int(settings["steps"])
        every = settings["validate_every"]
        if every == "auto":
            every = per_epoch if epochs else max(50, total // 30)
        warmup = min(int(settings["warmup_steps"]), total // 10)
        return cls(batch_size, per_epoch, total, max(1, min(int(every), total)), warmup)


def param_groups(model: torch.nn.Module, lr: float, factor: float) -> list[dict]:
    """Adam parameter groups: networks at ``lr``, GP hyperparameters, noise scales and the
    date effects' prior scales at ``factor * lr`` (they live on a log scale)."""
    hyper, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:  # frozen parts of an added-sensor model are left out
            (hyper if any(k in name for k in HYPER_PARAMETERS) else rest).append(p)
    groups = [{"params": rest, "lr": lr, "base_lr": lr}]
    if hyper:
        groups.append({"params": hyper, "lr": lr * factor, "base_lr": lr * factor})
    return groups


def write_metrics(path: Path, rows: list[dict]) -> None:
    """Rewrite the metrics CSV (one row per validation and split) atomically."""
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
        names, counts = np.unique(dataset.splits, return_counts=True)
        found = dict(zip(names.tolist(), counts.tolist(), strict=True))
        raise InputError(f"the pixel dataset has no {split!r} sample (samples per split: "
                         f"{found}); training needs train and val samples",
                         file=dataset.path, field="split",
                         fix=f"give sample.split.{split} a fraction > 0 with at least 3 "
                             "parcels per class (or the table's split column some "
                             f"{split!r} rows), then rerun the sample/table stage")
    return idx


def train_model(pixels: Path, model_name: str, model_cfg: dict, out_dir: Path, *,
                device: str = "auto", resume: bool = True, log_every: int = 1,
                max_epochs: int | None = None, max_steps: int | None = None,
                exclude: tuple[str, object] | None = None,
                init_from: Path | None = None) -> Path:
    """Train one model; writes out_dir/checkpoint.pt (last), out_dir/best.pt (lowest validation
    gap-filling error), out_dir/metrics.csv (one row per validation and split: step, epoch,
    elbo, recon, kl, seconds, lr; val rows add gap_mae and active_units; plus the model's
    hyperparameters), out_dir/normalisation.json; returns out_dir/best.pt. ``max_epochs`` /
    ``max_steps`` stop early (as a kill would), the budget unchanged. ``exclude`` = (region |
    year, value): every sample of that domain is left out of training, validation,
    normalisation and the date effects (a held-out-domain model). ``init_from``: the
    checkpoint of a trained model this one adds sensors to (:mod:`gpvae.train.add_sensor`:
    only the new sensors' parts train)."""
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    settings = train_settings(model_cfg)
    info = dataset_info(pixels)
    sensor_bands = sensor_bands_from_config(model_cfg, info.sensors, info.bands, info.registry)
    state = None
    if resume and ckpt_path.exists():
        state = read_checkpoint(ckpt_path)
        check_same_run(state, model_name, model_cfg, file=ckpt_path)
        log.info("resuming %s from %s (step %d)", model_name, ckpt_path, state["step"])
    dev = resolve_device(device)
    if settings["mixed_precision"] and dev.type != "cuda":
        log.warning("mixed_precision needs CUDA; training in float32 on %s", dev)
    dataset = PixelDataset(pixels, sensor_bands, in_memory_mb=settings["in_memory_mb"])
    if exclude is not None:
        dataset.exclude(*exclude)
    try:  # close the file explicitly, also on errors
        _fit(dataset, model_name, model_cfg, out_dir, state=state, device=dev,
             settings=settings, log_every=log_every, max_epochs=max_epochs,
             max_steps=max_steps, info=info, init_from=init_from)
    finally:
        dataset.close()
    best_path = out_dir / "best.pt"
    if not best_path.exists():
        raise InputError("best.pt is missing although the checkpoint says training ran",
                         file=best_path, fix="delete checkpoint.pt and train again")
    return best_path


def _train_step(model: torch.nn.Module, batch, optimizer: torch.optim.Optimizer, *,
                hidden: dict | None, num_samples: int, device: torch.device,
                mixed_precision: bool) -> dict[str, float]:
    """One optimiser step on ``batch``; batch-mean ELBO terms."""
    with autocast(device, mixed_precision):
        if hidden is None:
            terms = model.elbo(batch, num_samples=num_samples)
        else:
            terms = model.elbo(batch, num_samples=num_samples, hidden=hidden)
    elbo = terms.elbo.float()
    if not torch.isfinite(elbo).all():
        bad = batch.index[~torch.isfinite(elbo)][:10].tolist()
        raise FloatingPointError(f"non-finite ELBO for samples {bad}; lower train.lr or "
                                 "check the inputs")
    optimizer.zero_grad(set_to_none=True)
    (-elbo.mean()).backward()
    optimizer.step()
    return {k: float(getattr(terms, k).detach().float().mean()) for k in ("elbo", "recon", "kl")}


def _fit(dataset: PixelDataset, model_name: str, model_cfg: dict, out_dir: Path, *,
         state: dict | None, device: torch.device, settings: dict, log_every: int,
         max_epochs: int | None, max_steps: int | None, info: DatasetInfo,
         init_from: Path | None = None) -> None:
    """Step loop of :func:`train_model` (from scratch, or from a validated ``state``)."""
    from gpvae.models.build import build_model

    dev, sensor_bands = device, dataset.sensor_bands
    train_idx, val_idx = _split_indices(dataset, "train"), _split_indices(dataset, "val")
    base = None
    if state is not None:
        normalisation = Normalisation.from_dict(state["normalisation"])
        summary = DataSummary.from_dict(state["data_summary"])
    else:
        normalisation = dataset.compute_normalisation("train")
        if init_from is not None:  # the trained model's statistics for its sensors
            base = add_sensor.load_base(init_from, model_cfg, sensor_bands)
            normalisation = add_sensor.merged_normalisation(base, normalisation)
            regions = DataSummary.from_dict(base.state.get("data_summary")).regions
            summary = add_sensor.merged_summary(base, dataset.summary("train",
                                                                      regions=regions))
        else:
            summary = dataset.summary("train")
    dataset.normalisation = normalisation
    dataset.use_summary(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    normalisation.save(out_dir / "normalisation.json")

    seed = settings["seed"]
    seed_everything(seed)
    span = state["span"] if state is not None and state.get("span") else info.time_range
    model = build_model(model_cfg, sensor_bands, span=span, data=summary).to(dev)
    if base is not None:
        add_sensor.start_from(model, base)
    init_record = base.record() if base is not None else (state or {}).get("init_from")
    if init_record:
        add_sensor.freeze(model, list(init_record["sensors"]))
    budget = Budget.from_settings(settings, train_idx.size)
    optimizer = torch.optim.Adam(param_groups(model, settings["lr"],
                                              settings["hyper_lr_factor"]))
    step, best_val, best_step, bad, stopped, rows = 0, math.inf, 0, 0, False, []
    if state is not None:
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        set_rng_state(state["rng"])
        step, best_val, best_step = state["step"], state["best_val"], state["best_step"]
        bad, stopped, rows = state["bad_validations"], state["stopped"], list(state["metrics"])

    target = info.first_of_kind() if info.first_of_kind() in sensor_bands else None
    validation = ValidationGapfill(dataset, val_idx, target,
                                   max_series=settings["validation_series"], seed=seed,
                                   batch_size=max(budget.batch_size, 64),
                                   span_days=float(span[1]) if span else 365.0)
    hide_cfg = settings["hiding"]
    hiding = (SiteHiding(hide_cfg["max_fraction"], hide_cfg["max_gap_days"],
                         hide_cfg["gap_probability"])
              if hide_cfg["enabled"] and getattr(model, "supports_hidden_sites", False) else None)
    sampler = training_sampler(dataset, train_idx, budget.batch_size, seed=seed,
                               window=settings["shuffle_window"] or None,
                               groups=dataset.sampling_groups(train_idx))
    loader = make_loader(dataset, sampler, num_workers=settings["num_workers"])
    last = budget.total_steps
    if max_epochs is not None:
        last = min(last, max_epochs * budget.steps_per_epoch)
    if max_steps is not None:
        last = min(last, max_steps)
    common = {"device": dev, "num_samples": settings["num_samples"],
              "mixed_precision": settings["mixed_precision"]}
    log.info("training %s on %s: %d train / %d val pixels (%d held-out %s observations), "
             "batch %d, steps %d..%d of %d, validation every %d, site hiding %s", model_name,
             dev, train_idx.size, val_idx.size, validation.num_hidden, target,
             budget.batch_size, step + 1, last, budget.total_steps, budget.validate_every,
             "on" if hiding else "off")

    sums, count, start = {"elbo": 0.0, "recon": 0.0, "kl": 0.0}, 0, time.perf_counter()
    bar = tqdm(total=last, initial=step, desc=f"{model_name} train", unit="step",
               disable=not sys.stderr.isatty())
    while step < last and not stopped:
        sampler.set_epoch(step // budget.steps_per_epoch, start=step % budget.steps_per_epoch)
        model.train()
        for batch in loader:
            if dev.type == "cuda":
                batch = pin_batch(batch)
            batch = batch.to(dev)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(step, budget.total_steps,
                                                           budget.warmup_steps,
                                                           settings["lr_floor"])
            hidden = (None if hiding is None
                      else hiding.hide(batch, model.sensors, step_generator(seed, step)))
            terms = _train_step(model, batch, optimizer, hidden=hidden, **common)
            for key in sums:
                sums[key] += terms[key]
            count += 1
            step += 1
            bar.update(1)
            bar.set_postfix(elbo=f"{terms['elbo']:.4g}")
            if step % budget.validate_every and step != last:
                if step % budget.steps_per_epoch == 0:
                    break
                continue
            train_seconds = time.perf_counter() - start
            val = validation.score(model, dev, num_samples=settings["num_samples"],
                                   mixed_precision=settings["mixed_precision"])
            model.train()
            hyper = {k: float(v) for k, v in model.hyperparameters().items()}
            lr = optimizer.param_groups[0]["lr"]
            epoch = step / budget.steps_per_epoch
            rows += [{"step": step, "epoch": epoch, "split": "train",
                      **{k: v / max(count, 1) for k, v in sums.items()},
                      "seconds": train_seconds, "lr": lr, **hyper},
                     {"step": step, "epoch": epoch, "split": "val", **val,
                      "seconds": time.perf_counter() - start - train_seconds, "lr": lr,
                      **hyper}]
            score = validation.criterion(val)
            improved = score < best_val
            if improved:
                best_val, best_step, bad = score, step, 0
            else:
                bad += 1
            stopped = 0 < settings["patience"] <= bad  # patience 0: no early stopping
            common_state = {"model_name": model_name, "model_cfg": model_cfg,
                            "model_config": getattr(model, "config", None), "span": list(span),
                            "data_span": dataclasses.asdict(info.span),
                            "data_summary": summary.to_dict(),
                            "sensors": info.registry.declarations(sensor_bands),
                            "sensor_bands": sensor_bands, "excluded": dataset.excluded,
                            "normalisation": normalisation.to_dict(), "step": step,
                            "epoch": epoch, "best_val": best_val, "best_step": best_step,
                            "model_state": model.state_dict(), "pixels": str(dataset.path),
                            "init_from": init_record}
            if improved:
                save_checkpoint(out_dir / "best.pt", common_state)
            write_metrics(out_dir / "metrics.csv", rows)
            save_checkpoint(out_dir / "checkpoint.pt",
                            {**common_state, "optimizer_state": optimizer.state_dict(),
                             "bad_validations": bad, "stopped": stopped,
                             "rng": get_rng_state(), "metrics": rows, "settings": settings})
            if log_every:
                log.info("%s step %d (epoch %.1f): train elbo %.4g (recon %.4g, kl %.4g) | "
                         "val elbo %.4g, gap MAE %.4g (best %.4g at step %d), %d active "
                         "latents | %.1fs", model_name, step, epoch, rows[-2]["elbo"],
                         rows[-2]["recon"], rows[-2]["kl"], val["elbo"], val["gap_mae"],
                         best_val, best_step, val["active_units"], time.perf_counter() - start)
            sums, count, start = {k: 0.0 for k in sums}, 0, time.perf_counter()
            if stopped:
                log.info("%s: early stop at step %d (no validation improvement for %d "
                         "validations)", model_name, step, bad)
            if stopped or step >= last or step % budget.steps_per_epoch == 0:
                break
    bar.close()


def run_id(model_name: str, model_cfg: dict, pixels: Path | None = None,
           exclude: tuple[str, object] | None = None, init_from: Path | None = None) -> str:
    """Short hash naming a training run's state folder: one per (model name, settings, data,
    held-out domain, base model).

    The settings include the training recipe (``train.steps``, batch size, schedule; not the
    resource settings of gpvae.data.checkpoint.RESOURCE_SETTINGS). The pixel dataset enters
    by its content (gpvae.data.dataset.dataset_fingerprint), so a resampled dataset starts a
    new run while a killed job on unchanged data resumes, also from a copy of the dataset
    (scratch, another node). ``exclude`` (a held-out region or year, the transfer protocol)
    gets its own run, and so does a retrained ``init_from`` base model (a new sensor added).
    """
    data = None
    if pixels is not None and Path(pixels).exists():
        data = dataset_fingerprint(pixels)
    doc = {"name": model_name, "cfg": canonical_config(model_cfg), "data": data}
    if exclude is not None:
        doc["exclude"] = [str(v) for v in exclude]
    if init_from is not None and Path(init_from).exists():  # a retrained base: a new run
        st = Path(init_from).stat()
        doc["init_from"] = [st.st_size, st.st_mtime_ns]
    text = json.dumps(doc, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def train_and_publish(pixels: Path, model_name: str, model_cfg: dict, model_dir: Path, *,
                      device: str = "auto", resume: bool = True,
                      max_epochs: int | None = None, max_steps: int | None = None,
                      exclude: tuple[str, object] | None = None,
                      init_from: Path | None = None) -> Path:
    """Train in ``model_dir/state/<run_id>/`` (resumable), then publish the results.

    The state folder is never a pipeline output, so a killed job resumes from its last
    checkpoint on rerun, while changed settings get a fresh folder (a new run, nothing
    overwritten). Published atomically into ``model_dir``: ``best.pt``, ``metrics.csv``,
    ``normalisation.json``.
    """
    model_dir = Path(model_dir)
    run_dir = model_dir / "state" / run_id(model_name, model_cfg, pixels, exclude, init_from)
    log.info("%s: run folder %s", model_name, run_dir)
    train_model(pixels, model_name, model_cfg, run_dir, device=device, resume=resume,
                max_epochs=max_epochs, max_steps=max_steps, exclude=exclude,
                init_from=init_from)
    for name in ("normalisation.json", "metrics.csv", "best.pt"):
        with atomic_path(model_dir / name) as tmp:
            shutil.copyfile(run_dir / name, tmp)
    return model_dir / "best.pt"
