"""The retention playbook: validation, triggers, tiers, stages, cool-downs and ranking."""

from __future__ import annotations

import copy
from importlib import resources

import ibis
import numpy as np
import pandas as pd
import pytest
import yaml

from kam.features.catalog import by_name
from kam.features.synthetic.catalog import ACTION_TYPES
from kam.models.feature_spec import FeatureSpec
from kam.serving.decisions.drivers import compute_drivers
from kam.serving.decisions.evidence import evidence_for
from kam.serving.decisions.phrasebook import load_phrasebook
from kam.serving.decisions.playbook import PlaybookError, load_playbook, parse_playbook
from kam.serving.decisions.recommend import days_since_taken, recommend
from kam.serving.decisions.stages import (
    assign_tiers,
    relationship_stage,
    tier_cutoffs,
    tiers_from_cutoffs,
)
from kam.serving.decisions.vocabulary import OWNERS, TECHNIQUES

PHRASES = load_phrasebook()
PLAYBOOK = load_playbook()
SHIPPED = yaml.safe_load(
    resources.files("kam.serving.decisions").joinpath("playbook.yaml").read_text(encoding="utf-8")
)


# ------------------------------------------------------------------------------------------------
# The shipped playbook
# ------------------------------------------------------------------------------------------------
def test_shipped_playbook_is_versioned_and_covers_the_seven_techniques() -> None:
    assert PLAYBOOK.version == str(SHIPPED["version"])
    assert len(PLAYBOOK.actions) >= 10
    used = {a.technique for a in PLAYBOOK.actions}
    assert set(TECHNIQUES) - {"differentiated_service"} <= used
    assert {a.owner for a in PLAYBOOK.actions} == set(OWNERS)
    assert any(a.tiers == ["C"] for a in PLAYBOOK.actions), "a low-cost action for tier C"


def test_simulator_actions_keep_their_ids_owner_technique_and_cause() -> None:
    for kind in ACTION_TYPES:
        action = PLAYBOOK.by_id[kind.action]
        assert (action.owner, action.technique, action.cause) == (
            kind.owner, kind.technique, kind.cause,
        ), kind.action


def test_a_playbook_path_overrides_the_default(tmp_path) -> None:
    data = copy.deepcopy(SHIPPED)
    data["version"] = "custom-7"
    data["actions"] = data["actions"][:2]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    custom = load_playbook(path)
    assert custom.version == "custom-7"
    assert custom.ids == PLAYBOOK.ids[:2]


def _broken(action: int, change: dict | None = None, drop: str | None = None) -> dict:
    data = copy.deepcopy(SHIPPED)
    target = data["actions"][action]
    if drop:
        del target[drop]
    target.update(change or {})
    return data


@pytest.mark.parametrize(
    ("data", "action", "field", "detail"),
    [
        (_broken(0, drop="owner"), "complaint_closure", "owner", "Field required"),
        (_broken(1, {"owner": "CEO"}), "quality_rca", "owner", "'executive sponsor'"),
        (_broken(2, {"technique": "free_lunch"}), "priority_supply", "technique",
         "'keep_communication_open'"),
        (_broken(3, {"due_in_days": -5}), "delivery_recovery", "due_in_days",
         "greater than or equal to 1"),
        (_broken(4, {"tiers": ["A", "Z"]}), "exec_sponsor_visit", "tiers", "'A', 'B' or 'C'"),
        (_broken(5, {"cool_down_days": -1}), "technical_exchange", "cool_down_days",
         "greater than or equal to 0"),
        (_broken(6, {"trigger": {"when": ["discount_rate_365d >> 2"]}}), "value_proposal",
         "trigger.when", "cannot read condition"),
        (_broken(7, {"trigger": {"features": ["no_such_feature"]}}), "multi_threading",
         "trigger.features", "no_such_feature"),
        (_broken(8, {"cause": "bad_weather"}), "handover_visit", "cause", "'unmet_needs'"),
        (_broken(9, {"colour": "red"}), "business_review", "colour", "Extra inputs"),
        (_broken(10, {"effort": 0}), "service_desk", "effort", "greater than 0"),
        (_broken(11, {"cost": -300}), "visit_follow_up", "cost", "greater than or equal to 0"),
        (_broken(12, {"effort": "two hours"}), "nurture_c", "effort", "valid number"),
    ],
    ids=[
        "missing-owner", "unknown-owner", "unknown-technique", "negative-due-days",
        "unknown-tier", "negative-cool-down", "bad-condition", "unknown-trigger-feature",
        "unknown-cause", "unknown-field", "zero-effort", "negative-cost", "effort-as-text",
    ],
)
def test_malformed_playbook_names_the_action_and_field(data, action, field, detail) -> None:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(data, "edited.yaml")
    message = str(caught.value)
    assert f"action '{action}', field '{field}'" in message
    assert detail in message
    assert message.startswith("playbook edited.yaml: ")


