"""Choosing the tree shape and the calibration on the validation windows' predictions."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.metrics import brier_score_loss

from kam.models.calibration import METHODS, ProbabilityCalibrator
from kam.training.fit.options import FoldReport


def _choose_capacity(
    probabilities: Mapping[str, np.ndarray], y: np.ndarray, notes: list[str]
) -> str:
    """The cheapest tree shape whose validation log loss is within one standard error of the best.

    Shapes come cheapest first. Deeper trees cost far more to explain (exact SHAP grows with
    leaves x depth squared per tree) and to serve, so a larger shape has to be clearly better
    on the validation windows: the one-standard-error rule, on per-row log-loss differences
    paired against the best shape.
    """
    eps = 1e-15
    losses = {}
    for name, p in probabilities.items():
        q = np.clip(p, eps, 1 - eps)
        losses[name] = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    best = min(losses, key=lambda name: losses[name].mean())
    chosen = best
    for name in losses:  # cheapest first
        if name == best:
            break
        gap = losses[name] - losses[best]
        if gap.mean() <= gap.std(ddof=1) / np.sqrt(len(gap)):
            chosen = name
            break
    notes.append(
        "tree shape chosen on validation log loss (cheapest within one standard error of the "
        "best): "
        + ", ".join(f"{name} {loss.mean():.4f}" for name, loss in losses.items())
        + f" -> {chosen}"
    )
    return chosen


def _choose_calibration(
    raw: np.ndarray,
    y: np.ndarray,
    windows: np.ndarray,
    reports: list[FoldReport],
    notes: list[str],
) -> str:
    """Pick the calibration with the lowest Brier when fitted on the other windows."""
    ids = np.unique(windows)
    if len(ids) < 2:
        notes.append("calibration: one validation window only, probabilities left uncalibrated")
        return "none"
    mean_brier = {}
    for method in METHODS:
        scores = []
        for w in ids:
            held = windows == w
            if len(np.unique(y[~held])) < 2:
                continue
            cal = ProbabilityCalibrator(method).fit(raw[~held], y[~held])
            brier = float(brier_score_loss(y[held], cal.transform(raw[held])))
            reports[int(w)].brier[method] = brier
            scores.append(brier)
        mean_brier[method] = float(np.mean(scores)) if scores else float("inf")
    best = min(mean_brier, key=mean_brier.__getitem__)
    if mean_brier[best] >= mean_brier["none"]:
        best = "none"
    notes.append(
        "calibration chosen on held-out windows by Brier: "
        + ", ".join(f"{m} {b:.4f}" for m, b in mean_brier.items())
        + f" -> {best}"
    )
    return best
