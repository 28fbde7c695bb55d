"""Fitting the defection and value models on pooled out-of-time snapshots.

Model choices (capacity, number of trees, calibration, the interval's conformal margin) are made
on several rolling-origin windows, each fitted on strictly earlier snapshots, because a single
window's season and drift differ from the test's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss

from kam.models.calibration import METHODS, ProbabilityCalibrator
from kam.models.feature_spec import FeatureSpec
from kam.models.scorer import (
    EXPECTED_FEATURE,
    OFFSET_FEATURE,
    TENURE_FEATURE,
    Scorer,
    value_base,
)
from kam.training.metrics import bias_pct
from kam.training.splits import SplitPlan

LABEL_COLUMNS = ("label_value", "label_prior_value", "label_defection", "label_observed")
MAX_TREES = 2000
EARLY_STOP = 50
# The value models (point and both quantiles) are not explained per account: one shape that
# held up on the simulated books (2,000 to 20,000 accounts) without a search of its own.
VALUE_SHAPE = "small"


@dataclass(frozen=True)
class FitOptions:
    """Knobs of a training run (defaults suit 150 to 100,000 accounts)."""

    interval_level: float = 0.8
    tweedie_power: float = 1.3
    # Every scored account gets exact SHAP drivers, whose cost grows with the number of trees:
    # at 0.2 the trees number a fifth of those at 0.05 for the same validation loss, within
    # noise (README, "How training works").
    learning_rate: float = 0.2
    seed: int = 0
    # Pooled snapshots of a key-account book are small: one thread is faster than two whose
    # OpenMP barriers spin whenever the other core is busy (~100x slower per tree here).
    num_threads: int = 1
    horizon_days: float = 365.0
    # the value models correct BG/NBD x Gamma-Gamma's expected revenue where it is known
    expected_base: bool = True


@dataclass
class FoldReport:
    """What one validation window said about each choice."""

    window: str
    n_train: int
    n_valid: int
    defection_logloss: dict[str, float] = field(default_factory=dict)
    best_iteration: dict[str, int] = field(default_factory=dict)
    value_best_iteration: int = 0
    value_bias_pct: float = float("nan")
    brier: dict[str, float] = field(default_factory=dict)


@dataclass
class FitResult:
    """The fitted scorer and the evidence behind its choices."""

    scorer: Scorer
    feature_names: list[str]
    capacity: str
    calibration: str
    folds: list[FoldReport]
    notes: list[str]


def capacity_grid(n_rows: int) -> dict[str, dict[str, Any]]:
    """Candidate tree shapes, kept in line with the data: small books get small trees."""
    leaf_floor = int(np.clip(n_rows / 400, 20, 200))
    grid = {
        "small": {"num_leaves": 7, "min_child_samples": leaf_floor * 2, "max_depth": 4},
        "medium": {"num_leaves": 15, "min_child_samples": leaf_floor, "max_depth": 6},
    }
    if n_rows >= 20_000:
        grid["large"] = {"num_leaves": 31, "min_child_samples": leaf_floor, "max_depth": 8}
    return grid


def _params(shape: Mapping[str, Any], options: FitOptions, **extra: Any) -> dict[str, Any]:
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


def fit_models(
    snapshots: pd.DataFrame,
    plan: SplitPlan,
    feature_names: list[str],
    families: Mapping[str, str],
    *,
    options: FitOptions | None = None,
    progress: Callable[[str], None] | None = None,
    capacity: str | None = None,
    calibration: str | None = None,
) -> FitResult:
    """Fit the defection and value models of ``plan`` from labelled ``snapshots``.

    Parameters
    ----------
    snapshots
        Labelled feature snapshots covering every as_of of ``plan`` (test rows may be present;
        they are never used here).
    plan
        The out-of-time split.
    feature_names
        Feature columns, in model order.
    families
        Family of each feature (for the spec, later used to group drivers).
    options
        Training knobs.
    progress
        Called with a short message as each stage starts.
    capacity, calibration
        The tree shape and calibration method already chosen (by a backtest); None chooses
        them on this plan's validation windows.

    Returns
    -------
    FitResult
    """
    options = options or FitOptions()
    say = progress or (lambda _msg: None)
    notes: list[str] = []
    by_date = {d: g for d, g in snapshots.groupby("as_of")}

    def rows(dates: tuple[pd.Timestamp, ...] | list[pd.Timestamp]) -> pd.DataFrame:
        present = [by_date[d] for d in dates if d in by_date]
        return pd.concat(present, ignore_index=True) if present else snapshots.iloc[:0]

    final_train = rows(plan.train_as_of)
    spec = FeatureSpec.from_frame(final_train, feature_names, families)
    grid = capacity_grid(len(final_train))
    if capacity is not None:
        # the shape the backtest chose, sized for these rows (a larger book may add shapes)
        grid = {capacity: (grid.get(capacity) or capacity_grid(20_000)[capacity])}
    offset_feature, tenure_feature, expected_feature = _offset_of(list(spec.names))
    if not options.expected_base:
        expected_feature = None

    def base_of(frame: pd.DataFrame) -> np.ndarray:
        return _base(
            frame, offset_feature, tenure_feature, options.horizon_days, expected_feature
        )

    def log_base(frame: pd.DataFrame) -> np.ndarray:
        return np.log(base_of(frame))

    reports: list[FoldReport] = []
    oos: dict[str, list[np.ndarray]] = {"y": [], "window": []}
    oos_raw: dict[str, list[np.ndarray]] = {name: [] for name in grid}
    value_scores: list[np.ndarray] = []
    windows = _validation_windows(plan, rows, final_train, options.seed, notes)
    for i, (label, train, valid) in enumerate(windows):
        say(f"window {i + 1}/{len(windows)}: validate on {label}")
        y_tr = train["label_defection"].to_numpy(dtype=int)
        y_va = valid["label_defection"].to_numpy(dtype=int)
        report = FoldReport(label, len(train), len(valid))
        for name, shape in grid.items():
            params = _params(shape, options, objective="binary", metric="binary_logloss")
            booster = _train(params, spec, train, y_tr, valid, y_va)
            raw = booster.predict(spec.matrix(valid), num_iteration=booster.best_iteration)
            report.defection_logloss[name] = float(log_loss(y_va, raw, labels=[0, 1]))
            report.best_iteration[name] = int(booster.best_iteration or MAX_TREES)
            oos_raw[name].append(raw)
        oos["y"].append(y_va)
        oos["window"].append(np.full(len(y_va), i))

        vt_tr, vt_va = _value_target(train), _value_target(valid)
        shape = grid[VALUE_SHAPE]
        vparams = _params(
            shape,
            options,
            objective="tweedie",
            tweedie_variance_power=options.tweedie_power,
            metric="tweedie",
        )
        vbooster = _train(vparams, spec, train, vt_tr, valid, vt_va, offset=log_base)
        report.value_best_iteration = int(vbooster.best_iteration or MAX_TREES)
        xv = spec.matrix(valid)
        vpred = np.exp(
            vbooster.predict(xv, raw_score=True, num_iteration=vbooster.best_iteration)
            + log_base(valid)
        )
        report.value_bias_pct = bias_pct(vt_va, vpred)

        lo, hi = _quantile_pair(
            spec, train, vt_tr, shape, options, report.value_best_iteration, base_of
        )
        log_y = np.log1p(vt_va) - np.log1p(base_of(valid))
        value_scores.append(np.column_stack([lo.predict(xv) - log_y, log_y - hi.predict(xv)]))
        reports.append(report)

    if not reports:
        raise ValueError(
            "no validation window could be fitted: the history is too short for rolling-origin "
            f"validation ({plan.describe()})"
        )

    if capacity is None:
        capacity = _choose_capacity(
            {name: np.concatenate(p) for name, p in oos_raw.items()},
            np.concatenate(oos["y"]),
            notes,
        )
    else:
        notes.append(f"tree shape {capacity!r} as chosen by the backtest")
    rounds = int(np.median([r.best_iteration[capacity] for r in reports]))
    value_rounds = int(np.median([r.value_best_iteration for r in reports]))
    # the final fit sees more rows than any window: a few more trees than the windows chose
    rounds, value_rounds = max(20, int(rounds * 1.1)), max(20, int(value_rounds * 1.1))
    say(f"chosen capacity {capacity!r}: {rounds} trees (defection), {value_rounds} (value)")

    y_oos = np.concatenate(oos["y"])
    raw_oos = np.concatenate(oos_raw[capacity])
    windows = np.concatenate(oos["window"])
    if calibration is None:
        calibration = _choose_calibration(raw_oos, y_oos, windows, reports, notes)
    else:
        notes.append(f"calibration {calibration!r} as chosen by the backtest")
    calibrator = ProbabilityCalibrator(calibration).fit(raw_oos, y_oos)

    # Each bound gets its own conformal margin (at half the allowed miss rate): value errors are
    # skewed, and one symmetric margin over-widened the upper side.
    pooled = np.concatenate(value_scores)
    side_level = 1 - (1 - options.interval_level) / 2
    margin = (
        _conformal_margin(pooled[:, 0], side_level),
        _conformal_margin(pooled[:, 1], side_level),
    )

    say(f"final fit on {len(final_train):,} rows ({len(plan.train_as_of)} as_of dates)")
    y_final = final_train["label_defection"].to_numpy(dtype=int)
    defection = _train(
        _params(grid[capacity], options, objective="binary"),
        spec,
        final_train,
        y_final,
        rounds=rounds,
    )
    vt_final = _value_target(final_train)
    value = _train(
        _params(
            grid[VALUE_SHAPE],
            options,
            objective="tweedie",
            tweedie_variance_power=options.tweedie_power,
        ),
        spec,
        final_train,
        vt_final,
        rounds=value_rounds,
        offset=log_base,
    )
    lower, upper = _quantile_pair(
        spec, final_train, vt_final, grid[VALUE_SHAPE], options, value_rounds, base_of
    )
    scorer = Scorer(
        spec=spec,
        defection=defection,
        calibrator=calibrator,
        value=value,
        lower=lower,
        upper=upper,
        interval_margin=margin,
        offset_feature=offset_feature,
        tenure_feature=tenure_feature,
        offset_scale=options.horizon_days,
        expected_feature=expected_feature,
        meta={
            "capacity": capacity,
            "calibration": calibration,
            "defection_trees": rounds,
            "value_trees": value_rounds,
            "interval_level": options.interval_level,
        },
    )
    return FitResult(scorer, list(spec.names), capacity, calibration, reports, notes)


def refit(
    result: FitResult,
    snapshots: pd.DataFrame,
    *,
    options: FitOptions | None = None,
) -> Scorer:
    """The configuration of ``result`` (shape, trees, calibration, margins) fitted on other rows.

    Nothing is chosen again: the trees number what ``result`` chose, and its calibrator and
    interval margins are reused. For cross-fitted evidence, where each fold must cost one fit.
    """
    options = options or FitOptions()
    old = result.scorer
    spec = old.spec
    grid = {**capacity_grid(20_000), **capacity_grid(len(snapshots))}
    rounds, value_rounds = int(old.meta["defection_trees"]), int(old.meta["value_trees"])

    def base_of(frame: pd.DataFrame) -> np.ndarray:
        return _base(
            frame, old.offset_feature, old.tenure_feature, options.horizon_days,
            old.expected_feature,
        )

    def log_base(frame: pd.DataFrame) -> np.ndarray:
        return np.log(base_of(frame))

    y = snapshots["label_defection"].to_numpy(dtype=int)
    defection = _train(
        _params(grid[result.capacity], options, objective="binary"), spec, snapshots, y,
        rounds=rounds,
    )
    target = _value_target(snapshots)
    value_params = _params(
        grid[VALUE_SHAPE], options, objective="tweedie",
        tweedie_variance_power=options.tweedie_power,
    )
    value = _train(value_params, spec, snapshots, target, rounds=value_rounds, offset=log_base)
    lower, upper = _quantile_pair(
        spec, snapshots, target, grid[VALUE_SHAPE], options, value_rounds, base_of
    )
    return Scorer(
        spec=spec,
        defection=defection,
        calibrator=old.calibrator,
        value=value,
        lower=lower,
        upper=upper,
        interval_margin=old.interval_margin,
        offset_feature=old.offset_feature,
        tenure_feature=old.tenure_feature,
        offset_scale=old.offset_scale,
        expected_feature=old.expected_feature,
        meta=dict(old.meta),
    )


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


def _validation_windows(
    plan: SplitPlan,
    rows: Callable[[tuple[pd.Timestamp, ...]], pd.DataFrame],
    final_train: pd.DataFrame,
    seed: int,
    notes: list[str],
) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Rolling-origin windows; account-grouped folds when the history is too short for them."""
    windows = []
    for fold in plan.folds:
        train, valid = rows(fold.train_as_of), rows((fold.validation_as_of,))
        if len(train) and len(valid) and valid["label_defection"].nunique() == 2:
            windows.append((f"as_of {fold.validation_as_of.date()}", train, valid))
    if windows:
        notes.append(f"choices made on {len(windows)} rolling-origin validation windows")
        return windows
    # Too little history for a later window with its own earlier training snapshots (e.g. one
    # year of data and a 26-week horizon): hold out accounts instead.
    from sklearn.model_selection import GroupKFold

    notes.append(
        "history too short for rolling-origin windows: choices made on 3 account-grouped folds "
        "of the training snapshots"
    )
    splitter = GroupKFold(n_splits=3, shuffle=True, random_state=seed)
    groups = final_train["account_id"].to_numpy()
    for k, (tr, va) in enumerate(splitter.split(final_train, groups=groups)):
        windows.append((f"account fold {k + 1}", final_train.iloc[tr], final_train.iloc[va]))
    return windows


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
        params = _params(shape, options, objective="quantile", alpha=alpha)
        pair.append(_train(params, spec, frame, log_target, rounds=rounds))
    return pair[0], pair[1]


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
    best = min(mean_brier, key=mean_brier.get)
    if mean_brier[best] >= mean_brier["none"]:
        best = "none"
    notes.append(
        "calibration chosen on held-out windows by Brier: "
        + ", ".join(f"{m} {b:.4f}" for m, b in mean_brier.items())
        + f" -> {best}"
    )
    return best