def test_owner_units_and_costs_are_validated() -> None:
    data = copy.deepcopy(SHIPPED)
    del data["owners"]["FR"]
    with pytest.raises(PlaybookError, match=r"owners \['FR'\] have actions but no unit"):
        parse_playbook(data, "edited.yaml")
    data = copy.deepcopy(SHIPPED)
    data["owners"]["AR"]["cost_per_unit"] = -1
    with pytest.raises(PlaybookError, match=r"owners.AR.cost_per_unit: .*greater than or equal"):
        parse_playbook(data, "edited.yaml")
    data = copy.deepcopy(SHIPPED)
    data["owners"]["SR"]["alias"] = "executive"
    with pytest.raises(PlaybookError, match="owner names and aliases must differ"):
        parse_playbook(data, "edited.yaml")


def test_an_actions_cost_is_the_owners_time_at_its_rate_plus_its_own_cost() -> None:
    rca = PLAYBOOK.by_id["quality_rca"]
    assert PLAYBOOK.owners["SR"].unit == "h"
    assert PLAYBOOK.action_cost(rca) == rca.effort * PLAYBOOK.owners["SR"].cost_per_unit + rca.cost
    visit = PLAYBOOK.by_id["exec_sponsor_visit"]
    assert PLAYBOOK.owners["executive sponsor"].alias == "executive"
    assert PLAYBOOK.action_cost(visit) == 1 * 5000 + 1500


def test_duplicate_ids_and_bad_files_are_refused(tmp_path) -> None:
    data = copy.deepcopy(SHIPPED)
    data["actions"].append(copy.deepcopy(data["actions"][0]))
    with pytest.raises(PlaybookError, match="'complaint_closure' appears twice"):
        parse_playbook(data)
    missing_version = {"actions": SHIPPED["actions"]}
    with pytest.raises(PlaybookError, match="version"):
        parse_playbook(missing_version)
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nactions: [\n")
    with pytest.raises(PlaybookError, match=r"broken\.yaml"):
        load_playbook(path)


# ------------------------------------------------------------------------------------------------
# Tiers and stages
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([50, 20, 10, 10, 5, 5], ["A", "A", "B", "B", "C", "C"]),
        ([10, 50, 5, 20, 5, 10], ["B", "A", "C", "A", "C", "B"]),
        ([80, 10, 10], ["A", "B", "C"]),
        ([95, 3, 2], ["A", "C", "C"]),
        ([0, 0, 0], ["C", "C", "C"]),
        ([60, np.nan, -5, 40], ["A", "C", "C", "A"]),
    ],
    ids=["sorted", "shuffled", "one-giant", "giant-takes-all", "all-zero", "missing-negative"],
)
def test_tiers_follow_the_cumulative_share_of_predicted_value(value, expected) -> None:
    assert assign_tiers(np.array(value, dtype=float), (0.7, 0.9)).tolist() == expected


