"""Fitting the defection and value models, and refitting a fitted configuration on other rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import log_loss

from kam.models.calibration import Method, ProbabilityCalibrator
from kam.models.feature_spec import FeatureSpec
from kam.models.metadata import FitChoices
from kam.models.scorer import DEFECTION_OFFSET_FEATURE, Scorer, offset_log_odds
from kam.models.support import SUPPORT_META, feature_support
from kam.training.fit.boosting import (
    _base,
    _conformal_margin,
    _offset_of,
    _quantile_pair,
    _train,
    _value_target,
    booster_params,
    capacity_grid,
    tree_shape,
)
from kam.training.fit.choices import _choose_calibration, _choose_capacity
from kam.training.fit.options import (
    MAX_TREES,
    VALUE_SHAPE,
    FitOptions,
    FitResult,
    FoldReport,
    config_name,
)
from kam.training.fit.windows import _validation_windows
from kam.training.metrics import bias_pct
from kam.training.splits import SplitPlan


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
    offset_weight: float | None = None,
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
    capacity, calibration, offset_weight
        The tree shape, calibration method and defection offset weight already chosen (by a
        backtest); None chooses them on this plan's validation windows.

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
        grid = {capacity: tree_shape(capacity, len(final_train))}
    # the value models keep one shape whatever the defection model's (see VALUE_SHAPE)
    value_shape = tree_shape(VALUE_SHAPE, len(final_train))
    offset_feature, tenure_feature, expected_feature = _offset_of(list(spec.names))
    if not options.expected_base:
        expected_feature = None

    def base_of(frame: pd.DataFrame) -> np.ndarray:
        return _base(
            frame, offset_feature, tenure_feature, options.horizon_days, expected_feature
        )

    def log_base(frame: pd.DataFrame) -> np.ndarray:
        return np.log(base_of(frame))

    # The defection offset: BG/NBD's log-odds of no order, fitted at each as_of, carries over to
    # accounts older and longer silent than any in training, where trees can only stay flat.
    offset_feature_p = DEFECTION_OFFSET_FEATURE if DEFECTION_OFFSET_FEATURE in spec.names else None
    weights = options.offset_weights if offset_feature_p else (0.0,)
    if offset_weight is not None:
        weights = (offset_weight,) if offset_feature_p else (0.0,)
    center = 0.0
    if offset_feature_p is not None:
        known = offset_log_odds(final_train[offset_feature_p].to_numpy(dtype=float), np.nan)
        center = float(np.nanmean(known)) if np.isfinite(known).any() else 0.0

    def defection_offset(weight: float) -> Callable[[pd.DataFrame], np.ndarray] | None:
        if weight == 0 or offset_feature_p is None:
            return None
        return lambda frame: weight * offset_log_odds(
            frame[offset_feature_p].to_numpy(dtype=float), center
        )

    def defection_on(valid: pd.DataFrame, booster: lgb.Booster, weight: float) -> np.ndarray:
        raw = np.asarray(
            booster.predict(
                spec.matrix(valid), raw_score=True, num_iteration=booster.best_iteration
            ),
            dtype=float,
        )
        shift = defection_offset(weight)
        return np.asarray(expit(raw + (shift(valid) if shift else 0.0)))

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
        # shapes are compared at the first weight; the other weights at the chosen shape, below
        for name, shape in grid.items():
            params = booster_params(shape, options, objective="binary", metric="binary_logloss")
            shift = defection_offset(weights[0])
            booster = _train(params, spec, train, y_tr, valid, y_va, offset=shift)
            raw = defection_on(valid, booster, weights[0])
            report.defection_logloss[name] = float(log_loss(y_va, raw, labels=[0, 1]))
            report.best_iteration[name] = int(booster.best_iteration or MAX_TREES)
            oos_raw[name].append(raw)
        oos["y"].append(y_va)
        oos["window"].append(np.full(len(y_va), i))

        vt_tr, vt_va = _value_target(train), _value_target(valid)
        shape = value_shape
        vparams = booster_params(
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
    chosen_weight = weights[0]
    if len(weights) > 1:
        key = config_name(capacity, weights[0])
        for report in reports:  # the first weight's figures under the configuration's name
            report.defection_logloss[key] = report.defection_logloss[capacity]
            report.best_iteration[key] = report.best_iteration[capacity]
        losses = {weights[0]: np.mean([r.defection_logloss[key] for r in reports])}
        raws: dict[float, list[np.ndarray]] = {weights[0]: list(oos_raw[capacity])}
        for weight in weights[1:]:
            key = config_name(capacity, weight)
            raws[weight] = []
            for (label, train, valid), report in zip(windows, reports, strict=True):
                say(f"{label}: BG/NBD offset x{weight:g}")
                y_tr = train["label_defection"].to_numpy(dtype=int)
                y_va = valid["label_defection"].to_numpy(dtype=int)
                params = booster_params(
                    grid[capacity], options, objective="binary", metric="binary_logloss"
                )
                booster = _train(
                    params, spec, train, y_tr, valid, y_va, offset=defection_offset(weight)
                )
                raw = defection_on(valid, booster, weight)
                report.defection_logloss[key] = float(log_loss(y_va, raw, labels=[0, 1]))
                report.best_iteration[key] = int(booster.best_iteration or MAX_TREES)
                raws[weight].append(raw)
            losses[weight] = np.mean([r.defection_logloss[key] for r in reports])
        chosen_weight = min(losses, key=lambda w: losses[w])
        oos_raw[capacity] = raws[chosen_weight]
        notes.append(
            "defection offset (BG/NBD log-odds of no order) chosen by mean validation log loss: "
            + ", ".join(f"x{w:g} {loss:.4f}" for w, loss in losses.items())
            + f" -> x{chosen_weight:g}"
        )
    elif offset_weight is not None and offset_feature_p is not None:
        notes.append(f"defection offset x{chosen_weight:g} as chosen by the backtest")
    config = config_name(capacity, chosen_weight)
    for report in reports:
        report.defection_logloss.setdefault(config, report.defection_logloss[capacity])
        report.best_iteration.setdefault(config, report.best_iteration[capacity])
    rounds = int(np.median([r.best_iteration[config] for r in reports]))
    value_rounds = int(np.median([r.value_best_iteration for r in reports]))
    # the final fit sees more rows than any window: a few more trees than the windows chose
    rounds, value_rounds = max(20, int(rounds * 1.1)), max(20, int(value_rounds * 1.1))
    say(f"chosen capacity {capacity!r}: {rounds} trees (defection), {value_rounds} (value)")

    y_oos = np.concatenate(oos["y"])
    raw_oos = np.concatenate(oos_raw[capacity])
    window_ids = np.concatenate(oos["window"])
    if calibration is None:
        calibration = _choose_calibration(raw_oos, y_oos, window_ids, reports, notes)
    else:
        notes.append(f"calibration {calibration!r} as chosen by the backtest")
    calibrator = ProbabilityCalibrator(cast(Method, calibration)).fit(raw_oos, y_oos)

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
        booster_params(grid[capacity], options, objective="binary"),
        spec,
        final_train,
        y_final,
        rounds=rounds,
        offset=defection_offset(chosen_weight),
    )
    vt_final = _value_target(final_train)
    value = _train(
        booster_params(
            value_shape,
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
        spec, final_train, vt_final, value_shape, options, value_rounds, base_of
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
        defection_offset_feature=offset_feature_p if chosen_weight else None,
        defection_offset_weight=chosen_weight,
        defection_offset_center=center if chosen_weight else 0.0,
        meta={
            **FitChoices(
                capacity, calibration, rounds, value_rounds, options.interval_level
            ).to_meta(),
            SUPPORT_META: feature_support(spec, spec.matrix(final_train)),
        },
    )
    return FitResult(
        scorer, list(spec.names), capacity, calibration, reports, notes, chosen_weight
    )


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
    shape = tree_shape(result.capacity, len(snapshots))
    value_shape = tree_shape(VALUE_SHAPE, len(snapshots))
    chosen = FitChoices.from_meta(old.meta)
    rounds, value_rounds = chosen.defection_trees, chosen.value_trees

    def base_of(frame: pd.DataFrame) -> np.ndarray:
        return _base(
            frame, old.offset_feature, old.tenure_feature, options.horizon_days,
            old.expected_feature,
        )

    def log_base(frame: pd.DataFrame) -> np.ndarray:
        return np.log(base_of(frame))

    def defection_offset(frame: pd.DataFrame) -> np.ndarray:
        shift = old.defection_offset(spec.matrix(frame))
        return np.zeros(len(frame)) if shift is None else shift

    y = snapshots["label_defection"].to_numpy(dtype=int)
    defection = _train(
        booster_params(shape, options, objective="binary"), spec, snapshots, y,
        rounds=rounds,
        offset=defection_offset if old.defection_offset_weight else None,
    )
    target = _value_target(snapshots)
    value_params = booster_params(
        value_shape, options, objective="tweedie",
        tweedie_variance_power=options.tweedie_power,
    )
    value = _train(value_params, spec, snapshots, target, rounds=value_rounds, offset=log_base)
    lower, upper = _quantile_pair(
        spec, snapshots, target, value_shape, options, value_rounds, base_of
    )
    # everything else (calibrator, margins, bases, offset) is the configuration's own
    meta = {**old.meta, SUPPORT_META: feature_support(spec, spec.matrix(snapshots))}
    return dataclasses.replace(
        old, defection=defection, value=value, lower=lower, upper=upper, meta=meta
    )
