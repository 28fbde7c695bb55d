"""The plan's solver and capacities: exact on small books checked by brute force, fast on large."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kam.serving.decisions.plan import CapacityError, parse_capacity, solve_plan
from kam.serving.decisions.playbook import load_playbook

PLAYBOOK = load_playbook()


def test_a_capacity_string_reads_owners_aliases_and_units() -> None:
    assert parse_capacity("AR=120h,SR=60h,FR=40h,executive=10", PLAYBOOK) == {
        "AR": 120.0, "SR": 60.0, "FR": 40.0, "executive sponsor": 10.0,
    }
    # any case, spaces, the plural unit; owners left out have none
    assert parse_capacity(" ar = 7.5 H , Executive Sponsor=2visits", PLAYBOOK) == {
        "AR": 7.5, "SR": 0.0, "FR": 0.0, "executive sponsor": 2.0,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("XR=3h", "'XR=3h': unknown owner 'XR'; owners: AR, SR, FR, executive"),
        ("AR=12d", "'AR=12d': AR's capacity is counted in 'h', not 'd'"),
        ("executive=3h", "executive sponsor's capacity is counted in 'visit', not 'h'"),
        ("FR=-2h", "'FR=-2h': FR's capacity must be a non-negative number of h, not '-2'"),
        ("FR=lots", "'FR=lots': FR's capacity is counted in 'h', not 'lots'"),
        ("FR=1.2.3h", "FR's capacity must be a non-negative number of h, not '1.2.3'"),
        ("AR=1h,ar=2h", "owner 'AR' is given twice"),
        ("AR", "'AR': write owner=amount"),
        (" , ", "no capacity given"),
    ],
    ids=["unknown-owner", "wrong-unit", "unit-of-another", "negative", "not-a-number",
         "twice", "no-amount", "empty", "bad-number"],
)
def test_a_bad_capacity_names_the_owner_or_unit(text: str, message: str) -> None:
    with pytest.raises(CapacityError) as caught:
        parse_capacity(text, PLAYBOOK)
    assert message in str(caught.value)


def _brute_force(account, owner, cause, effort, saving, capacity) -> float:
    best = 0.0
    n = len(saving)
    for size in range(n + 1):
        for chosen in itertools.combinations(range(n), size):
            if any(saving[i] <= 0 for i in chosen):
                continue
            if any(sum(effort[i] for i in chosen if owner[i] == o) > c
                   for o, c in capacity.items()):
                continue
            if len({(account[i], owner[i]) for i in chosen}) < size:
                continue
            if len({(account[i], cause[i]) for i in chosen}) < size:
                continue
            best = max(best, sum(saving[i] for i in chosen))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_plan_is_the_best_within_capacity(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 13
    account = rng.integers(0, 6, n)
    owner = rng.choice(["AR", "SR"], n)
    cause = rng.choice(["competitor_price", "unmet_needs"], n)
    effort = rng.choice([1.0, 2.0, 3.0], n)
    saving = rng.normal(5, 4, n)
    # small capacities, so that setting candidates aside before solving is exercised
    capacity = {"AR": float(rng.integers(1, 5)), "SR": float(rng.integers(1, 4))}
    result = solve_plan(account, owner, cause, effort, saving, capacity)
    assert result.total == pytest.approx(_brute_force(account, owner, cause, effort, saving,
                                                      capacity))
    chosen = result.chosen
    for o, c in capacity.items():
        assert effort[chosen][owner[chosen] == o].sum() <= c
        assert result.used[o] == pytest.approx(effort[chosen][owner[chosen] == o].sum())
    assert result.gap <= 1e-6


def test_a_large_book_is_solved_to_proven_optimality() -> None:
    rng = np.random.default_rng(0)
    n = 60_000
    owner = rng.choice(["AR", "SR", "FR", "executive sponsor"], n)
    effort = np.where(owner == "executive sponsor", 1.0, rng.choice([2.0, 4.0, 6.0, 12.0], n))
    result = solve_plan(rng.integers(0, 20_000, n), owner, rng.choice(["a", "b", "c"], n),
                        effort, rng.lognormal(8, 2, n),
                        {"AR": 120, "SR": 60, "FR": 40, "executive sponsor": 10})
    assert result.gap <= 1e-6 and "Optimal" in result.status
    assert result.used["executive sponsor"] == 10


def test_nothing_worth_doing_gives_an_empty_plan() -> None:
    result = solve_plan(["a", "b"], ["AR", "AR"], ["x", "y"], np.array([1.0, 1.0]),
                        np.array([-5.0, np.nan]), {"AR": 10})
    assert len(result.chosen) == 0 and result.total == 0


def _scored(account: str, *actions: tuple[str, float, str]) -> dict[str, object]:
    """A score record whose recommended actions carry (action, saving, evidence)."""
    import json

    return {
        "account_id": account, "name": account, "region": "East", "account_manager": "M1",
        "tier": "A", "defection_probability": 0.5, "value_at_stake": 1e6, "as_of": "2025-12-31",
        "actions": json.dumps([
            {"action_id": a, "expected_saving": saving, "evidence": evidence,
             "due_date": "2026-01-14", "effect": -0.02, "effect_low": -0.05,
             "effect_high": 0.01 if evidence == "unproven" else -0.005,
             "evidence_accounts": 100}
            for a, saving, evidence in actions
        ]),
    }


def test_the_plan_gives_unproven_actions_only_the_capacity_supported_ones_leave() -> None:
    import pandas as pd

    from kam.serving.scoring.planning import make_plan

    scores = pd.DataFrame([
        # SR has room for one quality RCA (16 h): the supported one, though it saves less
        _scored("A1", ("quality_rca", 50_000.0, "helps")),
        _scored("A2", ("quality_rca", 90_000.0, "unproven")),
        # FR has no supported candidate: its hours go to the best unproven ones
        _scored("A3", ("complaint_closure", 30_000.0, "unproven")),
        _scored("A4", ("complaint_closure", 20_000.0, "unproven")),
        _scored("A5", ("complaint_closure", 10_000.0, "unproven")),
        # the supported action of A6 takes its account's cause (unmet needs) for both solves
        _scored("A6", ("priority_supply", 5_000.0, "helps"),
                ("business_review", 80_000.0, "unproven")),
    ])
    plan = make_plan(scores, PLAYBOOK, {"AR": 20.0, "SR": 20.0, "FR": 14.0,
                                        "executive sponsor": 0.0})
    chosen = dict(zip(plan.rows["account_id"] + ":" + plan.rows["action_id"],
                      plan.rows["evidence"], strict=True))
    assert chosen == {
        "A1:quality_rca": "helps",
        "A6:priority_supply": "helps",
        "A3:complaint_closure": "unproven",
        "A4:complaint_closure": "unproven",
    }
    assert plan.result.used["SR"] == 16.0 and plan.result.used["FR"] == 14.0
    assert plan.result.total == pytest.approx(50_000 + 5_000 + 30_000 + 20_000)
