"""Held-out-domain embeddings for the transfer protocols (unseen region, unseen year).

For each value v of the domain (every region, or every year, that has test samples) the model
is trained on the pixel dataset WITHOUT any sample of v (training, validation, normalisation
statistics and date effects alike: ``train_model(exclude=(kind, v))``), and every sample is
embedded with that model into ``<out>/<v>.nc``. The downstream stage then fits its
classifier on the other domains' samples and scores the test samples of v with these
features, so no trained part ever saw the held-out domain (docs/contracts.md section 5).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gpvae.errors import InputError
from gpvae.evaluate.embed import embed_pixels
from gpvae.io.atomic import atomic_path
from gpvae.io.pixels import open_pixels
from gpvae.train.loop import train_and_publish

log = logging.getLogger(__name__)

KINDS = ("region", "year")


def domains(pixels: Path, kind: str) -> list[str]:
    """The values of ``kind`` that have test samples, as text (sorted)."""
    if kind not in KINDS:
        raise InputError(f"unknown transfer protocol {kind!r}", field="kind",
                         fix=f"use one of {', '.join(KINDS)}")
    with open_pixels(pixels) as ds:
        test = ds["split"].values.astype(str) == "test"
        values = ds[kind].values.astype(str) if kind in ds.variables else np.array([])
    return sorted(set(values[test[:values.size]].tolist())) if values.size else []


def transfer_embeddings(pixels: Path, model_name: str, model_cfg: dict, kind: str,
                        model_dir: Path, out_dir: Path, *, ref_days: np.ndarray,
                        device: str = "auto", batch_size: int = 512) -> Path:
    """Train one held-out-domain model per value of ``kind`` (in ``model_dir/<kind>-<v>``,
    resumable) and write its embeddings of every sample to ``out_dir/<v>.nc``; the folder is
    published atomically. A dataset with fewer than 2 values gets an empty folder (the
    protocol cannot run)."""
    values = domains(pixels, kind)
    out_dir = Path(out_dir)
    if len(values) < 2:
        log.warning("%s protocol: %d %s value(s) with test samples (%s): nothing to hold out",
                    kind, len(values), kind, values)
    with atomic_path(out_dir, directory=True) as tmp:
        for value in values if len(values) >= 2 else []:
            log.info("%s: training without %s %s", model_name, kind, value)
            best = train_and_publish(Path(pixels), model_name, model_cfg,
                                     Path(model_dir) / f"{kind}-{value}", device=device,
                                     exclude=(kind, value))
            embed_pixels(Path(pixels), best, tmp / f"{value}.nc", ref_days=ref_days,
                         device=device, batch_size=batch_size)
    return out_dir