def test_tier_thresholds_are_arguments_and_cutoffs_reproduce_them() -> None:
    value = np.array([50, 20, 10, 10, 5, 5], dtype=float)
    assert assign_tiers(value, (0.5, 0.8)).tolist() == ["A", "B", "B", "C", "C", "C"]
    tiers = assign_tiers(value, (0.7, 0.9))
    cutoffs = tier_cutoffs(value, tiers)
    assert cutoffs == (20.0, 10.0)
    assert tiers_from_cutoffs(np.array([25.0, 12.0, 1.0]), cutoffs).tolist() == ["A", "B", "C"]
    with pytest.raises(ValueError, match="thresholds"):
        assign_tiers(value, (0.9, 0.7))


YEAR = 365.0


@pytest.mark.parametrize(
    ("row", "stage"),
    [
        ({"tenure_days": 200, "contact_roles_180d": 1}, "exploratory"),
        ({"tenure_days": 900, "revenue_yoy_90d": -0.5, "revenue_change_365d": -0.3,
          "contact_roles_180d": 5, "executive_contact_recency_days": 10}, "disintegrating"),
        ({"tenure_days": 900, "overdue_ratio": 4.0, "contact_roles_180d": 3}, "disintegrating"),
        ({"tenure_days": 4 * YEAR, "contact_roles_180d": 5, "executive_contact_recency_days": 40},
         "integrated"),
        ({"tenure_days": 4 * YEAR, "contact_roles_180d": 5,
          "executive_contact_recency_days": 150}, "interdependent"),
        ({"tenure_days": 2 * YEAR, "contact_roles_180d": 2, "executive_contact_recency_days": 400},
         "co-operative"),
        ({"tenure_days": 3 * YEAR, "contact_roles_180d": 1, "contacts_180d": 1}, "basic"),
        ({"tenure_days": 4 * YEAR, "active_months_share_12m": 0.9, "categories_365d": 4},
         "interdependent"),
        ({"tenure_days": 2.5 * YEAR, "active_months_share_12m": 0.6, "categories_365d": 1},
         "co-operative"),
        ({"tenure_days": 1.5 * YEAR, "active_months_share_12m": 1.0, "categories_365d": 5},
         "basic"),
    ],
    ids=[
        "young", "eroding", "stopped", "diamond", "interdependent", "two-roles", "bow-tie",
        "orders-only-long", "orders-only-mid", "orders-only-short",
    ],
)
def test_relationship_stage_heuristic(row, stage) -> None:
    values = {k: np.array([v], dtype=float) for k, v in row.items()}
    assert relationship_stage(values, 1).tolist() == [stage]


# ------------------------------------------------------------------------------------------------
# Triggers and ranking on hand-made drivers
# ------------------------------------------------------------------------------------------------
NAMES = (
    "revenue_yoy_90d",
    "discount_rate_trend_180d",
    "executive_contact_recency_days",
    "contact_roles_180d",
    "reps_dropped_180d",
    "complaints_open",
    "complaints_open_overdue",
    "complaint_share_quality_365d",
    "on_time_rate_180d",
    "late_deliveries_180d",
)
SPEC = FeatureSpec(NAMES, {}, {n: by_name(n).family for n in NAMES})
# Values of features the triggers read that the hand-made model does not use: quiet ones, so
# that only the conditions a case sets can fire (a condition on a feature absent from the data
# would not be checked at all).
QUIET = {"resolution_days_mean_365d": 3.0, "visit_recency_days": 200.0, "sentiment_mean_180d": 0.3}


def _full(values: dict[str, float]) -> dict[str, np.ndarray]:
    merged = {n: values.get(n, np.nan) for n in NAMES} | QUIET
    return {n: np.array([v], dtype=float) for n, v in merged.items()}


