"""Training end to end on a small simulated world, with a real MLflow store in a temp dir."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from kam.features.ingest import ingest
from kam.features.periods import Period
from kam.features.synthetic import simulate
from kam.models.metadata import TrainingMetadata
from kam.models.registry import CHAMPION, alias_uri, load_model
from kam.training.promote import DEFINITION_TAG, promote
from kam.training.run import TEST_SNAPSHOT, TrainRequest, train_candidate
from kam.training.splits import SplitError, plan_split
from tests.world import World, copy_world


@pytest.fixture(scope="module")
def trained(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The small world's trained model in a registry of its own: these tests promote it and
    register more versions beside it."""
    return copy_world(small_world, tmp_path_factory.mktemp("training"))


def test_training_registers_a_version_that_becomes_champion(trained: World) -> None:
    assert trained.outcome.model_version == "1"
    decision = promote(trained.model_name, tracking_uri=trained.tracking)
    assert decision.promoted, decision.reason
    assert "first champion" in decision.reason
    described = MlflowClient(trained.tracking).get_model_version(trained.model_name, "1")
    assert described.tags["horizon"] == "365d" and described.tags["decline"] == "0.5"
    assert described.tags["population"] == "order in last 365d"
    assert float(described.tags["defection_roc_auc"]) > 0.6
    assert "spends less than 0.5 x its revenue of the prior 365d" in described.description
    mlflow.set_tracking_uri(trained.tracking)
    champion = MlflowClient().get_model_version_by_alias(trained.model_name, CHAMPION)
    assert str(champion.version) == "1"


def test_logged_metrics_beat_the_baselines(trained: World) -> None:
    metrics = MlflowClient(trained.tracking).get_run(trained.outcome.run_id).data.metrics
    for name in ("defection_roc_auc", "defection_pr_auc", "value_spearman", "value_gini"):
        assert metrics[f"test_{name}"] > metrics[f"test_{name}_baseline"], name
    assert 0.6 < metrics["test_defection_roc_auc"] < 0.97


def test_run_logs_card_plots_and_fingerprint(trained: World) -> None:
    client = MlflowClient(trained.tracking)
    run_id = trained.outcome.run_id
    listed = {a.path for a in client.list_artifacts(run_id)}
    assert {"model_card.md", "plots", "evaluation", "data", "features"} <= listed
    plots = {Path(a.path).name for a in client.list_artifacts(run_id, "plots")}
    assert plots == {"calibration.png", "gains.png", "importance.png", "shap_summary.png"}
    card = mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")
    assert "Defection: value < 0.50 x revenue in the 365d before as_of" in card
    assert "Population at as_of: accounts with an order in the 365d up to as_of." in card
    assert "Known limits" in card
    params = client.get_run(run_id).data.params
    assert int(params["data_orders_rows"]) > 0 and len(params["data_orders_hash"]) == 16


def test_no_training_label_window_reaches_past_the_test_as_of(trained: World) -> None:
    params = MlflowClient(trained.tracking).get_run(trained.outcome.run_id).data.params
    plan = trained.outcome.plan
    horizon = Period.parse(params["horizon"]).offset()
    test = pd.Timestamp(params["test_as_of"])
    assert pd.Timestamp(params["train_as_of_last"]) + horizon <= test
    for as_of in plan.train_as_of:
        assert as_of + horizon <= test
    for fold in plan.folds:
        assert fold.validation_as_of + horizon <= test
        assert all(a + horizon <= fold.validation_as_of for a in fold.train_as_of)


def test_the_bundle_scores_through_pyfunc(trained: World) -> None:
    mlflow.set_tracking_uri(trained.tracking)
    run_id = trained.outcome.run_id
    frame = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=TEST_SNAPSHOT
        )
    )
    model = mlflow.pyfunc.load_model(f"models:/{trained.model_name}/1")
    inputs = model.metadata.get_input_schema().input_names()
    out = model.predict(frame[inputs].head(50))
    assert list(out.columns) == ["defection_probability", "value", "value_low", "value_high"]
    assert out["defection_probability"].between(0, 1).all()
    assert (out["value_low"] <= out["value"]).all() and (out["value"] <= out["value_high"]).all()
    loaded = load_model(alias_uri(trained.model_name), trained.tracking)
    assert loaded.version == "1" and loaded.metrics["test_defection_roc_auc"] > 0.5


