"""MLflow plumbing: the experiment, the data fingerprint and everything a training run logs.

``training/run.py`` orchestrates a run and hands its results here in typed form; this is the
one module of training that logs to MLflow (promotion keeps its own registry calls).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from kam.features.catalog import Feature
from kam.features.contract import EVENT_DATE, TABLES
from kam.features.store import input_tables
from kam.models.bundle import BundleFactory, ScoringBundle, log_bundle
from kam.models.metadata import TrainingMetadata
from kam.models.scorer import Scorer
from kam.training import report
from kam.training.evaluate import Evaluation, format_table
from kam.training.fit import FitResult
from kam.training.splits import SplitPlan

TEST_SNAPSHOT = "evaluation/test_snapshot.parquet"
# The backtest's own scorer (trained on labels closing before the test as_of): the evidence
# promotion compares, since the deployed refit has seen the test as_of's labels.
BACKTEST_SCORER = "evaluation/backtest_scorer"


@dataclass(frozen=True)
class RunRecord:
    """What one training run produced, as the tracking store records it.

    Parameters
    ----------
    metadata
        The deployed model's training metadata (labels, population, as_of ranges, choices).
    plan
        The backtest's plan behind the evidence; the deployed refit's when no backtest fits.
    deploy_plan
        The plan of the deployed refit.
    plan_text
        The whole training plan in words, for the model card.
    train_rows, deploy_train_rows
        Snapshot rows the evidence's and the deployed models were fitted on.
    fit
        The deployed refit.
    backtest
        The backtest's fit, or None when the evidence came from account folds.
    evaluation
        The evidence: metrics beside the baselines on the test accounts.
    test
        The test snapshot those metrics were measured on.
    window_table
        The per-window validation evidence.
    catalog
        The features available to the run (the model may use fewer).
    n_features
        Features the model uses.
    fingerprint
        Rows, date range and content hash of each input table.
    seed
        The fit's random seed.
    code_version
        The code that trained it (``git:<commit>``, or the installed package's version).
    seconds
        Wall time of the run up to logging.
    """

    metadata: TrainingMetadata
    plan: SplitPlan
    deploy_plan: SplitPlan
    plan_text: str
    train_rows: int
    deploy_train_rows: int
    fit: FitResult
    backtest: FitResult | None
    evaluation: Evaluation
    test: pd.DataFrame
    window_table: pd.DataFrame
    catalog: tuple[Feature, ...]
    n_features: int
    fingerprint: dict[str, dict[str, Any]]
    seed: int
    code_version: str
    seconds: float


def use_tracking(tracking_uri: str, experiment: str, artifact_location: str | None) -> str:
    """Point MLflow at ``tracking_uri`` and return the experiment id (created when missing)."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(experiment, artifact_location=artifact_location)


@contextmanager
def training_run(
    tracking_uri: str, experiment: str, artifact_location: str | None
) -> Iterator[str]:
    """An MLflow run in ``experiment`` (created when missing), active inside; yields its id."""
    experiment_id = use_tracking(tracking_uri, experiment, artifact_location)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        yield run.info.run_id


def data_fingerprint(con: Any) -> dict[str, dict[str, Any]]:
    """Row count, event-date range and a content hash of each input table in the store."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(input_tables(con)):
        table = con.table(name)
        facts: dict[str, Any] = {"rows": int(table.count().execute())}
        date_col = EVENT_DATE.get(name)
        if date_col and facts["rows"]:
            bounds = table.aggregate(lo=table[date_col].min(), hi=table[date_col].max()).execute()
            facts["start"] = str(bounds["lo"].iloc[0].date())
            facts["end"] = str(bounds["hi"].iloc[0].date())
        columns = [c for c in TABLES[name].names if c in table.columns]
        # an order-independent hash of every row: equal content, equal fingerprint
        facts["hash"] = _hash_arrow(table.select(*columns).to_pyarrow())
        out[name] = facts
    return out


def _hash_arrow(table: Any) -> str:
    rows = pd.util.hash_pandas_object(table.to_pandas(), index=False).to_numpy()
    return hashlib.sha256(np.sort(rows).tobytes()).hexdigest()[:16]


def log_json(obj: Any, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(obj, indent=1, default=str), artifact_file)


def model_card_file(language: str) -> str:
    """The run's artifact holding the model card in ``language``: ``model_card.md`` in English,
    ``model_card.zh-CN.md`` in Chinese."""
    return "model_card.md" if language == "en" else f"model_card.{language}.md"


def run_tags(record: RunRecord) -> dict[str, str]:
    """Tags of the run: what it predicts and how its evidence was obtained."""
    recorded = record.metadata.to_meta()
    return {
        "test_as_of": recorded["test_as_of"],
        "evaluation": record.metadata.evaluation,
        "horizon": recorded["horizon"],
        "decline": str(record.metadata.decline),
        "seed": str(record.seed),
        "code_version": record.code_version,
    }


def run_params(record: RunRecord) -> dict[str, Any]:
    """Parameters of the run: labels, as_of ranges, the fit's choices and the data."""
    metadata, plan, deploy = record.metadata, record.plan, record.deploy_plan
    recorded = metadata.to_meta()
    choices = metadata.fit
    if choices is None:
        raise ValueError("the run's metadata lacks the fit's choices")
    return {
        "horizon": recorded["horizon"],
        "decline": metadata.decline,
        "population": metadata.population,
        "test_as_of": recorded["test_as_of"],
        "evaluation": metadata.evaluation,
        "snapshot_every": recorded["snapshot_every"],
        "train_as_of_first": str(plan.train_as_of[0].date()),
        "train_as_of_last": str(plan.train_as_of[-1].date()),
        "train_rows": record.train_rows,
        "deploy_train_as_of_first": str(deploy.train_as_of[0].date()),
        "deploy_train_as_of_last": str(deploy.train_as_of[-1].date()),
        "deploy_train_rows": record.deploy_train_rows,
        "capacity": choices.capacity,
        "calibration": choices.calibration,
        "defection_offset_weight": record.fit.offset_weight,
        "defection_trees": choices.defection_trees,
        "value_trees": choices.value_trees,
        "interval_level": choices.interval_level,
        "features": record.n_features,
        "seed": record.seed,
        "code_version": record.code_version,
        **{f"data_{t}_rows": f["rows"] for t, f in record.fingerprint.items()},
        **{f"data_{t}_hash": f["hash"] for t, f in record.fingerprint.items()},
    }


def run_metrics(record: RunRecord) -> dict[str, float]:
    """Test metrics with their bootstrap intervals, the test's size and the run's time."""
    evaluation = record.evaluation
    metrics = evaluation.flat()
    for key, row in evaluation.table.iterrows():
        target, name = cast(tuple[str, str], key)  # rows are keyed (target, metric)
        metrics[f"test_{target}_{name}_ci_low"] = float(row["model_lo"])
        metrics[f"test_{target}_{name}_ci_high"] = float(row["model_hi"])
    metrics["test_rows"] = evaluation.n_rows
    metrics["test_defections"] = evaluation.n_defections
    metrics["train_seconds"] = record.seconds
    return metrics


def log_run(record: RunRecord) -> None:
    """Log a training run's tags, parameters, metrics, evidence, plots and model card.

    Must be called inside :func:`training_run`.
    """
    mlflow.set_tags(run_tags(record))
    mlflow.log_params(run_params(record))
    mlflow.log_metrics(run_metrics(record))
    log_json(record.fingerprint, "data/fingerprint.json")
    log_json(
        [{"name": f.name, "family": f.family, "description": f.description}
         for f in record.catalog],
        "features/catalog.json",
    )
    evaluation = record.evaluation
    mlflow.log_text(format_table(evaluation).to_markdown(), "evaluation/metrics.md")
    mlflow.log_text(record.window_table.to_markdown(index=False), "evaluation/windows.md")
    for language in report.CARD_LANGUAGES:
        card = report.model_card(
            metadata=record.metadata,
            plan_text=record.plan_text,
            evaluation=evaluation,
            fit_notes=record.fit.notes,
            window_table=record.window_table,
            fingerprint=record.fingerprint,
            seed=record.seed,
            code_version=record.code_version,
            language=language,
        )
        mlflow.log_text(card, model_card_file(language))
    with tempfile.TemporaryDirectory() as tmp:  # artifacts are copied into the store
        folder = Path(tmp)
        importance = report.importance(record.fit.scorer)
        mlflow.log_artifact(
            str(report.plot_calibration(evaluation, folder / "calibration.png")), "plots"
        )
        mlflow.log_artifact(str(report.plot_gains(evaluation, folder / "gains.png")), "plots")
        mlflow.log_artifact(
            str(report.plot_importance(importance, folder / "importance.png")), "plots"
        )
        shap = report.plot_shap_summary(record.fit.scorer, record.test, folder / "shap_summary.png")
        mlflow.log_artifact(str(shap), "plots")
        # kept so that promotion can score the champion on exactly these accounts
        snapshot = folder / Path(TEST_SNAPSHOT).name
        record.test.to_parquet(snapshot, index=False)
        mlflow.log_artifact(str(snapshot), str(Path(TEST_SNAPSHOT).parent))
        evaluation.predictions.to_parquet(folder / "test_predictions.parquet", index=False)
        if record.backtest is not None:
            saved = record.backtest.scorer.save(folder / Path(BACKTEST_SCORER).name)
            mlflow.log_artifacts(str(Path(saved["meta"]).parent), BACKTEST_SCORER)
        mlflow.log_artifact(str(folder / "test_predictions.parquet"), "evaluation")


def log_scoring_bundle(
    scorer: Scorer,
    example: pd.DataFrame,
    *,
    registered_name: str | None,
    bundle: BundleFactory = ScoringBundle,
) -> str | None:
    """Log the deployed scorer in the active run as the pyfunc class ``bundle``; return its
    registered version, if registered (see :func:`kam.models.bundle.log_bundle`).

    Parameters
    ----------
    scorer
        The deployed scorer.
    example
        Feature rows that fix the bundle's input signature and example.
    registered_name
        Registry name to create a new version under, or None not to register.
    bundle
        The pyfunc class. Handed in, not imported: the product's
        (:class:`kam.pyfunc.ProductBundle`) lives above serving, which training must not import.
    """
    info = log_bundle(scorer, example, registered_name=registered_name, bundle=bundle)
    version = getattr(info, "registered_model_version", None)
    return None if version is None else str(version)


def describe_version(
    model_name: str,
    version: str,
    metadata: TrainingMetadata,
    evaluation: Evaluation,
    *,
    seed: int,
    code_version: str,
) -> None:
    """Tags and a description on the registered version: what it predicts, how well, and
    which code and seed trained it."""
    client = MlflowClient()
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
        "seed": str(seed),
        "code_version": code_version,
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
            f"{metadata.evaluation} at {evaluation.as_of.date()}. Trained by {code_version}, "
            f"seed {seed}."
        ),
    )