def _case(contributions: dict[str, float], values: dict[str, float], tier: str,
          history: dict[str, float] | None = None) -> list[str]:
    contrib = np.zeros((1, len(NAMES) + 1))
    for name, c in contributions.items():
        contrib[0, NAMES.index(name)] = c
    full = _full(values)
    drivers = compute_drivers(contrib, SPEC, full, PHRASES)
    since = None
    if history is not None:
        since = np.full((1, len(PLAYBOOK.actions)), np.nan)
        for action, days in history.items():
            since[0, PLAYBOOK.ids.index(action)] = days
    chosen = recommend(PLAYBOOK, drivers, full, np.array([tier], dtype=object),
                       "2025-12-31", PHRASES, days_since_taken=since)
    return [r["action_id"] for r in chosen.records(0)]


COMPLAINTS = {"complaints_open_overdue": 0.6, "complaints_open": 0.2}
OPEN = {"complaints_open": 3, "complaints_open_overdue": 2, "complaint_share_quality_365d": 0.0,
        "executive_contact_recency_days": 10, "contact_roles_180d": 4, "reps_dropped_180d": 0}
PRICE = {"discount_rate_trend_180d": 0.5, "revenue_yoy_90d": 0.2}
PRICED = {"discount_rate_trend_180d": 0.05, "revenue_yoy_90d": -0.4, "complaints_open": 0,
          "executive_contact_recency_days": 95, "contact_roles_180d": 2, "reps_dropped_180d": 0}
SUPPLY = {"late_deliveries_180d": 0.5, "on_time_rate_180d": 0.3}
LATE = {"late_deliveries_180d": 6, "on_time_rate_180d": 0.6, "complaints_open": 0,
        "executive_contact_recency_days": 10, "contact_roles_180d": 4, "reps_dropped_180d": 0}


@pytest.mark.parametrize(
    ("contributions", "values", "tier", "expected"),
    [
        (COMPLAINTS, OPEN, "A", ["complaint_closure"]),
        (COMPLAINTS, {**OPEN, "complaint_share_quality_365d": 0.5}, "B",
         ["complaint_closure", "quality_rca"]),
        (PRICE, PRICED, "A", ["exec_sponsor_visit", "technical_exchange", "value_proposal"]),
        (PRICE, {**PRICED, "executive_contact_recency_days": 10}, "A",
         ["technical_exchange", "value_proposal", "multi_threading"]),
        (PRICE, PRICED, "C", ["nurture_c"]),
        (SUPPLY, LATE, "A", ["priority_supply", "business_review"]),
        (SUPPLY, LATE, "C", ["delivery_recovery", "nurture_c"]),
        ({**SUPPLY, **COMPLAINTS}, {**LATE, **OPEN, "late_deliveries_180d": 6}, "B",
         ["complaint_closure", "priority_supply", "business_review"]),
    ],
    ids=[
        "open-complaints", "quality-complaints", "price-no-exec-contact", "price-exec-met",
        "price-tier-c", "supply-tier-a", "supply-tier-c", "complaints-outrank-supply",
    ],
)
def test_triggers_tiers_and_ranking(contributions, values, tier, expected) -> None:
    assert _case(contributions, values, tier) == expected


def test_reason_and_due_date_come_from_the_account() -> None:
    contrib = np.zeros((1, len(NAMES) + 1))
    contrib[0, NAMES.index("complaints_open_overdue")] = 0.6
    values = _full(OPEN)
    drivers = compute_drivers(contrib, SPEC, values, PHRASES)
    chosen = recommend(PLAYBOOK, drivers, values, np.array(["A"], dtype=object),
                       pd.Timestamp("2025-12-31"), PHRASES)
    assert chosen.records(0) == [
        {
            "action_id": "complaint_closure",
            "title": "Escalate and close open complaints",
            "technique": "raise_service_level",
            "owner": "FR",
            "due_date": "2026-01-07",
            "reason": "2 complaints open for 21+ days",
            "cause": "unresolved_complaints",
            "title_zh": "升级并关闭未结投诉",
            "reason_zh": "2件投诉超过21天未结",
            "expected_saving": None,
            "risk_reduction": None,
            "evidence": "untested",
            "effect": None,
            "effect_low": None,
            "effect_high": None,
            "evidence_accounts": 0,
        }
    ]


