"""LightGBM pieces: tree shapes, parameters, datasets, training, the value base and intervals."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from kam.models.feature_spec import FeatureSpec
from kam.models.scorer import EXPECTED_FEATURE, OFFSET_FEATURE, TENURE_FEATURE, value_base
from kam.training.fit.options import EARLY_STOP, MAX_TREES, FitOptions


def _shapes(n_rows: int) -> dict[str, dict[str, Any]]:
    leaf_floor = int(np.clip(n_rows / 400, 20, 200))
    return {
        "small": {"num_leaves": 7, "min_child_samples": leaf_floor * 2, "max_depth": 4},
        "medium": {"num_leaves": 15, "min_child_samples": leaf_floor, "max_depth": 6},
        "large": {"num_leaves": 31, "min_child_samples": leaf_floor, "max_depth": 8},
    }


def capacity_grid(n_rows: int) -> dict[str, dict[str, Any]]:
    """Candidate tree shapes, kept in line with the data: small books get small trees."""
    grid = _shapes(n_rows)
    if n_rows < 20_000:
        del grid["large"]
    return grid


def tree_shape(name: str, n_rows: int) -> dict[str, Any]:
    """The shape ``name`` sized for ``n_rows`` (a refit may see fewer rows than chose it)."""
    return _shapes(n_rows)[name]


def booster_params(shape: Mapping[str, Any], options: FitOptions, **extra: Any) -> dict[str, Any]:
    """LightGBM parameters of every kam model: ``shape`` (:func:`tree_shape`), the options'
    learning rate, seed and threads, and ``extra`` (objective, metric...)."""
    return {
        "learning_rate": options.learning_rate,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "min_sum_hessian_in_leaf": 1e-3,
        "seed": options.seed,
        "deterministic": True,
        "num_threads": options.num_threads,
        "verbosity": -1,
        **shape,
        **extra,
    }


def _dataset(
    spec: FeatureSpec, frame: pd.DataFrame, label: np.ndarray, init: np.ndarray | None = None
) -> lgb.Dataset:
    return lgb.Dataset(
        spec.matrix(frame),
        label=label,
        init_score=init,
        feature_name=list(spec.names),
        categorical_feature=spec.categorical_indices,
        free_raw_data=False,
    )


def _train(
    params: dict[str, Any],
    spec: FeatureSpec,
    train: pd.DataFrame,
    y_train: np.ndarray,
    valid: pd.DataFrame | None = None,
    y_valid: np.ndarray | None = None,
    rounds: int = MAX_TREES,
    offset: Callable[[pd.DataFrame], np.ndarray] | None = None,
) -> lgb.Booster:
    dtrain = _dataset(spec, train, y_train, offset(train) if offset else None)
    if valid is None:
        return lgb.train(params, dtrain, num_boost_round=rounds)
    dvalid = lgb.Dataset(
        spec.matrix(valid),
        label=y_valid,
        init_score=offset(valid) if offset else None,
        reference=dtrain,
    )
    return lgb.train(
        params,
        dtrain,
        num_boost_round=rounds,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)],
    )


def _offset_of(names: list[str]) -> tuple[str | None, str | None, str | None]:
    revenue = OFFSET_FEATURE if OFFSET_FEATURE in names else None
    tenure = TENURE_FEATURE if TENURE_FEATURE in names else None
    expected = EXPECTED_FEATURE if EXPECTED_FEATURE in names and revenue else None
    return revenue, tenure, expected


def _base(
    frame: pd.DataFrame,
    revenue: str | None,
    tenure: str | None,
    horizon_days: float,
    expected: str | None = None,
) -> np.ndarray:
    if revenue is None:
        return np.ones(len(frame))
    tenure_days = frame[tenure].to_numpy(dtype=float) if tenure else None
    known = frame[expected].to_numpy(dtype=float) if expected else None
    return value_base(frame[revenue].to_numpy(dtype=float), tenure_days, horizon_days, known)


def _value_target(frame: pd.DataFrame) -> np.ndarray:
    # net revenue can be negative (returns exceed purchases); the forecast is of what they buy
    return np.clip(frame["label_value"].to_numpy(dtype=float), 0.0, None)


def _conformal_margin(scores: np.ndarray, level: float) -> float:
    n = len(scores)
    q = min(1.0, np.ceil((n + 1) * level) / n)
    return float(np.quantile(scores, q, method="higher"))


def _quantile_pair(
    spec: FeatureSpec,
    frame: pd.DataFrame,
    target: np.ndarray,
    shape: Mapping[str, Any],
    options: FitOptions,
    rounds: int,
    base_of: Callable[[pd.DataFrame], np.ndarray],
) -> tuple[lgb.Booster, lgb.Booster]:
    """Quantile models of the log ratio of value to last period's revenue."""
    tail = (1 - options.interval_level) / 2
    log_target = np.log1p(target) - np.log1p(base_of(frame))
    pair = []
    for alpha in (tail, 1 - tail):
        params = booster_params(shape, options, objective="quantile", alpha=alpha)
        pair.append(_train(params, spec, frame, log_target, rounds=rounds))
    return pair[0], pair[1]
