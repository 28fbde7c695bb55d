"""What holds kam's plan back on the simulator's truth: half-oracles and two limits of the data.

Used by ``bench/decisions.py``; every plan here is chosen by kam's own solver among the
(account, action) pairs kam gives a saving, and valued on the truth like the others.

- Half-oracles: kam's risks with the true effects; the true risk of each action's cause with
  kam's effects.
- Risk models refit on the same snapshots with the same tree shape and number of trees: on
  kam's label, on the simulator's true defection onsets in the action's effect months (an
  event no purchase log records), and on the true probability of such an onset (the latent
  hazard itself). If these plans are far from the oracle too, no label a log can give would
  close the gap from these features.
- Effects from the randomly assigned actions alone (which ones were random is known only to the
  simulator): the estimate a randomised trial of this size would give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The effect months of the simulator's actions: the window the onset risk is measured over
ONSET_MONTHS = 6
# where the effects from the randomly assigned actions are kept, in the world's folder
RANDOMISED_EFFECTS = "effects-random.parquet"


def shifted(hazard: np.ndarray, log_odds: np.ndarray) -> np.ndarray:
    """``hazard`` moved by ``log_odds`` on the logit scale (how an action acts in the
    simulator); a zero hazard stays zero."""
    logit = np.log(np.maximum(hazard, 1e-300) / (1 - hazard))
    return np.where(hazard > 0, 1 / (1 + np.exp(-(logit + log_odds))), 0.0)


def solve(pairs: pd.DataFrame, net: pd.Series, capacity: dict[str, float]) -> pd.DataFrame:
    """kam's solver on (account, action) pairs valued at ``net``; pairs without a value are
    left out."""
    from kam.serving.decisions.plan import solve_plan

    ok = np.isfinite(net.to_numpy(dtype=float))
    rows = pairs[ok]
    solved = solve_plan(
        rows["account_id"].to_numpy(dtype=object), rows["owner"].to_numpy(dtype=object),
        rows["cause"].to_numpy(dtype=object), rows["effort"].to_numpy(dtype=float),
        net[ok].to_numpy(dtype=float), capacity,
    )
    return rows.iloc[solved.chosen][["account_id", "action_id"]]


def half_oracles(pairs: pd.DataFrame, effects: pd.DataFrame, true_effects: pd.DataFrame,
                 stake: pd.DataFrame, capacity: dict[str, float]) -> dict[str, pd.DataFrame]:
    """Two half-oracles that tell which of kam's estimates holds its plan back.

    - kam's risks with the true effects: kam's expected savings, each scaled by the action's
      true relative reduction over its estimated one;
    - the true risks with kam's effects: the true defection probability of the action's cause
      over its effect months x value at stake x kam's estimated reduction per unit of cause
      share (relative reduction / cause share), less the cost.
    """
    by_action = effects.set_index("action")
    known = pairs[pairs["estimated_saving"].notna()]
    action = known["action_id"]
    true_relative = 1 - np.exp(action.map(true_effects["effect_log_odds"]).fillna(0.0))
    per_share = action.map(by_action["relative"] / by_action["cause_share"])
    value = known["account_id"].map(stake["value_at_stake"])
    savings = {
        "kam's risks, true effects": known["estimated_saving"] * true_relative
        / action.map(by_action["relative"]),
        "true risks, kam's effects": known["true_cause_risk"] * value * per_share
        - known["cost"],
    }
    return {name: solve(known, saving, capacity) for name, saving in savings.items()}


def refit_risks(con: Any, model: Any, pairs: pd.DataFrame, stake: pd.DataFrame,
                capacity: dict[str, float], truth: Path, months: pd.DataFrame,
                end: pd.Timestamp) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Plans from three risk models refit at quarterly as_of dates of the model's training range.

    All use the registered model's features, tree shape, number of trees and offset; they learn
    kam's label, the true onset of a defection within :data:`ONSET_MONTHS`, and the true
    probability of one (from the simulator's monthly hazard: more than any label can tell).
    Each plan scales kam's expected savings by the refit risk over kam's risk (the value at
    stake and the effects stay kam's).

    ``months`` is the truth's account months indexed by (account_id, month). Returns the plans
    and, for each risk, its Spearman correlation with the true monthly hazard over the accounts
    still active at ``end``.
    """
    import lightgbm as lgb
    from scipy.stats import spearmanr

    from kam.features.snapshots import build_snapshots
    from kam.serving.scoring.batch import label_settings
    from kam.training.fit.boosting import booster_params, tree_shape
    from kam.training.fit.options import FitOptions

    meta = model.metadata
    horizon, window, decline = label_settings(meta)
    dates = list(pd.date_range(meta.train_as_of.first, meta.train_as_of.last, freq="QE"))
    frames = build_snapshots(con, [*dates, end], horizon=horizon, activity_window=window,
                             decline=decline)
    train = frames[frames["label_observed"].astype(bool)].reset_index(drop=True)
    now = frames[frames["as_of"] == end].set_index("account_id")
    onset = train["account_id"].map(
        pd.read_parquet(truth / "defections.parquet").set_index("account_id")["onset_month"])
    as_of = pd.to_datetime(train["as_of"])
    latent = months["hazard"].reindex(pd.MultiIndex.from_arrays(
        [train["account_id"], as_of.dt.to_period("M").dt.to_timestamp()])).fillna(0.0)
    labels = {
        "risk refit on kam's label": train["label_defection"].astype(int).to_numpy(),
        f"risk refit on true onsets ({ONSET_MONTHS} months)": (
            (onset > as_of) & (onset <= as_of + pd.DateOffset(months=ONSET_MONTHS))
        ).to_numpy(dtype=int),
        # not an event but its probability: the most any label could tell these features
        f"risk fitted on the true hazard ({ONSET_MONTHS} months)": (
            1 - (1 - latent.to_numpy()) ** ONSET_MONTHS),
    }
    scorer = model.scorer
    x, x_now = scorer.spec.matrix(train), scorer.spec.matrix(now.reset_index())
    offset, offset_now = scorer.defection_offset(x), scorer.defection_offset(x_now)
    # kam's own parameters (one thread, seed 0) with the registered model's tree shape
    params = booster_params(tree_shape(meta.fit.capacity, len(train)), FitOptions())
    at = months.xs(end.to_period("M").to_timestamp(), level="month")
    active = now.index.map(at["state"]).to_numpy() == "active"
    hazard = now.index.map(at["hazard"]).to_numpy(dtype=float)
    known = pairs[pairs["estimated_saving"].notna()]
    kam_risk = known["account_id"].map(stake["defection_probability"])
    plans, spearman = {}, {}
    for name, y in labels.items():
        # cross-entropy takes a probability as the label, and reads an event the same as binary
        booster = lgb.train({**params, "objective": "cross_entropy"}, lgb.Dataset(
            x, label=y, init_score=offset, feature_name=list(scorer.spec.names),
            categorical_feature=scorer.spec.categorical_indices,
        ), num_boost_round=meta.fit.defection_trees)
        raw = booster.predict(x_now, raw_score=True)
        risk = pd.Series(1 / (1 + np.exp(-(raw + (0 if offset_now is None else offset_now)))),
                         index=now.index)
        spearman[name] = float(spearmanr(risk[active], hazard[active]).statistic)
        ratio = known["account_id"].map(risk) / kam_risk
        saving = (known["estimated_saving"] + known["cost"]) * ratio - known["cost"]
        plans[name] = solve(known, saving, capacity)
    return plans, spearman