def _effect(action: str, status: str = "helps", relative: float = 0.4, share: float = 0.5,
            n: int = 200) -> dict:
    return {"action": action, "status": status, "effect": -0.04, "ci_low": -0.07,
            "ci_high": -0.01, "relative": relative, "cause_share": share, "n_treated": n}


def _ranked(effects: list[dict], probability: float, stake: float) -> list[dict]:
    """A tier A account driven by open complaints and by price, with the given evidence."""
    contrib = np.zeros((1, len(NAMES) + 1))
    for name, c in {**COMPLAINTS, **PRICE}.items():
        contrib[0, NAMES.index(name)] = c
    full = _full({**PRICED, **OPEN, "executive_contact_recency_days": 10})
    drivers = compute_drivers(contrib, SPEC, full, PHRASES)
    chosen = recommend(PLAYBOOK, drivers, full, np.array(["A"], dtype=object), "2025-12-31",
                       PHRASES, evidence=evidence_for(PLAYBOOK, effects),
                       probability=np.array([probability]), stake=np.array([stake]),
                       max_actions=5)
    return chosen.records(0)


def test_actions_are_ranked_by_expected_saving_with_their_evidence() -> None:
    untested = _ranked([], 0.5, 1_000_000)
    assert [a["evidence"] for a in untested] == ["untested"] * len(untested)
    first = untested[0]["action_id"]  # by cause strength when nothing is known
    assert first == "complaint_closure"
    # technical_exchange is supported: it comes first, whatever the cause strengths say
    ranked = _ranked([_effect("technical_exchange", relative=0.3, share=0.5)], 0.5, 1_000_000)
    top = ranked[0]
    assert top["action_id"] == "technical_exchange" and top["evidence"] == "helps"
    assert top["effect"] == -0.04 and top["evidence_accounts"] == 200
    # saving = probability x stake x reduction - cost; reduction scaled by the price share
    reduction = top["risk_reduction"]
    assert 0 < reduction <= 1
    cost = PLAYBOOK.action_cost(PLAYBOOK.by_id["technical_exchange"])
    assert top["expected_saving"] == pytest.approx(0.5 * 1_000_000 * reduction - cost, abs=0.01)
    assert all(a["expected_saving"] is None for a in ranked[1:])
    # two supported actions: the one saving more comes first
    both = _ranked([_effect("technical_exchange", relative=0.3, share=0.5),
                    _effect("complaint_closure", relative=0.6, share=0.5)], 0.5, 1_000_000)
    savings = [a["expected_saving"] for a in both[:2]]
    assert savings == sorted(savings, reverse=True) and None not in savings


def test_harmful_actions_are_never_recommended_and_untested_ones_say_so() -> None:
    ranked = _ranked([_effect("complaint_closure", status="harms", relative=-0.2)], 0.5, 1e6)
    assert "complaint_closure" not in [a["action_id"] for a in ranked]
    no_gain = {**_effect("complaint_closure", status="no_effect", relative=-0.02),
               "effect": 0.01, "ci_low": -0.02, "ci_high": 0.04}
    no_effect = _ranked([no_gain], 0.5, 1e6)
    closure = next(a for a in no_effect if a["action_id"] == "complaint_closure")
    assert closure["evidence"] == "no_effect" and closure["expected_saving"] is None
    too_few = _ranked([_effect("complaint_closure", status="too_few")], 0.5, 1e6)
    closure = next(a for a in too_few if a["action_id"] == "complaint_closure")
    assert closure["evidence"] == "untested"


