"""Action effects from the actions history: honest on a simulated world, refused where due."""

from __future__ import annotations

import json

import ibis
import numpy as np
import pandas as pd
import pytest

from kam.features.snapshots import build_snapshots, data_end
from kam.serving.decisions.evidence import evidence_for
from kam.serving.decisions.playbook import load_playbook
from kam.serving.scoring.batch import score_frame
from kam.serving.scoring.effects import (
    EFFECT_COLUMNS,
    STATUSES,
    EffectsError,
    estimate_effects,
    log_effects,
)
from tests.world import World

PLAYBOOK = load_playbook()
DATES = list(pd.date_range("2022-03-31", "2024-12-31", freq="QE"))


@pytest.fixture(scope="module")
def snapshots(small_world: World) -> pd.DataFrame:
    con = small_world.connect()
    frame = build_snapshots(con, DATES)
    con.disconnect()
    return frame


@pytest.fixture(scope="module")
def effects(small_world: World, snapshots: pd.DataFrame) -> pd.DataFrame:
    con = small_world.connect()
    found = estimate_effects(con, small_world.model().scorer, snapshots=snapshots,
                             playbook=PLAYBOOK)
    con.disconnect()
    return found


def test_effect_estimates_are_honest_on_a_small_world(small_world: World,
                                                      effects: pd.DataFrame) -> None:
    truth = small_world.truth("action_effects").set_index("action")["effect_log_odds"]
    print(effects.drop(columns="summary").round(4).to_string())
    assert tuple(effects.columns) == EFFECT_COLUMNS
    assert set(effects["action"]) == set(truth.index)
    for row in effects.itertuples():
        assert row.status in STATUSES
        assert row.cause == PLAYBOOK.by_id[row.action].cause
        if row.status in ("too_few", "no_overlap"):  # unknown: never a number
            assert np.isnan(row.effect) and not row.supported, row.summary
            continue
        assert row.ci_low <= row.effect <= row.ci_high
        assert row.relative_low <= row.relative <= row.relative_high
        assert row.supported == (row.ci_high < 0 and row.n_treated >= 50), row.summary
        if row.supported:  # a claimed effect points the true way
            assert truth[row.action] < 0, row.summary
            assert "fewer defections" in row.summary
            assert 0 < row.cause_share <= 1
        else:
            assert "fewer" not in row.summary
    assert not effects.set_index("action").loc["nurture_c", "supported"]  # the placebo


def test_treated_accounts_with_no_comparable_ones_are_refused(small_world: World,
                                                              snapshots: pd.DataFrame) -> None:
    """An action only ever run on the biggest accounts, one run on ten: no estimate."""
    labelled = snapshots[snapshots["label_observed"].astype(bool)]
    cut = labelled.groupby("as_of")["revenue_365d"].transform(lambda v: v.quantile(0.9))
    big = labelled[labelled["revenue_365d"] > cut]
    few = labelled.sample(10, random_state=1)
    history = pd.concat([
        pd.DataFrame({"account_id": big["account_id"], "action": "big_only",
                      "taken_at": pd.to_datetime(big["as_of"]) - pd.Timedelta(days=3)}),
        pd.DataFrame({"account_id": few["account_id"], "action": "rare",
                      "taken_at": pd.to_datetime(few["as_of"])}),
    ])
    con = ibis.duckdb.connect()
    con.create_table("actions", history)
    found = estimate_effects(con, small_world.model().scorer, snapshots=snapshots)
    found = found.set_index("action")
    assert found.loc["big_only", "status"] == "no_overlap"
    assert "do not overlap" in found.loc["big_only", "summary"]
    assert found.loc["rare", "status"] == "too_few"
    assert "too few accounts to tell (10 treated" in found.loc["rare", "summary"]
    assert found[["effect", "ci_low", "relative"]].isna().all().all()
    evidence = evidence_for(PLAYBOOK, found.reset_index().to_dict("records"))
    assert set(evidence.status) == {"untested"}


