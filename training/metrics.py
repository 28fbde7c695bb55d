"""Evaluation metrics for defection scores and value forecasts, with bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    mean_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)

# Below these, a metric on the test as_of is reported but flagged as too noisy to trust.
MIN_ROWS = 200
MIN_DEFECTIONS = 30


def _ordered_tie_averaged(actual: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``actual`` ordered by ``score`` (highest first), each run of tied scores replaced by its
    mean: prefix sums then equal their expectation over a random order within ties, so a score
    with many equal values (e.g. last-period revenue of 0) is not flattered by the row order."""
    a = np.asarray(actual, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if a.shape != s.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"actual and score must be 1-d of equal length, got {a.shape}, {s.shape}")
    if np.isnan(s).any():
        raise ValueError("score contains NaN")
    order = np.argsort(-s, kind="stable")
    a_sorted, s_sorted = a[order], s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    sizes = np.diff(np.r_[starts, a_sorted.size])
    return np.repeat(np.add.reduceat(a_sorted, starts) / sizes, sizes)


def lift_at(y: np.ndarray, score: np.ndarray, share: float = 0.1) -> float:
    """Defection rate among the top ``share`` by score, over the overall rate."""
    ordered = _ordered_tie_averaged(y, score)
    k = max(1, round(len(ordered) * share))
    base = ordered.mean()
    return float(ordered[:k].mean() / base) if base > 0 else float("nan")


def _gini(actual: np.ndarray, score: np.ndarray) -> float:
    ordered = _ordered_tie_averaged(actual, score)
    n = len(ordered)
    return float(np.cumsum(ordered).sum() / ordered.sum() / n - (n + 1) / (2 * n))


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of ``actual`` ordered by ``predicted``, over the Gini of the perfect order.

    1 is a perfect ranking, 0 a random one; blind to the level of ``predicted``. Negative
    actuals (net returns) count as zero.
    """
    actual = np.clip(np.asarray(actual, dtype=float), 0, None)
    if actual.sum() <= 0:
        return float("nan")
    return _gini(actual, predicted) / _gini(actual, actual)


def top_capture(actual: np.ndarray, predicted: np.ndarray, share: float = 0.2) -> float:
    """Share of actual value held by the top ``share`` of accounts by prediction."""
    actual = np.clip(np.asarray(actual, dtype=float), 0, None)
    if actual.sum() <= 0:
        return float("nan")
    ordered = _ordered_tie_averaged(actual, predicted)
    k = max(1, round(len(ordered) * share))
    return float(ordered[:k].sum() / ordered.sum())


def bias_pct(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Total predicted over total actual, minus one, in percent."""
    total = float(np.sum(actual))
    return float(100 * (np.sum(predicted) - total) / total) if total else float("nan")


def coverage(actual: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of actual values inside [low, high]."""
    actual = np.asarray(actual, dtype=float)
    return float(np.mean((actual >= low) & (actual <= high)))


def spearman(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(spearmanr(actual, predicted).statistic)


def defection_metrics(
    y: np.ndarray, score: np.ndarray, *, is_probability: bool
) -> dict[str, float]:
    """ROC-AUC, PR-AUC, top-decile lift, and Brier when ``score`` is a probability."""
    y = np.asarray(y, dtype=int)
    out = {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "lift_top_decile": lift_at(y, score, 0.1),
    }
    if is_probability:
        out["brier"] = float(brier_score_loss(y, score))
    return out


def value_metrics(
    actual: np.ndarray,
    predicted: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> dict[str, float]:
    """MAE, RMSE, Spearman, normalized Gini, top-20% capture, total bias and interval coverage."""
    out = {
        "mae": float(mean_absolute_error(actual, predicted)),
        "rmse": float(root_mean_squared_error(actual, predicted)),
        "spearman": spearman(actual, predicted),
        "gini": normalized_gini(actual, predicted),
        "top20_capture": top_capture(actual, predicted, 0.2),
        "bias_pct": bias_pct(actual, predicted),
    }
    if low is not None and high is not None:
        out["coverage"] = coverage(actual, low, high)
    return out


def bootstrap_ci(
    metrics: Callable[[np.ndarray], dict[str, float]],
    n_rows: int,
    *,
    n_boot: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric ``metrics(indices)`` returns.

    Rows are resampled with replacement; a resample where a metric is undefined (one class
    only) is skipped for that metric.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, n_rows, n_rows)
        try:
            values = metrics(idx)
        except ValueError:
            continue
        for name, value in values.items():
            if np.isfinite(value):
                draws.setdefault(name, []).append(value)
    tail = (1 - level) / 2 * 100
    out = {}
    for name, draw in draws.items():
        lo, hi = np.percentile(draw, [tail, 100 - tail])
        out[name] = (float(lo), float(hi))
    return out
