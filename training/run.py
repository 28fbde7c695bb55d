"""One training run: snapshots -> fit -> evaluate -> refit -> log and register (``tracking``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd

from kam.features.catalog import available
from kam.features.periods import Period
from kam.features.snapshots import build_snapshots, data_end, data_start
from kam.features.store import connect, input_tables, one_thread, require_orders
from kam.models.bundle import BundleFactory, ScoringBundle
from kam.models.metadata import (
    ACCOUNT_FOLDS,
    OUT_OF_TIME,
    AsOfRange,
    FitChoices,
    TrainingMetadata,
)
from kam.training import tracking
from kam.training.evaluate import Evaluation, evaluate, evaluate_scores
from kam.training.fit import FitOptions, FitResult, fit_models, refit
from kam.training.provenance import code_version
from kam.training.splits import SplitPlan, TrainingPlan, plan_training
from kam.training.tracking import BACKTEST_SCORER as BACKTEST_SCORER
from kam.training.tracking import TEST_SNAPSHOT as TEST_SNAPSHOT
from kam.training.tracking import data_fingerprint

EVIDENCE_FOLDS = 3
YEAR = Period(365, "day")


@dataclass(frozen=True)
class TrainRequest:
    """Everything a training run needs, resolved from settings by the caller."""

    store_url: str
    tracking_uri: str
    experiment: str
    model_name: str
    artifact_location: str | None = None
    horizon: Period = YEAR
    decline: float = 0.5
    activity_window: Period | None = YEAR
    test_as_of: pd.Timestamp | None = None
    every: Period | None = None  # snapshot spacing; None: weekly under two years, else monthly
    register: bool = True
    features: tuple[str, ...] | None = None  # restrict the model to these features
    options: FitOptions = field(default_factory=FitOptions)
    bundle: BundleFactory = ScoringBundle  # the pyfunc class registered (kam.pyfunc: the product)


@dataclass
class TrainOutcome:
    """What a run produced."""

    run_id: str
    model_version: str | None
    plan: SplitPlan  # the backtest's plan; the deployed refit's when no backtest fits
    fit: FitResult  # the deployed refit
    evaluation: Evaluation
    metadata: TrainingMetadata  # what the bundle records of its training
    window_table: pd.DataFrame
    seconds: float
    training_plan: TrainingPlan | None = None
    backtest: FitResult | None = None


def train_candidate(
    request: TrainRequest, progress: Callable[[str], None] | None = None
) -> TrainOutcome:
    """Train, evaluate out-of-time, log to MLflow and register a candidate scoring bundle.

    Parameters
    ----------
    request
        Store, tracking and label settings of the run.
    progress
        Called with a short message as each stage starts.

    Returns
    -------
    TrainOutcome
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    con = connect(request.store_url, read_only=True)
    one_thread(con)
    require_orders(con, request.store_url)
    start, end = data_start(con), data_end(con)
    training_plan = plan_training(
        start,
        end,
        request.horizon,
        test_as_of=request.test_as_of,
        every=request.every,
        # with decline 1.0 the prior window does not enter the label: a month of history will do
        min_history=request.horizon if request.decline < 1 else Period(1, "month"),
    )
    say(training_plan.describe())
    catalog = available(input_tables(con))
    if request.features is not None:
        # named before the snapshots are built: a typo should not cost their build
        unknown = sorted(set(request.features) - {f.name for f in catalog})
        if unknown:
            raise ValueError(
                f"unknown features {unknown}; available: {[f.name for f in catalog]}"
            )

    say(f"building snapshots at {len(training_plan.all_as_of)} as_of dates")
    snapshots = build_snapshots(
        con,
        training_plan.all_as_of,
        horizon=request.horizon,
        activity_window=request.activity_window,
        decline=request.decline,
    )
    snapshots = snapshots[snapshots["label_observed"].astype(bool)]
    names = [f.name for f in catalog if f.name in snapshots.columns]
    if request.features is not None:
        names = [n for n in names if n in request.features]
    families = {f.name: f.family for f in catalog}
    fingerprint = data_fingerprint(con)
    con.disconnect()

    options = replace(request.options, horizon_days=request.horizon.approx_days())
    deploy_plan = training_plan.deploy
    backtest: FitResult | None = None
    if training_plan.backtest is not None:
        plan = training_plan.backtest
        say("backtest: choosing the configuration on out-of-time windows")
        backtest = fit_models(snapshots, plan, names, families, options=options, progress=say)
        test = snapshots[snapshots["as_of"] == plan.test_as_of]
        if test.empty:
            raise ValueError(f"no labelled accounts at the test as_of {plan.test_as_of.date()}")
        say(f"evaluating on {len(test):,} accounts at {plan.test_as_of.date()}")
        evaluation = evaluate(backtest.scorer, test, seed=request.options.seed)
        say(f"refit on the freshest labels ({len(deploy_plan.train_as_of)} as_of dates)")
        fit = fit_models(
            snapshots, deploy_plan, names, families, options=options, progress=say,
            capacity=backtest.capacity, calibration=backtest.calibration,
            offset_weight=backtest.offset_weight,
        )
    else:
        plan = deploy_plan
        say("one label window: fitting on every labelled snapshot, evidence from account folds")
        fit = fit_models(snapshots, deploy_plan, names, families, options=options, progress=say)
        test = snapshots[snapshots["as_of"] == deploy_plan.train_as_of[-1]]
        say(f"cross-fitted evaluation on {len(test):,} accounts at {test['as_of'].iloc[0].date()}")
        scores = _cross_fitted_scores(snapshots, test, fit, options, say)
        evaluation = evaluate_scores(scores, test, seed=request.options.seed)
        evaluation.warnings.append(
            "no out-of-time test was possible (the history holds one label window): these "
            f"figures come from {EVIDENCE_FOLDS} account-grouped folds at the latest labelled "
            "as_of, which share its season with training and flatter the model"
        )
    evidence = backtest or fit
    window_table = pd.DataFrame(
        [
            {
                "window": r.window,
                "train rows": r.n_train,
                "valid rows": r.n_valid,
                "defection logloss": r.defection_logloss[evidence.config],
                "value bias %": r.value_bias_pct,
                **{f"brier {m}": b for m, b in r.brier.items()},
            }
            for r in evidence.folds
        ]
    )
    seconds = time.perf_counter() - started
    choices = FitChoices.from_meta(fit.scorer.meta)  # the fit records its own choices
    metadata = TrainingMetadata(
        model_name=request.model_name,
        horizon=request.horizon,
        decline=request.decline,
        activity_window=request.activity_window,
        snapshot_every=training_plan.every,
        train_as_of=AsOfRange.of(deploy_plan.train_as_of),
        backtest_train_as_of=None if backtest is None else AsOfRange.of(plan.train_as_of),
        test_as_of=evaluation.as_of,
        data_end=end,
        evaluation=OUT_OF_TIME if backtest is not None else ACCOUNT_FOLDS,
        fit=choices,
    )
    fit.scorer.meta.update(metadata.to_meta())

    say("logging to MLflow")
    record = tracking.RunRecord(
        metadata=metadata,
        plan=plan,
        deploy_plan=deploy_plan,
        plan_text=training_plan.describe(),
        train_rows=int(snapshots["as_of"].isin(plan.train_as_of).sum()),
        deploy_train_rows=int(snapshots["as_of"].isin(deploy_plan.train_as_of).sum()),
        fit=fit,
        backtest=backtest,
        evaluation=evaluation,
        test=test,
        window_table=window_table,
        catalog=tuple(catalog),
        n_features=len(names),
        fingerprint=fingerprint,
        seed=request.options.seed,
        code_version=code_version(),
        seconds=seconds,
    )
    with tracking.training_run(
        request.tracking_uri, request.experiment, request.artifact_location
    ) as run_id:
        tracking.log_run(record)
        version = tracking.log_scoring_bundle(
            fit.scorer,
            test,
            registered_name=request.model_name if request.register else None,
            bundle=request.bundle,
        )
        if version is not None:
            tracking.describe_version(
                request.model_name, version, metadata, evaluation,
                seed=record.seed, code_version=record.code_version,
            )
    return TrainOutcome(
        run_id=run_id,
        model_version=version,
        plan=plan,
        fit=fit,
        evaluation=evaluation,
        metadata=metadata,
        window_table=window_table,
        seconds=seconds,
        training_plan=training_plan,
        backtest=backtest,
    )


