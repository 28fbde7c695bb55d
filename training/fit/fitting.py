"""Fitting the defection and value models, and refitting a fitted configuration on other rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from kam.models.calibration import ProbabilityCalibrator
from kam.models.feature_spec import FeatureSpec
from kam.models.metadata import FitChoices
from kam.models.scorer import Scorer
from kam.training.fit.boosting import (
    _base,
    _conformal_margin,
    _offset_of,
    _params,
    _quantile_pair,
    _train,
    _value_target,
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
        shape = value_shape
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
        meta=FitChoices(
            capacity, calibration, rounds, value_rounds, options.interval_level
        ).to_meta(),
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

    y = snapshots["label_defection"].to_numpy(dtype=int)
    defection = _train(
        _params(shape, options, objective="binary"), spec, snapshots, y,
        rounds=rounds,
    )
    target = _value_target(snapshots)
    value_params = _params(
        value_shape, options, objective="tweedie",
        tweedie_variance_power=options.tweedie_power,
    )
    value = _train(value_params, spec, snapshots, target, rounds=value_rounds, offset=log_base)
    lower, upper = _quantile_pair(
        spec, snapshots, target, value_shape, options, value_rounds, base_of
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
