"""One training run: snapshots -> fit -> evaluate -> log to MLflow -> register the bundle."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import mlflow
import pandas as pd

from kam.features.catalog import available
from kam.features.periods import Period
from kam.features.snapshots import build_snapshots, data_end, data_start
from kam.features.store import connect, input_tables, require_orders
from kam.models.bundle import BundleFactory, ScoringBundle
from kam.models.metadata import (
    ACCOUNT_FOLDS,
    OUT_OF_TIME,
    AsOfRange,
    FitChoices,
    TrainingMetadata,
)
from kam.training import report
from kam.training.evaluate import Evaluation, evaluate, evaluate_scores, format_table
from kam.training.fit import FitOptions, FitResult, fit_models, refit
from kam.training.splits import SplitPlan, TrainingPlan, plan_training
from kam.training.tracking import data_fingerprint, log_json, log_scoring_bundle, use_tracking

TEST_SNAPSHOT = "evaluation/test_snapshot.parquet"
# The backtest's own scorer (trained on labels closing before the test as_of): the evidence
# promotion compares, since the deployed refit has seen the test as_of's labels.
BACKTEST_SCORER = "evaluation/backtest_scorer"
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

    say(f"building snapshots at {len(training_plan.all_as_of)} as_of dates")
    snapshots = build_snapshots(
        con,
        training_plan.all_as_of,
        horizon=request.horizon,
        activity_window=request.activity_window,
        decline=request.decline,
    )
    snapshots = snapshots[snapshots["label_observed"].astype(bool)]
    catalog = available(input_tables(con))
    names = [f.name for f in catalog if f.name in snapshots.columns]
    if request.features is not None:
        unknown = sorted(set(request.features) - set(names))
        if unknown:
            raise ValueError(f"unknown features {unknown}; available: {names}")
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
    experiment_id = use_tracking(
        request.tracking_uri, request.experiment, request.artifact_location
    )
    with mlflow.start_run(experiment_id=experiment_id) as run:
        recorded = metadata.to_meta()
        mlflow.set_tags(
            {
                "test_as_of": recorded["test_as_of"],
                "evaluation": metadata.evaluation,
                "horizon": recorded["horizon"],
                "decline": str(metadata.decline),
            }
        )
        mlflow.log_params(
            {
                "horizon": recorded["horizon"],
                "decline": metadata.decline,
                "population": metadata.population,
                "test_as_of": recorded["test_as_of"],
                "evaluation": metadata.evaluation,
                "snapshot_every": recorded["snapshot_every"],
                "train_as_of_first": str(plan.train_as_of[0].date()),
                "train_as_of_last": str(plan.train_as_of[-1].date()),
                "train_rows": int(snapshots["as_of"].isin(plan.train_as_of).sum()),
                "deploy_train_as_of_first": str(deploy_plan.train_as_of[0].date()),
                "deploy_train_as_of_last": str(deploy_plan.train_as_of[-1].date()),
                "deploy_train_rows": int(snapshots["as_of"].isin(deploy_plan.train_as_of).sum()),
                "capacity": choices.capacity,
                "calibration": choices.calibration,
                "defection_offset_weight": fit.offset_weight,
                "defection_trees": choices.defection_trees,
                "value_trees": choices.value_trees,
                "interval_level": choices.interval_level,
                "features": len(names),
                **{f"data_{t}_rows": f["rows"] for t, f in fingerprint.items()},
                **{f"data_{t}_hash": f["hash"] for t, f in fingerprint.items()},
            }
        )
        metrics = evaluation.flat()
        for key, row in evaluation.table.iterrows():
            target, name = cast(tuple[str, str], key)  # rows are keyed (target, metric)
            metrics[f"test_{target}_{name}_ci_low"] = float(row["model_lo"])
            metrics[f"test_{target}_{name}_ci_high"] = float(row["model_hi"])
        metrics["test_rows"] = evaluation.n_rows
        metrics["test_defections"] = evaluation.n_defections
        metrics["train_seconds"] = seconds
        mlflow.log_metrics(metrics)
        log_json(fingerprint, "data/fingerprint.json")
        log_json(
            [{"name": f.name, "family": f.family, "description": f.description} for f in catalog],
            "features/catalog.json",
        )
        mlflow.log_text(format_table(evaluation).to_markdown(), "evaluation/metrics.md")
        mlflow.log_text(window_table.to_markdown(index=False), "evaluation/windows.md")
        card = report.model_card(
            metadata=metadata,
            plan_text=training_plan.describe(),
            evaluation=evaluation,
            fit_notes=fit.notes,
            window_table=window_table,
            fingerprint=fingerprint,
        )
        mlflow.log_text(card, "model_card.md")
        with tempfile.TemporaryDirectory() as tmp:  # artifacts are copied into the store
            folder = Path(tmp)
            importance = report.importance(fit.scorer)
            mlflow.log_artifact(
                str(report.plot_calibration(evaluation, folder / "calibration.png")), "plots"
            )
            mlflow.log_artifact(str(report.plot_gains(evaluation, folder / "gains.png")), "plots")
            mlflow.log_artifact(
                str(report.plot_importance(importance, folder / "importance.png")), "plots"
            )
            # kept so that promotion can score the champion on exactly these accounts
            snapshot = folder / Path(TEST_SNAPSHOT).name
            test.to_parquet(snapshot, index=False)
            mlflow.log_artifact(str(snapshot), str(Path(TEST_SNAPSHOT).parent))
            evaluation.predictions.to_parquet(folder / "test_predictions.parquet", index=False)
            if backtest is not None:
                saved = backtest.scorer.save(folder / Path(BACKTEST_SCORER).name)
                mlflow.log_artifacts(str(Path(saved["meta"]).parent), BACKTEST_SCORER)
            mlflow.log_artifact(str(folder / "test_predictions.parquet"), "evaluation")
        info = log_scoring_bundle(
            fit.scorer,
            test,
            registered_name=request.model_name if request.register else None,
            bundle=request.bundle,
        )
        version = getattr(info, "registered_model_version", None)
        if version is not None:
            _describe_version(request.model_name, str(version), metadata, evaluation)
    return TrainOutcome(
        run_id=run.info.run_id,
        model_version=str(version) if version is not None else None,
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


def _describe_version(
    model_name: str, version: str, metadata: TrainingMetadata, evaluation: Evaluation
) -> None:
    """Tags and a description on the registered version: what it predicts, how well."""
    client = mlflow.MlflowClient()
    flat = evaluation.flat()
    tags = {
        "horizon": str(metadata.horizon),
        "decline": f"{metadata.decline:g}",
        "population": metadata.population,
        "test_as_of": str(evaluation.as_of.date()),
        "evaluation": metadata.evaluation,
        **{
            name: f"{flat[f'test_{name}']:.4f}"
            for name in ("defection_roc_auc", "defection_brier", "value_gini")
            if f"test_{name}" in flat
        },
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    event = (
        "buys nothing"
        if metadata.decline >= 1
        else f"spends less than {1 - metadata.decline:g} x its revenue of the prior "
        f"{metadata.horizon}"
    )
    client.update_model_version(
        model_name,
        version,
        description=(
            f"Probability that an account ({metadata.population}) defects within "
            f"{metadata.horizon} ({event}), and its revenue over that horizon. Evidence: "
            f"{metadata.evaluation} at {evaluation.as_of.date()}."
        ),
    )