def _cross_fitted_scores(
    snapshots: pd.DataFrame,
    test: pd.DataFrame,
    fit: FitResult,
    options: FitOptions,
    say: Callable[[str], None],
) -> pd.DataFrame:
    """Scores of ``test`` from models that never saw the scored accounts (any as_of).

    With one label window there is no later window to test on; instead the accounts are split
    into folds, and each fold is scored by the same configuration (trees, calibration, margins)
    fitted without them. The configuration itself was chosen on account folds of all rows.
    """
    from sklearn.model_selection import GroupKFold

    as_of = test["as_of"].iloc[0]
    pooled = snapshots[snapshots["as_of"] <= as_of]
    splitter = GroupKFold(n_splits=EVIDENCE_FOLDS, shuffle=True, random_state=options.seed)
    accounts = test["account_id"].to_numpy()
    parts = []
    for k, (_, held) in enumerate(splitter.split(test, groups=accounts)):
        say(f"evidence fold {k + 1}/{EVIDENCE_FOLDS}")
        train = pooled[~pooled["account_id"].isin(set(accounts[held]))]
        scorer = refit(fit, train, options=options)
        parts.append(scorer.predict_frame(test.iloc[held]).set_index(test.index[held]))
    return pd.concat(parts).loc[test.index].reset_index(drop=True)