def test_promotion_refuses_a_worse_candidate(trained: World) -> None:
    from dataclasses import replace

    # the same definition tested a year earlier: the champion has learnt from those labels, the
    # candidate has not, so on the candidate's test accounts the champion wins
    earlier = trained.outcome.plan.test_as_of - pd.Timedelta(days=365)
    outcome = train_candidate(replace(trained.request, test_as_of=earlier))
    decision = promote(trained.model_name, tracking_uri=trained.tracking)
    assert not decision.promoted
    assert decision.candidate_version == outcome.model_version
    assert "worse" in decision.reason
    assert decision.candidate["defection_pr_auc"] < decision.champion["defection_pr_auc"]
    mlflow.set_tracking_uri(trained.tracking)
    champion = MlflowClient().get_model_version_by_alias(trained.model_name, CHAMPION)
    assert str(champion.version) == "1"
    forced = promote(trained.model_name, tracking_uri=trained.tracking, force=True)
    assert forced.promoted and "forced" in forced.reason
    MlflowClient().set_registered_model_alias(trained.model_name, CHAMPION, "1")


def test_promotion_refuses_another_definition_unless_told(trained: World) -> None:
    from dataclasses import replace

    other = replace(trained.request, features=("tenure_days", "region"), decline=0.7)
    version = train_candidate(other).model_version
    for force in (False, True):  # better or worse does not matter: they predict other things
        decision = promote(trained.model_name, tracking_uri=trained.tracking, force=force)
        assert not decision.promoted
        assert "decline threshold 0.7 vs the champion's 0.5" in decision.reason
        assert "features dropped" in decision.reason and "--new-definition" in decision.reason
    client = MlflowClient(trained.tracking)
    assert str(client.get_model_version_by_alias(trained.model_name, CHAMPION).version) == "1"
    decision = promote(trained.model_name, tracking_uri=trained.tracking, new_definition=True)
    assert decision.promoted
    assert str(client.get_model_version_by_alias(trained.model_name, CHAMPION).version) == version
    recorded = client.get_model_version(trained.model_name, str(version)).tags[DEFINITION_TAG]
    assert recorded.startswith("replaced version 1:") and "decline threshold" in recorded
    client.set_registered_model_alias(trained.model_name, CHAMPION, "1")


@pytest.mark.parametrize("horizon", ["365d", "26w", "6mo"])
def test_split_plan_is_out_of_time(horizon: str) -> None:
    period = Period.parse(horizon)
    plan = plan_split(pd.Timestamp("2021-01-01"), pd.Timestamp("2025-12-31"), period)
    assert plan.test_as_of + period.offset() <= pd.Timestamp("2025-12-31")
    assert plan.folds, "five years of history hold rolling-origin windows"
    assert all(a + period.offset() <= plan.test_as_of for a in plan.train_as_of)
    for fold in plan.folds:
        assert fold.validation_as_of + period.offset() <= plan.test_as_of
        assert all(a + period.offset() <= fold.validation_as_of for a in fold.train_as_of)
    assert len(set(plan.all_as_of)) == len(plan.all_as_of)


def test_too_short_a_history_is_named() -> None:
    with pytest.raises(SplitError, match="too short"):
        plan_split(pd.Timestamp("2025-01-01"), pd.Timestamp("2025-12-31"), Period(365, "day"))


def test_unknown_features_are_named(trained: World) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="no_such_feature"):
        train_candidate(replace(trained.request, features=("no_such_feature",)))


def test_probabilities_stay_ordered_by_recency_for_idle_accounts(trained: World) -> None:
    """Behaviour: an account that stopped ordering long ago must not look safer than a fresh one."""
    loaded = load_model(f"models:/{trained.model_name}/1", trained.tracking)
    mlflow.set_tracking_uri(trained.tracking)
    frame = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=trained.outcome.run_id, artifact_path=TEST_SNAPSHOT
        )
    )
    fresh = frame.nsmallest(40, "recency_days")
    idle = fresh.copy()
    # idle as the 40 longest-idle accounts are, in its recency and in what the buying-rhythm
    # model (BG/NBD) makes of such idleness
    long_idle = frame.nlargest(40, "recency_days")
    assert long_idle["recency_days"].median() > 4 * fresh["recency_days"].median()
    recent = (
        "recency_days", "overdue_ratio", "revenue_90d", "order_days_90d", "revenue_trend_90d",
        "btyd_p_alive", "btyd_p_no_order", "btyd_expected_order_days",
    )
    for name in recent:
        idle[name] = long_idle[name].median()
    p_fresh = loaded.scorer.predict_frame(fresh)["defection_probability"].to_numpy()
    p_idle = loaded.scorer.predict_frame(idle)["defection_probability"].to_numpy()
    assert np.mean(p_idle) > np.mean(p_fresh)


