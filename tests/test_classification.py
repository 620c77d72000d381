"""Classification metrics against hand-computed values (Cohen 1960 kappa; F1 = 2TP/(2TP+FP+FN))."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpvae.evaluate.classification_metrics import (
    cohen_kappa,
    confusion,
    f1_per_class,
    macro_f1,
    overall_accuracy,
)


def _labels_from(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Label vectors realising a confusion matrix (shuffled, to test the counting)."""
    pairs = [(i, j) for i, row in enumerate(cm) for j, n in enumerate(row) for _ in range(n)]
    order = np.random.default_rng(0).permutation(len(pairs))
    arr = np.array(pairs)[order]
    return arr[:, 0], arr[:, 1]


def test_confusion_counts_rows_true_columns_pred():
    y_true, y_pred = _labels_from([[20, 5], [10, 15]])
    cm = confusion(y_true, y_pred, 2)
    assert cm.tolist() == [[20, 5], [10, 15]]
    assert confusion([0, 1, 2], [0, 0, 0], 4).tolist() == [[1, 0, 0, 0], [1, 0, 0, 0],
                                                           [1, 0, 0, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError):
        confusion([0, 3], [0, 0], 3)


def test_two_class_hand_computed():
    cm = np.array([[20, 5], [10, 15]])
    # p_o = 35/50; p_e = (25*30 + 25*20) / 50^2 = 0.5; kappa = (0.7 - 0.5) / 0.5
    assert overall_accuracy(cm) == pytest.approx(0.7)
    assert cohen_kappa(cm) == pytest.approx(0.4)
    # class 0: TP 20, FP 10, FN 5 -> 40/55; class 1: TP 15, FP 5, FN 10 -> 30/45
    assert f1_per_class(cm) == pytest.approx([40 / 55, 30 / 45])
    assert macro_f1(cm) == pytest.approx((40 / 55 + 30 / 45) / 2)


def test_three_class_kappa_and_absent_class():
    cm = np.array([[10, 0, 0], [2, 8, 0], [0, 0, 0]])
    # N = 20, p_o = 18/20, rows (10, 10, 0), cols (12, 8, 0): p_e = (120 + 80) / 400 = 0.5
    assert cohen_kappa(cm) == pytest.approx((0.9 - 0.5) / 0.5)
    f1 = f1_per_class(cm)
    assert f1[0] == pytest.approx(20 / 22) and f1[1] == pytest.approx(16 / 18)
    assert math.isnan(f1[2])  # absent from truth and prediction: not counted in macro-F1
    assert macro_f1(cm) == pytest.approx((20 / 22 + 16 / 18) / 2)


def test_perfect_chance_and_degenerate():
    assert cohen_kappa(np.diag([5, 7, 3])) == pytest.approx(1.0)
    assert overall_accuracy(np.diag([5, 7, 3])) == 1.0
    # predictions independent of truth: p_o = p_e -> kappa 0
    assert cohen_kappa(np.array([[10, 10], [10, 10]])) == pytest.approx(0.0)
    assert cohen_kappa(np.array([[4, 0], [0, 0]])) == 1.0
    assert math.isnan(overall_accuracy(np.zeros((2, 2), int)))


def test_agrees_with_sklearn():
    from sklearn.metrics import cohen_kappa_score, f1_score

    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 4, 300))
    cm = confusion(y_true, y_pred, 4)
    assert cohen_kappa(cm) == pytest.approx(cohen_kappa_score(y_true, y_pred))
    assert macro_f1(cm) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