def test_an_unproven_action_has_a_saving_but_never_outranks_a_supported_one() -> None:
    # complaint closure: an estimate in its favour whose interval includes zero, and a larger
    # reduction than the supported technical exchange, which still comes first
    favoured = {**_effect("complaint_closure", status="no_effect", relative=0.6),
                "ci_low": -0.08, "ci_high": 0.01}
    ranked = _ranked([favoured, _effect("technical_exchange", relative=0.1)], 0.5, 1e6)
    ids = [a["action_id"] for a in ranked]
    closure = ranked[ids.index("complaint_closure")]
    exchange = ranked[ids.index("technical_exchange")]
    assert closure["evidence"] == "unproven" and exchange["evidence"] == "helps"
    assert closure["expected_saving"] > exchange["expected_saving"] > 0
    assert ids.index("technical_exchange") < ids.index("complaint_closure")
    # and ahead of the untested ones, by the saving its estimate gives
    assert all(a["evidence"] == "untested" for a in ranked[ids.index("complaint_closure") + 1:])


def test_a_supported_action_costing_more_than_it_saves_has_a_negative_saving() -> None:
    ranked = _ranked([_effect("technical_exchange", relative=0.3)], 0.01, 10_000)
    top = ranked[0]
    assert top["action_id"] == "technical_exchange"
    assert top["expected_saving"] < 0


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ({"complaint_closure": 10}, []),
        ({"complaint_closure": 400}, ["complaint_closure"]),
        ({"complaint_closure": 30}, ["complaint_closure"]),
        ({"quality_rca": 5}, ["complaint_closure"]),
    ],
    ids=["recent-suppressed", "long-ago-allowed", "cool-down-just-over", "other-action"],
)
def test_cool_down_suppresses_recent_actions(history, expected) -> None:
    assert _case(COMPLAINTS, OPEN, "A", history) == expected


def test_days_since_taken_reads_the_actions_table(tmp_path) -> None:
    con = ibis.duckdb.connect(str(tmp_path / "store.duckdb"))
    con.create_table(
        "actions",
        pd.DataFrame(
            {
                "action_id": ["X1", "X2", "X3", "X4", "X5"],
                "account_id": ["A1", "A1", "A2", "A2", "A3"],
                "taken_at": pd.to_datetime(
                    ["2025-12-21 15:00", "2024-06-01 00:00", "2025-12-30 00:00", "2026-01-05 00:00",
                     "2025-12-01 00:00"]
                ),
                "action": ["complaint_closure", "quality_rca", "complaint_closure",
                           "quality_rca", "not_in_playbook"],
            }
        ),
    )
    days = days_since_taken(con, np.array(["A1", "A2", "A3", "A4"], dtype=object),
                            "2025-12-31", PLAYBOOK)
    closure, rca = PLAYBOOK.ids.index("complaint_closure"), PLAYBOOK.ids.index("quality_rca")
    assert days[0, closure] == 10.0
    assert np.isnan(days[0, rca])  # taken 578 days ago: beyond every cool-down
    assert days[1, closure] == 1.0
    assert np.isnan(days[1, rca])  # taken after as_of: unknown at as_of
    assert np.isnan(days[2:]).all()
    empty = ibis.duckdb.connect(str(tmp_path / "empty.duckdb"))
    assert days_since_taken(empty, np.array(["A1"]), "2025-12-31", PLAYBOOK) is None


@pytest.mark.parametrize("cause", ["competitor_price", "unmet_needs", "unresolved_complaints"])
def test_the_top_action_addresses_a_planted_cause(cause) -> None:
    """Fast check of the chain the ground-truth test measures: cause evidence -> top action."""
    planted = {
        "competitor_price": ({"discount_rate_trend_180d": 0.7, "revenue_yoy_90d": 0.4,
                              "complaints_open": 0.05, "late_deliveries_180d": 0.05}, PRICED),
        "unmet_needs": ({"late_deliveries_180d": 0.6, "revenue_yoy_90d": 0.4,
                         "discount_rate_trend_180d": 0.05}, LATE),
        "unresolved_complaints": ({"complaints_open_overdue": 0.6, "revenue_yoy_90d": 0.4,
                                   "late_deliveries_180d": 0.05}, OPEN),
    }[cause]
    for tier in ("A", "B", "C"):
        first = _case(*planted, tier)[0]
        assert PLAYBOOK.by_id[first].cause == cause, (tier, first)
