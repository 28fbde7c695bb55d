"""Metric tables for the benchmarks under ``bench/``.

The ranking metrics are the product's own (``training.metrics``: ties in a score are averaged
over all orderings of the tied rows), so both halves of a comparison are measured alike. The
repository root is put on the path because the classical-baseline environment does not install
the product; ``training.metrics`` needs only numpy, scipy and scikit-learn.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kam.training.metrics import lift_at, normalized_gini, top_capture


def defection_metrics(
    y_true: ArrayLike, score: ArrayLike, *, is_probability: bool = False
) -> dict[str, float]:
    """ROC-AUC, PR-AUC, top-decile lift and, for probabilities, Brier score and mean prediction.

    Parameters
    ----------
    y_true
        1 where the account defected (no purchase in the horizon), else 0.
    score
        Higher means more likely to defect.
    is_probability
        Whether ``score`` is a probability, so that Brier and calibration-in-the-large apply.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc``, ``lift_top10``, ``base_rate`` and, for probabilities,
        ``brier`` and ``mean_pred``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(score, dtype=np.float64)
    out = {
        "roc_auc": float(roc_auc_score(y, s)),
        "pr_auc": float(average_precision_score(y, s)),
        "lift_top10": lift_at(y, s, 0.1),
        "base_rate": float(y.mean()),
    }
    if is_probability:
        out["brier"] = float(np.mean((s - y) ** 2))
        out["mean_pred"] = float(s.mean())
    return out


def value_metrics(actual: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """Error, ranking and level metrics of a value forecast.

    Parameters
    ----------
    actual
        Realised revenue in the horizon, one entry per account.
    pred
        Predicted revenue in the horizon.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``spearman``, ``norm_gini``, ``top20_capture`` and ``bias_pct``
        (``(sum pred - sum actual) / sum actual``, in percent).
    """
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    err = p - a
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "spearman": float(spearmanr(a, p).statistic),
        "norm_gini": normalized_gini(a, p),
        "top20_capture": top_capture(a, p, 0.2),
        "bias_pct": float(100 * (p.sum() - a.sum()) / a.sum()),
    }


def format_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> str:
    """Render ``{row: {metric: value}}`` as a fixed-width text table; missing cells are blank."""
    name_w = max(len("model"), *(len(name) for name in rows))
    col_w = [max(len(c), 10) for c in columns]
    header = [c.rjust(w) for c, w in zip(columns, col_w, strict=True)]
    lines = ["  ".join(["model".ljust(name_w), *header])]
    for name, metrics in rows.items():
        cells = [
            (f"{metrics[c]:.4f}" if c in metrics else "").rjust(w)
            for c, w in zip(columns, col_w, strict=True)
        ]
        lines.append("  ".join([name.ljust(name_w), *cells]))
    return "\n".join(lines)