def test_a_store_without_actions_is_refused(small_world: World) -> None:
    con = ibis.duckdb.connect()
    with pytest.raises(EffectsError, match="no actions table"):
        estimate_effects(con, small_world.model().scorer)


def test_effects_are_logged_with_the_training_run(small_world: World,
                                                  effects: pd.DataFrame) -> None:
    from mlflow.tracking import MlflowClient

    run_id = small_world.outcome.run_id
    log_effects(effects, run_id, small_world.tracking)
    client = MlflowClient(small_world.tracking)
    path = client.download_artifacts(run_id, "effects/effects.json")
    with open(path, encoding="utf-8") as handle:
        logged = json.load(handle)
    assert [r["action"] for r in logged] == list(effects["action"])
    assert all(r["effect"] is None or isinstance(r["effect"], float) for r in logged)
    run = client.get_run(run_id)
    assert "effects_supported" in run.data.tags


def test_scores_rank_supported_actions_by_saving_with_their_evidence(
    small_world: World, effects: pd.DataFrame
) -> None:
    con = small_world.connect()
    end = data_end(con)
    snapshot = build_snapshots(con, [end])
    con.disconnect()
    # whatever the small world supports, make two actions supported and one unproven (an
    # estimate in its favour, an interval including zero) for this check
    records = effects.to_dict("records")
    for r in records:
        if r["action"] in ("complaint_closure", "technical_exchange"):
            r.update(status="helps", effect=-0.04, ci_low=-0.07, ci_high=-0.01,
                     relative=0.35, cause_share=0.4, n_treated=150)
        elif r["action"] == "quality_rca":
            r.update(status="no_effect", effect=-0.02, ci_low=-0.05, ci_high=0.01,
                     relative=0.2, cause_share=0.3, n_treated=120)
        elif r["status"] == "no_effect":
            r.update(effect=0.01, relative=-0.05)  # no gain: stays no_effect
    evidence = evidence_for(PLAYBOOK, records)
    assert evidence.status[PLAYBOOK.actions.index(PLAYBOOK.by_id["quality_rca"])] == "unproven"
    frame = score_frame(snapshot, small_world.model(), as_of=end, evidence=evidence)
    with_saving = unproven = 0
    for row in frame.itertuples():
        actions = json.loads(row.actions)
        # supported actions with a saving, then unproven ones with a saving, then the rest
        rank = [2 if a["expected_saving"] is None else 0 if a["evidence"] == "helps" else 1
                for a in actions]
        assert rank == sorted(rank), row.account_id
        for a in actions:
            assert a["evidence"] in {"helps", "unproven", "no_effect", "untested"}
            if a["evidence"] not in {"helps", "unproven"}:
                assert a["expected_saving"] is None
            if a["expected_saving"] is not None:
                assert a["evidence_accounts"] == (150 if a["evidence"] == "helps" else 120)
                at_risk = row.defection_probability * row.value_at_stake
                cost = PLAYBOOK.action_cost(PLAYBOOK.by_id[a["action_id"]])
                # the reduction is rounded to four digits in the record
                assert a["expected_saving"] == pytest.approx(
                    at_risk * a["risk_reduction"] - cost, abs=at_risk * 5e-5 + 0.01)
            unproven += a["evidence"] == "unproven"
        first = actions[0]["expected_saving"] if actions else None
        assert (pd.isna(row.first_action_saving) and first is None) or (
            row.first_action_saving == first)
        with_saving += rank[:1] == [0]
    assert with_saving > 0 and unproven > 0


@pytest.mark.slow
def test_effect_estimates_agree_with_the_true_effects(large_world: World) -> None:
    con = large_world.connect()
    found = estimate_effects(con, large_world.model().scorer, playbook=PLAYBOOK)
    con.disconnect()
    truth = large_world.truth("action_effects").set_index("action")["effect_log_odds"]
    found["true_log_odds"] = found["action"].map(truth)
    print(found.drop(columns="summary").round(4).to_string())
    for row in found.itertuples():
        if row.supported:  # a claimed effect never points the wrong way
            assert row.true_log_odds < 0, row.summary
        if row.true_log_odds == 0:
            assert not row.supported, row.summary