def randomised_effects(model: Any, playbook: Any, world: Path,
                       snapshots: pd.DataFrame | None) -> pd.DataFrame:
    """kam's effect estimates from the randomly assigned actions alone (cached under ``world``),
    on ``snapshots``: the labelled snapshots at the effects' comparison dates (None once cached).

    The estimator, its comparison dates and its labels are kam's; only the history differs: the
    actions the simulator assigned at random, which ignore every signal, so confounding cannot
    bias them and what is left is the data's noise. Accounts the team targeted with the same
    action count as untreated here, which can only pull an estimate towards zero.
    """
    import ibis

    from kam.serving.scoring.batch import label_settings
    from kam.serving.scoring.effects import estimate_effects

    cached = world / RANDOMISED_EFFECTS
    if cached.exists():
        return pd.read_parquet(cached)
    if snapshots is None:
        raise ValueError(f"no {cached} yet: the comparison snapshots are needed to estimate it")
    horizon, window, decline = label_settings(model.metadata)
    actions = pd.read_parquet(world / "data" / "actions.parquet")
    assigned = pd.read_parquet(world / "data" / "truth" / "action_assignments.parquet")
    random = actions.merge(assigned[["action_id", "assignment"]], on="action_id")
    random = random[random["assignment"] == "random"]
    history = ibis.duckdb.connect()
    history.create_table("actions", random[["account_id", "taken_at", "action"]])
    found = estimate_effects(history, model.scorer, horizon=horizon, activity_window=window,
                             decline=decline, playbook=playbook, snapshots=snapshots)
    history.disconnect()
    found.to_parquet(cached)
    return found


def true_effects_on_treated(world: Path, months: pd.DataFrame, first: pd.Timestamp,
                            last: pd.Timestamp) -> pd.Series:
    """Per action, the true change (in probability) of a defection of its cause starting in
    the effect months after it was taken, averaged over the actions taken in [first, last].

    From the simulator's monthly cause hazards after each action (which carry its effect) and
    the same hazards without it; an account that was no longer active has no hazard, so no
    effect, as in the estimate. It is the effect on a defection's onset, not on kam's label:
    a prevented onset may still come later in the label's horizon, and a late onset may not
    halve the year's spend.
    """
    truth = world / "data" / "truth"
    effects = pd.read_parquet(truth / "action_effects.parquet").set_index("action")
    actions = pd.read_parquet(world / "data" / "actions.parquet",
                              columns=["account_id", "taken_at", "action"])
    actions = actions[actions["taken_at"].between(first, last)].reset_index(drop=True)
    cause = actions["action"].map(effects["cause"])
    shift = actions["action"].map(effects["effect_log_odds"]).fillna(0.0).to_numpy()
    span = actions["action"].map(effects["effect_months"]).fillna(ONSET_MONTHS).to_numpy()
    taken = actions["taken_at"].dt.to_period("M").dt.to_timestamp()
    with_action = np.ones(len(actions))
    without = np.ones(len(actions))
    for k in range(1, int(span.max()) + 1):
        where = pd.MultiIndex.from_arrays([actions["account_id"],
                                           taken + pd.DateOffset(months=k)])
        hazard = np.zeros(len(actions))
        for name in cause.dropna().unique():
            mine = (cause == name).to_numpy()
            hazard[mine] = months[f"hazard_{name}"].reindex(where[mine]).fillna(0.0).to_numpy()
        hazard = np.clip(hazard, 0.0, 1 - 1e-12)
        counterfactual = shifted(hazard, -shift)  # the recorded hazards carry the action
        live = k <= span
        with_action *= np.where(live, 1 - hazard, 1.0)
        without *= np.where(live, 1 - counterfactual, 1.0)
    # onset probability with the action minus without it
    change = pd.Series(without - with_action, index=actions.index)
    return change.groupby(actions["action"]).mean()
