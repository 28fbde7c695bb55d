"""Benchmark: the value kam's plan saves, on the simulator's truth, against simpler plans.

    python bench/decisions.py [--accounts 20000 --years 5 --seed 7]
                              [--capacity AR=120h,SR=60h,FR=40h,executive=10] [--fresh]

1. Simulates a world (with its truth), ingests it and trains a model under ``bench/out/``
   (reused by later runs with the same arguments; ``--fresh`` rebuilds).
2. Estimates the actions' effects from the actions history (``kam effects``) and compares them
   with the true effects.
3. Scores the book at the end of the data with those effects, and makes five plans at the same
   capacity: (a) kam's plan (``kam plan``: the recommended actions with a supported saving
   chosen by the solver, then unproven ones on the capacity left), (b) biggest accounts first
   (value at stake) and (c) highest risk first, each with the playbook's first eligible
   action, (d) random eligible actions on random accounts, (e) an oracle that knows the true
   hazards and effects (the same solver on the true savings of every eligible action). Every
   plan takes at most one action per account and stays within each owner's capacity;
   eligibility (tiers, triggers, cool-downs) is the playbook's. Further plans tell what holds
   kam's back (``bench/decisions_limits.py``): two half-oracles (kam's risks with the true
   effects; the true risks of each action's cause with kam's effects) and three risk models
   refit on the same snapshots: on kam's label, on the true defection onsets and on the true
   hazard.
4. Values each plan on the truth: for each chosen action, the true reduction of the account's
   defection probability over the action's effect months (its true log-odds shift on the true
   monthly hazard of the cause it addresses, at the as_of month) x the account's true expected
   revenue over a year. Prints the table and the ratios; writes ``bench/out/decisions.json``.
5. Estimates the effects again from the randomly assigned actions alone: what a randomised
   trial of that size would tell.
6. Among true defectors in the top decile of value at risk at four quarterly as_of dates of the
   last labelled year: how often the top action addresses the true cause, against a random
   pick of the tier's playbook actions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
# run as `python bench/decisions.py`, this folder comes first on the path: keep the repository
# root ahead of it so `kam` resolves to the package
sys.path.insert(0, str(ROOT))

MODEL_NAME = "kam-bench-decisions"
DEFAULT_CAPACITY = "AR=120h,SR=60h,FR=40h,executive=10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--capacity", default=DEFAULT_CAPACITY)
    parser.add_argument("--fresh", action="store_true", help="re-simulate, re-ingest, retrain")
    parser.add_argument("--model-name", default=MODEL_NAME, help=argparse.SUPPRESS)
    args = parser.parse_args()
    world = OUT / f"decisions-{args.accounts}-{args.years}-{args.seed}"
    if args.fresh and world.exists():
        import shutil

        shutil.rmtree(world)
    world.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    store, tracking = _prepare(world, args, seconds)
    report = _bench(world, store, tracking, args, seconds)
    (OUT / "decisions.json").write_text(json.dumps(report, indent=2, default=float))


def _step(seconds: dict[str, float], name: str, began: float) -> None:
    seconds[name] = time.perf_counter() - began
    print(f"  {name}: {seconds[name]:.1f} s", file=sys.stderr, flush=True)


def _prepare(world: Path, args: argparse.Namespace, seconds: dict[str, float]
             ) -> tuple[str, str]:
    from kam.features.ingest import ingest
    from kam.features.synthetic import simulate
    from kam.training.run import TrainRequest, train_candidate

    data = world / "data"
    store = f"duckdb:///{data / 'kam.duckdb'}"
    tracking = f"sqlite:///{world / 'mlflow.db'}"
    if not (world / "ingested").exists():
        began = time.perf_counter()
        simulate(args.accounts, args.years, args.seed, data)
        ingest(data, store, rejects_dir=world / "rejects")
        (world / "ingested").touch()
        _step(seconds, "simulate and ingest", began)
    if not (world / "trained").exists():
        began = time.perf_counter()
        outcome = train_candidate(TrainRequest(
            store_url=store, tracking_uri=tracking, experiment="bench-decisions",
            model_name=args.model_name, artifact_location=(world / "mlartifacts").as_uri(),
        ), progress=lambda m: print(f"    {m}", file=sys.stderr, flush=True))
        (world / "trained").write_text(str(outcome.model_version))
        _step(seconds, "train", began)
    return store, tracking


def _bench(world: Path, store: str, tracking: str, args: argparse.Namespace,
           seconds: dict[str, float]) -> dict[str, Any]:
    from decisions_limits import (
        RANDOMISED_EFFECTS,
        half_oracles,
        randomised_effects,
        refit_risks,
        solve,
        true_effects_on_treated,
    )

    from kam.features.snapshots import build_snapshots, data_end
    from kam.features.store import connect, one_thread
    from kam.models.registry import load_model
    from kam.serving.decisions.evidence import evidence_for
    from kam.serving.decisions.plan import parse_capacity
    from kam.serving.decisions.playbook import load_playbook
    from kam.serving.scoring.batch import label_settings, score_accounts
    from kam.serving.scoring.effects import effect_dates, estimate_effects
    from kam.serving.scoring.planning import make_plan

    version = (world / "trained").read_text().strip()
    model = load_model(f"models:/{args.model_name}/{version}", tracking)
    playbook = load_playbook()
    capacity = parse_capacity(args.capacity, playbook)
    horizon, window, decline = label_settings(model.metadata)
    truth = world / "data" / "truth"
    true_effects = pd.read_parquet(truth / "action_effects.parquet").set_index("action")

    con = connect(store, read_only=True)
    cached = world / "effects.parquet"
    snapshots = None  # the effects' comparison snapshots, built once if either estimate needs them
    if not cached.exists() or not (world / RANDOMISED_EFFECTS).exists():
        began = time.perf_counter()
        snapshots = build_snapshots(con, effect_dates(con, horizon), horizon=horizon,
                                    activity_window=window, decline=decline)
        _step(seconds, "snapshots at the effects' comparison dates", began)
    if cached.exists():
        effects = pd.read_parquet(cached)
    else:
        began = time.perf_counter()
        effects = estimate_effects(con, model.scorer, horizon=horizon, activity_window=window,
                                   decline=decline, playbook=playbook, snapshots=snapshots)
        effects.to_parquet(cached)
        _step(seconds, "effects", began)
    evidence = evidence_for(playbook, effects.to_dict("records"))
    end = data_end(con)
    began = time.perf_counter()
    scores = score_accounts(con, model, as_of=end, playbook=playbook, evidence=evidence)
    eligible = score_accounts(con, model, as_of=end, playbook=playbook, evidence=evidence,
                              max_actions=len(playbook.actions))
    _step(seconds, "score (twice: top three, every eligible action)", began)

    months = pd.read_parquet(truth / "account_months.parquet").set_index(["account_id", "month"])
    at = months.xs(pd.Timestamp(end).to_period("M").to_timestamp(), level="month")
    true_saving = _true_savings(eligible, at, true_effects, playbook)

    began = time.perf_counter()
    plans: dict[str, pd.DataFrame] = {}
    kam = make_plan(scores, playbook, capacity)
    plans["kam plan"] = kam.rows[["account_id", "action_id"]]
    first = true_saving.groupby("account_id", sort=False).head(1)  # playbook order
    stake = scores.set_index("account_id")
    plans["biggest accounts first"] = _fill(
        first.assign(key=-first["account_id"].map(stake["value_at_stake"])), capacity, playbook)
    plans["highest risk first"] = _fill(
        first.assign(key=-first["account_id"].map(stake["defection_probability"])),
        capacity, playbook)
    rng = np.random.default_rng(args.seed)
    shuffled = true_saving.sample(frac=1.0, random_state=args.seed)
    one = shuffled.groupby("account_id", sort=False).head(1)
    plans["random eligible actions"] = _fill(one.assign(key=rng.random(len(one))), capacity,
                                             playbook)
    plans["oracle (true hazards and effects)"] = solve(
        true_saving, true_saving["true_saving"] - true_saving["cost"], capacity)
    _step(seconds, "plans", began)
    plans.update(half_oracles(true_saving, effects, true_effects, stake, capacity))
    began = time.perf_counter()
    # from here DuckDB sums in one order, as in training: the refits' trees follow the
    # snapshots' last digits (two runs' plans were 0.3-0.6M apart on several threads)
    one_thread(con)
    refits, spearman = refit_risks(con, model, true_saving, stake, capacity, truth, months,
                                   pd.Timestamp(end))
    plans.update(refits)
    _step(seconds, "risks refit on the label, the true onsets and the true hazard", began)

    lookup = true_saving.set_index(["account_id", "action_id"])
    rows = []
    for name, chosen in plans.items():
        found = lookup.reindex(pd.MultiIndex.from_frame(chosen[["account_id", "action_id"]]))
        rows.append({
            "plan": name, "actions": len(chosen),
            "true value saved": float(found["true_saving"].fillna(0).sum()),
            "cost": float(found["cost"].fillna(0).sum()),
            "addresses the top true cause": float(found["top_cause"].fillna(False).mean())
            if len(found) else float("nan"),
        })
    table = pd.DataFrame(rows).set_index("plan")
    table["net of cost"] = table["true value saved"] - table["cost"]
    base = table.loc["kam plan", "true value saved"]
    table["kam / this"] = base / table["true value saved"]
    pd.set_option("display.width", 200)
    print(f"\n{args.accounts:,} accounts, as_of {pd.Timestamp(end).date()}, capacity "
          f"{args.capacity}; kam's plan: {len(kam.rows)} actions of {kam.candidates:,} "
          f"candidates, solver gap {kam.result.gap:.2e} in {kam.result.seconds:.1f} s\n")
    print(table.to_string(float_format=lambda v: f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"))
    ratios = {
        "kam / biggest accounts first": base / table.loc["biggest accounts first",
                                                      "true value saved"],
        "kam / oracle": base / table.loc["oracle (true hazards and effects)",
                                         "true value saved"],
    }
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    print("Spearman correlation of each refit risk with the true monthly hazard, accounts still "
          "active: " + ", ".join(f"{k} {v:.3f}" for k, v in spearman.items()))

    compared = effects.assign(true_log_odds=effects["action"].map(true_effects["effect_log_odds"]))
    compared["true_relative"] = 1 - np.exp(compared["true_log_odds"])
    dates = effect_dates(con, horizon)
    compared["true_onset_change"] = compared["action"].map(
        true_effects_on_treated(world, months, dates[0], dates[-1]))
    # as the recommendations read it: a no_effect estimate in the action's favour is unproven
    shown = dict(zip([a.id for a in playbook.actions], evidence.status, strict=True))
    compared["evidence"] = compared["action"].map(shown)
    print("\neffects (relative: share of the treated accounts' risk removed; the true relative "
          "reduction is of the cause's hazard during the effect months; true_onset_change: the "
          "true change in the probability that a defection of the action's cause starts in "
          "those months, over the accounts treated at the comparison dates)")
    print(compared[["action", "status", "evidence", "n_treated", "effect", "ci_low", "ci_high",
                    "relative", "cause_share", "true_log_odds", "true_relative",
                    "true_onset_change"]]
          .round(3).to_string(index=False))
    began = time.perf_counter()
    randomised = randomised_effects(model, playbook, world, snapshots)
    _step(seconds, "effects from the randomly assigned actions", began)
    print("\nthe same estimator on the randomly assigned actions alone (no confounding; "
          "what is left is noise)")
    print(randomised[["action", "status", "n_treated", "effect", "ci_low", "ci_high",
                      "relative"]].round(3).to_string(index=False))

    began = time.perf_counter()
    top, chance, n = _top_action_vs_truth(con, model, playbook, evidence, world)
    _step(seconds, "top action against the true cause", began)
    print(f"\ntrue defectors in the top decile of value at risk: {n}; the top action addresses "
          f"the true cause for {top:.1%}, a random playbook pick for {chance:.1%} "
          f"({top / chance:.2f}x)")
    con.disconnect()
    return {
        "accounts": args.accounts, "as_of": str(pd.Timestamp(end).date()),
        "capacity": args.capacity, "plans": table.reset_index().to_dict("records"),
        "ratios": ratios, "top_action": {"share": top, "random": chance, "defectors": n},
        "effects": compared.drop(columns="summary").to_dict("records"),
        "effects_randomised": randomised.drop(columns="summary").to_dict("records"),
        "refit_risk_spearman": spearman,
        "solver": {"gap": kam.result.gap, "seconds": kam.result.seconds,
                   "candidates": kam.candidates},
        "seconds": seconds,
    }


def _true_savings(eligible: pd.DataFrame, at: pd.DataFrame, true_effects: pd.DataFrame,
                  playbook: Any) -> pd.DataFrame:
    """Every eligible (account, action) with its true saving, in each account's playbook order."""
    from decisions_limits import shifted

    order = {a.id: i for i, a in enumerate(playbook.actions)}
    rows = []
    for record in eligible[["account_id", "actions"]].itertuples():
        for item in json.loads(record.actions):
            rows.append((record.account_id, item["action_id"], item.get("expected_saving")))
    pairs = pd.DataFrame(rows, columns=["account_id", "action_id", "estimated_saving"])
    pairs["estimated_saving"] = pairs["estimated_saving"].astype(float)
    pairs["position"] = pairs["action_id"].map(order)
    pairs = pairs.sort_values(["account_id", "position"], kind="stable")
    by_id = playbook.by_id
    pairs["owner"] = pairs["action_id"].map(lambda a: by_id[a].owner)
    pairs["cause"] = pairs["action_id"].map(lambda a: by_id[a].cause)
    pairs["effort"] = pairs["action_id"].map(lambda a: by_id[a].effort)
    pairs["cost"] = pairs["action_id"].map(lambda a: playbook.action_cost(by_id[a]))
    effect = pairs["action_id"].map(true_effects["effect_log_odds"]).fillna(0.0).to_numpy()
    span = pairs["action_id"].map(true_effects["effect_months"]).fillna(6).to_numpy()
    hazard = np.zeros(len(pairs))
    for cause in ("competitor_price", "unmet_needs", "unresolved_complaints"):
        mine = (pairs["cause"] == cause).to_numpy()
        hazard[mine] = pairs.loc[mine, "account_id"].map(at[f"hazard_{cause}"]).fillna(0.0)
    hazard = np.clip(hazard, 0.0, 1 - 1e-12)
    treated = shifted(hazard, effect)
    # defection of that cause within the effect months, without and with the action
    reduction = (1 - (1 - hazard) ** span) - (1 - (1 - treated) ** span)
    # the cause's defection probability over the effect months, without the action
    pairs["true_cause_risk"] = 1 - (1 - hazard) ** span
    revenue = pairs["account_id"].map(at["expected_revenue"]).fillna(0.0).to_numpy() * 12
    pairs["true_saving"] = reduction * revenue
    causes = at[[f"hazard_{c}" for c in ("competitor_price", "unmet_needs",
                                         "unresolved_complaints")]]
    top = causes.idxmax(axis=1).str.removeprefix("hazard_")
    pairs["top_cause"] = pairs["cause"] == pairs["account_id"].map(top)
    return pairs.reset_index(drop=True)


