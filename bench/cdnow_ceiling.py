"""How far any model can go on CDNOW's cut: trees fitted on the very outcomes being scored.

Used by bench/cdnow.py. kam trains on the history before the cut, so its scores can only be as
good as what the log up to the cut tells about the 26 weeks after it. To measure that limit,
the trees here are given what no user has: the outcomes after the cut. Five-fold
cross-fitting over the customers at the cut (each fold scored by trees that never saw it)
trains on the same rows, the same age and the same season as the test, so no shift between
training and scoring weeks can hold them back. Two feature sets:

- kam's own features at the cut (with kam's BG/NBD offsets, tree parameters and shape);
- those plus the customer's whole weekly history: order lines, revenue and CDs in each of
  the 52 weeks before the cut, and the totals (everything the log records, week by week).

If these reach no further than kam, what kam misses is not in the log.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from kam.training.fit.boosting import booster_params, tree_shape
from kam.training.fit.options import FitOptions
from kam.training.metrics import bootstrap_ci, normalized_gini

FOLDS = 5
N_BOOT = 300
TREES = 100
# kam's options but a learning rate of 0.05, the best of four settings tried for the ceiling
OPTIONS = FitOptions(learning_rate=0.05, num_threads=2)
WEEKS = 52


def weekly_history(log: pd.DataFrame, cutoff: pd.Timestamp, accounts: pd.Series) -> np.ndarray:
    """Order lines, revenue and CDs per week for the ``WEEKS`` weeks up to ``cutoff`` (older
    lines fall into the last week), plus lifetime totals and days since the first order."""
    cut = log[log["order_date"] <= cutoff].copy()
    cut["week"] = ((cutoff - cut["order_date"]).dt.days // 7).clip(upper=WEEKS - 1)
    grid = {"index": "account_id", "columns": "week", "fill_value": 0}
    weekly = [
        cut.pivot_table(values="revenue", aggfunc="size", **grid),
        cut.pivot_table(values="revenue", aggfunc="sum", **grid),
        cut.pivot_table(values="quantity", aggfunc="sum", **grid),
    ]
    totals = cut.groupby("account_id").agg(
        lines=("revenue", "size"), revenue=("revenue", "sum"), cds=("quantity", "sum"),
        first=("order_date", "min"),
    )
    totals["first"] = (cutoff - totals["first"]).dt.days
    history = pd.concat([*weekly, totals], axis=1)
    return history.reindex(accounts.to_numpy()).fillna(0).to_numpy(dtype=float)


def _fold_fit(
    x: np.ndarray, label: np.ndarray, init: np.ndarray, categorical: list[int],
    **objective: Any,
) -> lgb.Booster:
    """One fold's trees with kam's parameters and shape, started from ``init``."""
    params = booster_params(tree_shape("small", len(x)), OPTIONS, **objective)
    data = lgb.Dataset(x, label=label, init_score=init, categorical_feature=categorical)
    return lgb.train(params, data, TREES)


def _cross_fit(
    x: np.ndarray, y: np.ndarray, value: np.ndarray, scorer: Any, kam_x: np.ndarray,
    categorical: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold defection log-odds and value, from the offsets the model chose."""
    offset = scorer.defection_offset(kam_x)  # None where the folds chose no BG/NBD offset
    log_odds = np.zeros(len(y)) if offset is None else offset
    log_base = np.log(scorer.value_offset(kam_x))
    risk, worth = np.zeros(len(y)), np.zeros(len(y))
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(x, y):
        defection = _fold_fit(
            x[train], y[train], log_odds[train], categorical, objective="binary"
        )
        risk[test] = defection.predict(x[test], raw_score=True) + log_odds[test]
        revenue = _fold_fit(
            x[train], value[train], log_base[train], categorical,
            objective="tweedie", tweedie_variance_power=OPTIONS.tweedie_power,
        )
        worth[test] = np.exp(revenue.predict(x[test], raw_score=True) + log_base[test])
    return risk, worth


def ceiling(
    at_cut: pd.DataFrame, truth: pd.DataFrame, log: pd.DataFrame, cutoff: pd.Timestamp,
    scorer: Any,
) -> dict[str, dict[str, float]]:
    """ROC-AUC and normalized Gini of trees cross-fitted on the outcomes after ``cutoff``, with
    90% bootstrap intervals over customers (``*_low``, ``*_high``).

    ``at_cut`` holds kam's feature rows at the cutoff, ``truth`` each customer's ``defected``
    and ``actual_value``, ``log`` the order lines (with ``quantity``), ``scorer`` the champion's.
    """
    rows = at_cut.merge(truth, on="account_id")
    y = rows["defected"].to_numpy(dtype=int)
    value = rows["actual_value"].to_numpy(dtype=float)
    spec = scorer.spec
    kam_x = spec.matrix(rows)
    history = weekly_history(log, cutoff, rows["account_id"])
    sets = {
        "kam's features": kam_x,
        "kam's features + weekly history": np.hstack([kam_x, history]),
    }
    result = {}
    for name, x in sets.items():
        risk, worth = _cross_fit(x, y, value, scorer, kam_x, list(spec.categorical_indices))

        def figures(i: np.ndarray, risk: np.ndarray = risk, worth: np.ndarray = worth) -> dict:
            return {
                "roc_auc": float(roc_auc_score(y[i], risk[i])),
                "norm_gini": float(normalized_gini(value[i], worth[i])),
            }

        result[name] = figures(np.arange(len(y)))
        for metric, (low, high) in bootstrap_ci(figures, len(y), n_boot=N_BOOT).items():
            result[name] |= {f"{metric}_low": low, f"{metric}_high": high}
    return result
