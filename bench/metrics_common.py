"""Ranking and error metrics shared by the benchmarks under ``bench/``.

Bench-local on purpose: the product keeps its own metrics module, and the benchmarks must not
move when that one changes. Every ranking metric here breaks ties in the score by averaging over
all orderings of the tied rows, so a baseline with many equal scores (say, zero revenue last
period) is neither flattered nor punished by the row order of the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score


def _sorted_tie_averaged(actual: ArrayLike, score: ArrayLike) -> NDArray[np.float64]:
    """Return ``actual`` ordered by ``score`` descending, each tie group replaced by its mean.

    Cumulative sums are linear, so any prefix sum of the result equals the expected prefix sum
    over a uniformly random ordering within each group of tied scores.
    """
    a = np.asarray(actual, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if a.shape != s.shape or a.ndim != 1:
        raise ValueError(
            f"actual and score must be 1-d of equal length, got {a.shape} and {s.shape}"
        )
    if a.size == 0:
        raise ValueError("actual and score are empty")
    if np.isnan(s).any():
        raise ValueError("score contains NaN; fill or drop those rows first")
    order = np.argsort(-s, kind="stable")
    a_sorted, s_sorted = a[order], s[order]
    # Tie groups are runs of equal scores in the sorted order.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    sums = np.add.reduceat(a_sorted, starts)
    sizes = np.diff(np.r_[starts, a_sorted.size])
    return np.repeat(sums / sizes, sizes)


def _gini(actual: ArrayLike, score: ArrayLike) -> float:
    """Unnormalised Gini: area between the cumulative-share curve ordered by score and the diagonal.

    Uses the tie-averaged order of ``_sorted_tie_averaged``.
    """
    a = _sorted_tie_averaged(actual, score)
    total = a.sum()
    if total <= 0:
        raise ValueError("actual must have a positive total for a Gini coefficient")
    n = a.size
    return float(np.cumsum(a).sum() / total / n - (n + 1) / (2 * n))


def normalized_gini(actual: ArrayLike, pred: ArrayLike) -> float:
    """Gini of ``actual`` ordered by ``pred`` divided by the Gini of ``actual`` ordered by itself.

    1 is a perfect ranking, 0 a random one; insensitive to the level of ``pred``.
    """
    return _gini(actual, pred) / _gini(actual, actual)


def top_capture(actual: ArrayLike, pred: ArrayLike, frac: float = 0.2) -> float:
    """Share of the total of ``actual`` held by the top ``frac`` of rows ranked by ``pred``."""
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    a = _sorted_tie_averaged(actual, pred)
    k = round(frac * a.size)
    return float(a[:k].sum() / a.sum())


def lift_at(y_true: ArrayLike, score: ArrayLike, frac: float = 0.1) -> float:
    """Positive rate among the top ``frac`` of rows by ``score`` over the overall positive rate."""
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    y = _sorted_tie_averaged(y_true, score)
    k = max(1, round(frac * y.size))
    return float(y[:k].mean() / y.mean())


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