def _fill(ranked: pd.DataFrame, capacity: dict[str, float], playbook: Any) -> pd.DataFrame:
    """Take accounts in ``key`` order, each with its action, while its owner has capacity."""
    left = dict(capacity)
    chosen = []
    for row in ranked.sort_values("key", kind="stable").itertuples():
        effort = playbook.by_id[row.action_id].effort
        if effort <= left.get(row.owner, 0.0):
            left[row.owner] -= effort
            chosen.append((row.account_id, row.action_id))
        if all(v < 1 for v in left.values()):
            break
    return pd.DataFrame(chosen, columns=["account_id", "action_id"])


def _top_action_vs_truth(con: Any, model: Any, playbook: Any, evidence: Any, world: Path
                         ) -> tuple[float, float, int]:
    from kam.features.snapshots import build_snapshots, data_end
    from kam.serving.scoring.batch import label_settings, score_frame

    horizon, window, decline = label_settings(model.metadata)
    last = data_end(con) - horizon.offset()
    dates = [last - pd.DateOffset(months=3 * k) for k in range(4)][::-1]
    defections = pd.read_parquet(world / "data" / "truth" / "defections.parquet")
    hits, chance = [], []
    for day in map(pd.Timestamp, dates):
        snapshot = build_snapshots(con, [day], horizon=horizon, activity_window=window,
                                   decline=decline)
        frame = score_frame(snapshot, model, as_of=day, playbook=playbook, evidence=evidence)
        end = day + horizon.offset()
        onset = defections["onset_month"].between(day, end, inclusive="right")
        stop = defections["defection_month"].between(day, end, inclusive="right")
        cause = frame["account_id"].map(
            defections[onset | stop].drop_duplicates("account_id").set_index("account_id")[
                "cause"])
        top = frame[(frame["rank"] <= int(np.ceil(0.1 * len(frame)))) & cause.notna()]
        for row, true_cause in zip(top.itertuples(), cause[top.index], strict=True):
            actions = json.loads(row.actions)
            hits.append(bool(actions) and actions[0]["cause"] == true_cause)
            tier_actions = [a for a in playbook.actions if row.tier in a.tiers]
            chance.append(np.mean([a.cause == true_cause for a in tier_actions]))
    return float(np.mean(hits)), float(np.mean(chance)), len(hits)


if __name__ == "__main__":
    main()
