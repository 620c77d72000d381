"""Downstream classification on frozen embeddings (docs/contracts.md sections 4 and 6).

Features: the embedding ``mean`` of each sample flattened over its non-sample dims, i.e.
``(ref_day, latent)`` (or ``(ref_day, feature)`` for ``raw_linear``); with ``with_var=True``
the ``var`` array is appended (off by default: the reported numbers use the mean only). Each
classifier is a pipeline *mean imputation -> standardisation -> classifier*, all fitted on the
training part only (imputation only matters for stray NaN inside a valid sample).

Protocols (``split`` column of the rows says what was scored):

- ``parcel``: the dataset's parcel-grouped split, train+val to fit, test to score (``test``).
- ``region``: for each region R, fit on train+val samples of the other regions, score on the
  test samples of R (``test:R``). For a trained embedding model the features of that run come
  from the model trained WITHOUT region R (``transfer``: a folder of embeddings files
  ``<R>.nc``, see :mod:`gpvae.protocols.transfer`), so neither the encoder, the decoder, the
  prior's hyperparameters nor the classifier ever saw the held-out region; without such a
  folder the protocol is skipped for that model (raw features, which involve no training, use
  the main file).
- ``year``: the same with the sample's ``year`` (``test:2022``).
- ``labels_<p>pct``: the parcel protocol with a fraction p of the training labels, drawn per
  class with the seed (at least one sample per class).

Samples with ``valid == 0`` (no observation: NaN embedding) or an unknown label (-1) are
excluded, and counted in the log.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import gpvae
from gpvae.errors import InputError
from gpvae.evaluate.classification_metrics import (
    cohen_kappa,
    confusion,
    f1_per_class,
    macro_f1,
    overall_accuracy,
)
from gpvae.evaluate.tidy import tidy_row, write_tidy_csv
from gpvae.io.atomic import atomic_path

log = logging.getLogger(__name__)

CLASSIFIERS = ("rf", "logreg", "mlp")
PROTOCOLS = ("parcel", "region", "year", "labels")
CONFUSION_COLUMNS = ["model", "classifier", "protocol", "split", "seed", "true", "pred",
                     "count"]


@dataclasses.dataclass
class EmbeddingTable:
    """Features and per-sample metadata of the usable samples of an embeddings file."""

    features: np.ndarray  # (N, F) float32
    labels: np.ndarray  # (N,) int64, index into class_names
    split: np.ndarray  # (N,) str
    region: np.ndarray  # (N,) str
    year: np.ndarray  # (N,) int64
    class_names: list[str]
    model: str
    layout: dict  # how features were built (variables, dims, sizes, ref_day)


def load_embeddings(path: Path, *, with_var: bool = False) -> EmbeddingTable:
    """Read an embeddings file (contracts section 4); drop samples with valid 0 or label -1."""
    path = Path(path)
    fix = "re-run the embed stage (docs/contracts.md section 4)"
    if not path.is_file():
        raise InputError("embeddings file not found", file=path, fix=fix)
    with xr.open_dataset(path, engine="netcdf4") as ds:
        for name in ("mean", "label", "split"):
            if name not in ds.variables:
                raise InputError(f"embeddings file lacks {name!r}", file=path, field=name,
                                 fix=fix)
        variables = ["mean"] + (["var"] if with_var else [])
        if with_var and "var" not in ds:
            raise InputError("with_var needs a `var` variable", file=path, field="var",
                             fix="use with_var=False for this embedding set")
        n = ds.sizes["sample"]
        valid = ds["valid"].values.astype(bool) if "valid" in ds else np.ones(n, bool)
        labels = ds["label"].values.astype(np.int64)
        keep = valid & (labels >= 0)
        if np.unique(labels[keep]).size < 2:
            raise InputError(f"classification needs labelled samples of at least 2 classes; "
                             f"{path.name} has {int(keep.sum())} labelled sample(s) with an "
                             f"embedding, of {np.unique(labels[keep]).size} class(es) "
                             "(unlabelled samples, label -1, are never classified)",
                             file=path, field="label",
                             fix="give the table's label column (inputs.table.columns.label), "
                             "or do not ask for classification from an unlabelled table")
        log.info("%s: %d samples, %d excluded with valid = 0, %d excluded with label -1",
                 path.name, n, int((~valid).sum()), int((valid & (labels < 0)).sum()))
        parts = [ds[v].transpose("sample", ...).values[keep].reshape(int(keep.sum()), -1)
                 for v in variables]
        mean = ds["mean"].transpose("sample", ...)
        layout = {"variables": variables, "dims": list(mean.dims[1:]),
                  "sizes": [int(mean.sizes[d]) for d in mean.dims[1:]],
                  "ref_day": (ds["ref_day"].values.astype(np.float64).tolist()
                              if "ref_day" in ds.variables else None)}
        k = int(labels.max(initial=-1)) + 1
        names = ([str(c) for c in ds["class_name"].values] if "class_name" in ds.variables
                 else [f"class_{i}" for i in range(k)])
        region = (ds["region"].values.astype(str) if "region" in ds.variables
                  else np.full(n, "all"))
        year = ds["year"].values.astype(np.int64) if "year" in ds.variables else np.zeros(n)
        table = EmbeddingTable(
            features=np.concatenate(parts, axis=1).astype(np.float32), labels=labels[keep],
            split=ds["split"].values.astype(str)[keep], region=region[keep],
            year=np.asarray(year, dtype=np.int64)[keep], class_names=names,
            model=str(ds.attrs.get("model", path.stem)), layout=layout)
    if len(table.class_names) < k:
        raise InputError(f"labels go up to {k - 1} but only {len(names)} class names",
                         file=path, field="class_name", fix=fix)
    return table


def make_classifier(name: str, seed: int) -> Pipeline:
    """Imputer -> standard scaler -> ``rf`` | ``logreg`` | ``mlp`` (scikit-learn)."""
    if name == "rf":
        clf = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
    elif name == "logreg":
        clf = LogisticRegression(max_iter=2000, random_state=seed)
    elif name == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=200, tol=1e-3,
                            random_state=seed)
    else:
        raise InputError(f"unknown classifier {name!r}", field="classifiers",
                         fix=f"use classifiers among {list(CLASSIFIERS)}")
    return Pipeline([("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
                     ("scale", StandardScaler()), ("clf", clf)])


def label_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Positions of a per-class random fraction of ``labels`` (>= 1 per class), sorted."""
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"label fraction {fraction} not in (0, 1]", field="label_fractions",
                         fix="e.g. label_fractions: [0.01, 0.1, 1.0]")
    picked = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        n = max(1, int(round(fraction * pos.size)))
        picked.append(rng.choice(pos, size=n, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def fraction_name(fraction: float) -> str:
    """Protocol name of a label fraction: 0.01 -> labels_1pct, 0.005 -> labels_0.5pct."""
    pct = fraction * 100.0
    return f"labels_{int(round(pct))}pct" if abs(pct - round(pct)) < 1e-9 else f"labels_{pct:g}pct"


def trained_features(path: Path) -> bool:
    """Whether an embeddings file comes from a trained model (it names its checkpoint)."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return bool(ds.attrs.get("checkpoint"))


def protocol_splits(table: EmbeddingTable, protocols: tuple[str, ...],
                    label_fractions: tuple[float, ...]
                    ) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, float]]:
    """(protocol, split name, train positions, test positions, label fraction) per run."""
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise InputError(f"unknown protocols {unknown}", field="protocols",
                         fix=f"use protocols among {list(PROTOCOLS)}")
    fit = np.isin(table.split, ("train", "val"))
    test = table.split == "test"
    if "parcel" in protocols:
        yield "parcel", "test", np.flatnonzero(fit), np.flatnonzero(test), 1.0
    for protocol, group in (("region", table.region), ("year", table.year)):
        if protocol not in protocols:
            continue
        values = np.unique(group)
        if values.size < 2:
            log.warning("protocol %s skipped: one %s only (%s)", protocol, protocol, values)
            continue
        for held_out in values:
            yield (protocol, f"test:{held_out}", np.flatnonzero(fit & (group != held_out)),
                   np.flatnonzero(test & (group == held_out)), 1.0)
    if "labels" in protocols:
        for fraction in label_fractions:
            yield (fraction_name(fraction), "test", np.flatnonzero(fit), np.flatnonzero(test),
                   float(fraction))


def score_rows(cm: np.ndarray, class_names: list[str], **keys: object) -> list[dict]:
    """Tidy rows of one confusion matrix: OA, kappa, macro_f1 and f1 per class (``class``)."""
    rows = [tidy_row(metric=m, value=v, **keys) for m, v in
            (("OA", overall_accuracy(cm)), ("kappa", cohen_kappa(cm)),
             ("macro_f1", macro_f1(cm)))]
    rows += [tidy_row(metric="f1", value=float(v), **keys, **{"class": name})
             for name, v in zip(class_names, f1_per_class(cm), strict=True)]
    return rows


def fit_predict(name: str, seed: int, x_train: np.ndarray, y_train: np.ndarray,
                x_test: np.ndarray) -> tuple[Pipeline, np.ndarray]:
    """Fit classifier ``name`` with ``seed``; return it and its predictions on ``x_test``.

    BLAS runs on one thread: these problems are small, and a multi-threaded BLAS spinning on
    a busy machine made one logistic regression 40x slower (83 s instead of 2 s on the demo's
    2 cores shared with another job); the random forest still uses every core (joblib)."""
    model = make_classifier(name, seed)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    if x_test.shape[0] == 0:
        return model, np.zeros(0, np.int64)
    return model, model.predict(x_test).astype(np.int64)


def save_classifier(path: Path, model: Pipeline, table: EmbeddingTable) -> Path:
    """joblib bundle {pipeline, class_names, layout, embedding_model, gpvae_version}."""
    import joblib

    bundle = {"pipeline": model, "class_names": list(table.class_names),
              "layout": dict(table.layout), "embedding_model": table.model,
              "gpvae_version": gpvae.__version__}
    with atomic_path(path) as tmp:
        joblib.dump(bundle, tmp)
    return Path(path)


def load_classifier(path: Path) -> dict:
    """The bundle written by :func:`save_classifier`."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise InputError("classifier file not found", file=path,
                         fix="run the classify stage first (it writes the random forest)")
    bundle = joblib.load(path)
    if not isinstance(bundle, dict) or "pipeline" not in bundle:
        raise InputError("not a gpvae classifier bundle", file=path, field="pipeline",
                         fix="re-run the classify stage")
    return bundle


def classify(embeddings: Path, out_csv: Path, out_confusion: Path, out_model: Path, *,
             classifiers: tuple[str, ...] = CLASSIFIERS,
             seeds: tuple[int, ...] = (0, 1, 2),
             protocols: tuple[str, ...] = PROTOCOLS,
             label_fractions: tuple[float, ...] = (0.01, 0.1, 1.0),
             with_var: bool = False, transfer: dict[str, Path] | None = None) -> Path:
    """Score every (protocol, classifier, seed) on an embeddings file; write tidy metrics,
    confusion rows and the parcel-protocol random forest (seed 0, all train+val). Returns
    ``out_csv``. ``transfer``: protocol (region | year) -> folder of held-out-domain
    embeddings ``<value>.nc`` for the transfer protocols of a trained model."""
    table = load_embeddings(embeddings, with_var=with_var)
    transfer = {k: Path(v) for k, v in (transfer or {}).items()}
    trained = trained_features(Path(embeddings))
    k = len(table.class_names)
    for name in classifiers:
        make_classifier(name, 0)  # fail early on an unknown name
    rows: list[dict] = []
    conf: list[dict] = []
    final: Pipeline | None = None
    runs = list(protocol_splits(table, tuple(protocols), tuple(label_fractions)))
    skipped: set[str] = set()
    for protocol, split, train_pos, test_pos, fraction in runs:
        run_table = table
        if protocol in ("region", "year") and trained:
            held = Path(transfer[protocol]) / f"{split.removeprefix('test:')}.nc" if (
                protocol in transfer) else None
            if held is None or not held.is_file():
                if protocol not in skipped:
                    log.warning("%s: protocol %s skipped: no embeddings from a model trained "
                                "without the held-out %s (%s)", table.model, protocol, protocol,
                                held or "no transfer folder given")
                    skipped.add(protocol)
                continue
            run_table = load_embeddings(held, with_var=with_var)
            group = run_table.region if protocol == "region" else run_table.year.astype(str)
            value = split.removeprefix("test:")
            fit = np.isin(run_table.split, ("train", "val"))
            train_pos = np.flatnonzero(fit & (group != value))
            test_pos = np.flatnonzero((run_table.split == "test") & (group == value))
        if test_pos.size == 0 or train_pos.size == 0:
            log.warning("%s %s: %d train / %d test samples: skipped", protocol, split,
                        train_pos.size, test_pos.size)
            continue
        for seed in seeds:
            rng = np.random.default_rng([int(seed), 7919])
            fit_pos = (train_pos if fraction >= 1.0
                       else train_pos[label_subset(run_table.labels[train_pos], fraction, rng)])
            if np.unique(run_table.labels[fit_pos]).size < 2:
                log.warning("%s %s seed %d: one class in training: skipped", protocol, split,
                            seed)
                continue
            for name in classifiers:
                model, pred = fit_predict(name, seed, run_table.features[fit_pos],
                                          run_table.labels[fit_pos], run_table.features[test_pos])
                if protocol == "parcel" and name == "rf" and seed == 0:
                    final = model
                cm = confusion(run_table.labels[test_pos], pred, k)
                key = {"model": run_table.model, "task": "classification", "protocol": protocol,
                       "split": split, "seed": int(seed), "classifier": name}
                rows += score_rows(cm, run_table.class_names, **key)
                rows += [tidy_row(metric=m, value=float(n), **key)
                         for m, n in (("n_train", fit_pos.size), ("n_test", test_pos.size))]
                conf += [{"model": run_table.model, "classifier": name, "protocol": protocol,
                          "split": split, "seed": int(seed), "true": run_table.class_names[i],
                          "pred": run_table.class_names[j], "count": int(cm[i, j])}
                         for i in range(k) for j in range(k)]
                log.info("%s %s %s seed %d %s: OA %.3f kappa %.3f (%d train, %d test)",
                         run_table.model, protocol, split, seed, name, overall_accuracy(cm),
                         cohen_kappa(cm), fit_pos.size, test_pos.size)
    if final is None:
        fit_pos = np.flatnonzero(np.isin(table.split, ("train", "val")))
        if fit_pos.size == 0:
            raise InputError("no train/val sample with a label and an embedding",
                             file=embeddings, field="split", fix="check the sampling stage")
        final, _ = fit_predict("rf", 0, table.features[fit_pos], table.labels[fit_pos],
                               table.features[:0])
    save_classifier(out_model, final, table)
    with atomic_path(out_confusion) as tmp:
        pd.DataFrame(conf, columns=CONFUSION_COLUMNS).to_csv(tmp, index=False)
    return write_tidy_csv(rows, out_csv)