def test_the_deployed_bundle_saw_labels_up_to_the_end_of_the_data(trained: World) -> None:
    loaded = load_model(f"models:/{trained.model_name}/1", trained.tracking)
    recorded = loaded.metadata
    assert recorded == trained.outcome.metadata
    assert recorded.train_as_of is not None and recorded.backtest_train_as_of is not None
    assert recorded.data_end is not None and recorded.test_as_of is not None
    horizon = recorded.horizon.offset()
    assert recorded.train_as_of.last == recorded.data_end - horizon
    # the evidence came from a backtest whose training closed a horizon before its test
    assert recorded.evaluation == "out-of-time"
    assert recorded.backtest_train_as_of.last + horizon <= recorded.test_as_of
    assert recorded.activity_window == Period(365, "day")
    assert recorded.fit is not None and recorded.fit.defection_trees > 0
    params = MlflowClient(trained.tracking).get_run(trained.outcome.run_id).data.params
    assert params["deploy_train_as_of_last"] == str(recorded.train_as_of.last.date())
    assert params["population"] == "order in last 365d"


def test_a_one_year_book_trains_and_registers(tmp_path: Path) -> None:
    from dataclasses import replace

    data = tmp_path / "data"
    simulate(200, 1, 5, data)
    store = f"duckdb:///{data / 'kam.duckdb'}"
    ingest(data, store)
    request = TrainRequest(
        store_url=store,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        experiment="one-year",
        model_name="one-year",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        horizon=Period.parse("26w"),
        decline=1.0,
        activity_window=None,
    )
    outcome = train_candidate(replace(request))
    assert outcome.model_version == "1"
    assert outcome.backtest is None
    recorded = TrainingMetadata.from_meta(outcome.fit.scorer.meta)
    assert recorded == outcome.metadata
    assert recorded.evaluation == "account-grouped folds"
    assert recorded.snapshot_every == Period(1, "week")
    assert recorded.activity_window is None and recorded.population == "ever"
    assert recorded.backtest_train_as_of is None
    assert any("no out-of-time test was possible" in w for w in outcome.evaluation.warnings)
    tags = MlflowClient(request.tracking_uri).get_run(outcome.run_id).data.tags
    assert tags["evaluation"] == "account-grouped folds"
    # the folds validate on their accounts at the latest labelled as_of only: one row each
    assert all(0 < r.n_valid <= 200 for r in outcome.fit.folds)
    # the weight of BG/NBD's log-odds under the defection trees was chosen, and the scorer
    # it serves applies it
    note = next(n for n in outcome.fit.notes if n.startswith("defection offset"))
    scorer = outcome.fit.scorer
    assert f"-> x{outcome.fit.offset_weight:g}" in note
    assert scorer.defection_offset_weight == outcome.fit.offset_weight
    assert (scorer.defection_offset_feature is not None) == (outcome.fit.offset_weight > 0)


def test_a_fixed_tree_shape_other_than_the_value_models_fits(trained: World) -> None:
    """A refit keeps the backtest's shape; the value models keep theirs whatever it is."""
    from kam.training.fit import FitOptions, fit_models, refit
    from kam.training.splits import SplitPlan

    mlflow.set_tracking_uri(trained.tracking)
    frame = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=trained.outcome.run_id, artifact_path=TEST_SNAPSHOT
        )
    )
    as_of = pd.Timestamp(frame["as_of"].iloc[0])
    plan = SplitPlan(as_of, (as_of,), (), Period.parse("365d"))
    names = list(trained.outcome.fit.feature_names)
    families = dict(trained.outcome.fit.scorer.spec.families)
    fit = fit_models(frame, plan, names, families, options=FitOptions(), capacity="medium",
                     calibration="sigmoid")
    assert fit.capacity == "medium" and fit.calibration == "sigmoid"
    again = refit(fit, frame)
    scores = again.predict_frame(frame)
    assert scores["defection_probability"].between(0, 1).all()
    assert (scores["value"] > 0).all()
