"""Classification metrics from integer labels (pure numpy): confusion, OA, kappa, F1.

Labels are integers in ``0 .. num_classes - 1``; every metric is computed from the confusion
matrix ``C[i, j]`` = number of samples of true class i predicted as class j.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix C[i, j] = #{n : y_true[n] = i, y_pred[n] = j}, int64 (K, K)."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    bad = (y_true < 0) | (y_true >= num_classes) | (y_pred < 0) | (y_pred >= num_classes)
    if bad.any():
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def overall_accuracy(cm: np.ndarray) -> float:
    """OA = trace(C) / sum(C) (NaN for an empty matrix)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def cohen_kappa(cm: np.ndarray) -> float:
    """Cohen (1960): kappa = (p_o - p_e) / (1 - p_e), p_e = sum_k row_k col_k / N^2."""
    total = cm.sum()
    if not total:
        return float("nan")
    p_o = np.trace(cm) / total
    p_e = float((cm.sum(axis=1) * cm.sum(axis=0)).sum()) / float(total) ** 2
    if p_e == 1.0:  # a single class in truth and prediction: perfect agreement by chance
        return 1.0 if p_o == 1.0 else 0.0
    return float((p_o - p_e) / (1.0 - p_e))


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    """F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k); NaN for a class absent from truth and prediction."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2.0 * tp + fp + fn
    return np.divide(2.0 * tp, denom, out=np.full_like(tp, np.nan), where=denom > 0)


def macro_f1(cm: np.ndarray) -> float:
    """Macro-F1 = mean of F1_k over the classes present in truth or prediction."""
    f1 = f1_per_class(cm)
    return float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")
