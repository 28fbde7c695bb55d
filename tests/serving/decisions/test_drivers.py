"""Drivers: SHAP contributions grouped by family and phrased with the account's own figures."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from kam.features.catalog import CATALOG, by_name
from kam.features.snapshots import build_snapshots, data_end
from kam.models.feature_spec import FeatureSpec
from kam.serving.decisions import one_row
from kam.serving.decisions.conditions import Condition
from kam.serving.decisions.drivers import NOT_ACTIONABLE, compute_drivers
from kam.serving.decisions.phrasebook import PhrasebookError, load_phrasebook
from kam.serving.decisions.vocabulary import CAUSES
from kam.serving.scoring.record_json import drivers_json
from tests.world import World

PHRASES = load_phrasebook()


def _values(**columns: float | list[float]) -> dict[str, np.ndarray]:
    return {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in columns.items()}


@pytest.mark.parametrize(
    ("feature", "values", "expected"),
    [
        ("executive_contact_recency_days", {"executive_contact_recency_days": 94},
         "no executive contact for 94 days"),
        ("executive_contact_recency_days", {"executive_contact_recency_days": 730},
         "no executive contact in two years"),
        ("complaints_open_overdue", {"complaints_open_overdue": 2},
         "2 complaints open for 21+ days"),
        ("complaints_open_overdue", {"complaints_open_overdue": 1},
         "1 complaint open for 21+ days"),
        ("revenue_yoy_90d", {"revenue_yoy_90d": -0.235, "revenue_90d_last_year": 1.0},
         "spend down 38% vs the same quarter last year"),
        ("revenue_yoy_90d", {"revenue_yoy_90d": -1.0, "revenue_90d_last_year": 125_000},
         "no purchases this quarter against 125k in the same quarter last year"),
        ("on_time_rate_180d", {"on_time_rate_180d": 0.71},
         "on-time delivery 71% over the last 180 days"),
        ("on_time_rate_180d", {"on_time_rate_180d": np.nan},
         "no delivery due in the last 180 days"),
        ("discount_rate_trend_180d", {"discount_rate_trend_180d": 0.04},
         "discount rate up 4 points in the last 180 days"),
        ("contacts_180d", {"contacts_180d": 1},
         "single-threaded: one person at the account spoken to in 180 days"),
        ("late_deliveries_180d", {"late_deliveries_180d": 3},
         "3 deliveries late or missing in the last 180 days"),
        ("recency_days", {"recency_days": 63, "mean_gap_days": 21},
         "no order for 63 days, against a usual gap of 21"),
        ("recency_days", {"recency_days": 63}, "no order for 63 days"),
        ("complaints_365d",
         {"complaints_365d": 12, "complaints_open_overdue": 0,
          "complaint_share_quality_365d": 0.5, "complaint_share_price_365d": 0.1},
         "50% of 12 complaints this year about product quality"),
        ("complaints_365d", {"complaints_365d": 5, "complaints_open_overdue": 2},
         "5 complaints in the last 365 days; 2 complaints open for 21+ days"),
        ("revenue_90d", {"revenue_90d": 2_450_000}, "2.5m bought in the last 90 days"),
        ("tenure_days", {"tenure_days": 1200}, "buying from us for 3.3 years"),
        ("account_age_days", {"account_age_days": 1234},
         "days since the account was created in the account master: 1,234"),
        ("sentiment_trend_180d", {"sentiment_trend_180d": -0.5},
         "contact sentiment down 0.50 vs the half-year before"),
        ("complaints_90d",
         {"complaints_90d": 4, "complaints_365d": 9, "complaint_share_delivery_365d": 0.5},
         "4 complaints in the last 90 days; 50% of 9 complaints this year about delivery"),
    ],
    ids=[
        "exec-94-days", "exec-never", "overdue-plural", "overdue-singular", "spend-down",
        "spend-stopped", "on-time", "on-time-missing", "discount-up", "single-threaded",
        "late-plural", "recency-with-gap", "recency-without-gap", "complaints-quality-mix",
        "complaints-overdue-first", "money", "tenure-years", "generic-fallback",
        "sentiment-down", "complaints-90d-mix",
    ],
)
def test_phrase_carries_the_accounts_own_figures(feature, values, expected) -> None:
    assert PHRASES.render(feature, _values(**values)).tolist() == [expected]


@pytest.mark.parametrize(
    ("values", "cause"),
    [
        ({"complaints_365d": 9, "complaint_share_quality_365d": 0.6}, "unmet_needs"),
        ({"complaints_365d": 9, "complaint_share_delivery_365d": 0.5}, "unmet_needs"),
        ({"complaints_365d": 9, "complaint_share_price_365d": 0.7}, "competitor_price"),
        ({"complaints_365d": 9, "complaint_share_quality_365d": 0.6,
          "complaints_open_overdue": 1}, "unresolved_complaints"),
        ({"complaints_365d": 9, "complaint_share_quality_365d": 0.1}, "unresolved_complaints"),
    ],
    ids=["quality", "delivery", "price", "overdue-wins", "service"],
)
def test_complaint_volume_points_to_the_cause_of_its_mix(values, cause) -> None:
    codes = PHRASES.cause_codes("complaints_365d", _values(**values), 1)
    assert CAUSES[codes[0]] == cause


def test_every_actionable_feature_has_a_phrase_and_a_cause() -> None:
    for feature in CATALOG:
        if feature.family in NOT_ACTIONABLE or feature.kind == "category":
            continue
        assert feature.name in PHRASES.phrasings, feature.name
        cause = PHRASES.cause(feature.name)
        assert cause in (*CAUSES, "evidence"), feature.name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("executive_contact_recency_days >= 60", ("executive_contact_recency_days", ">=", 60)),
        ("complaints_open > 0", ("complaints_open", ">", 0)),
        ("on_time_rate_180d missing", ("on_time_rate_180d", "missing", None)),
    ],
    ids=["ge", "gt", "missing"],
)
def test_conditions_parse(text, expected) -> None:
    condition = Condition.parse(text)
    assert (condition.feature, condition.op) == expected[:2]
    if expected[2] is not None:
        assert condition.value == expected[2]


def test_a_sums_last_bits_read_and_compare_the_same_in_any_order() -> None:
    # three contacts' sentiments summed in two orders, as DuckDB's threads or Spark may: a mean
    # of exactly 0 comes out a hair below 0 in one order and a hair above it in the other
    below, above = (0.3 - 0.1 - 0.2) / 3, (0.1 + 0.2 - 0.3) / 3
    assert below < 0 < above
    values = _values(sentiment_mean_180d=[below, above, -0.25])
    assert PHRASES.render("sentiment_mean_180d", values).tolist() == [
        "lukewarm contacts: average sentiment +0.00 (-1..1) over 180 days",
        "lukewarm contacts: average sentiment +0.00 (-1..1) over 180 days",
        "contacts sound negative: average sentiment -0.25 (-1..1) over 180 days",
    ]
    negative = Condition.parse("sentiment_mean_180d < 0")  # also a playbook trigger
    assert negative.holds(values, 3).tolist() == [False, False, True]
    assert [one_row.holds_one(negative, {"sentiment_mean_180d": v}) for v in (below, above)] == [
        False, False,
    ]
    # a figure too large to carry decimals is compared as it is, on both paths
    huge = Condition.parse("revenue_90d > 1000000000")
    assert huge.holds(_values(revenue_90d=[1e300]), 1).tolist() == [True]
    assert one_row.holds_one(huge, {"revenue_90d": 1e300})


def test_conditions_never_hold_on_missing_values() -> None:
    values = _values(on_time_rate_180d=[0.5, np.nan, 0.9])
    assert Condition.parse("on_time_rate_180d < 0.8").holds(values, 3).tolist() == [
        True, False, False,
    ]
    assert Condition.parse("on_time_rate_180d != 0.5").holds(values, 3).tolist() == [
        False, False, True,
    ]
    assert Condition.parse("on_time_rate_180d missing").holds(values, 3).tolist() == [
        False, True, False,
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": {"no_such_feature": {"cause": "unmet_needs", "say": [{"text": "x"}]}}},
         "no_such_feature"),
        ({"features": {"recency_days": {"cause": "unmet_needs",
                                        "say": [{"text": "{recency_days:weeks}"}]}}},
         "unknown format 'weeks'"),
        ({"features": {"recency_days": {"cause": "bad_luck", "say": [{"text": "x"}]}}},
         "feature 'recency_days': field 'cause'"),
        ({"features": {"recency_days": {"cause": "evidence", "say": [{"text": "x"}]}}},
         "needs an 'otherwise' cause"),
    ],
    ids=["unknown-feature", "unknown-format", "unknown-cause", "evidence-without-otherwise"],
)
def test_malformed_phrase_catalog_is_named(tmp_path, change, message) -> None:
    path = tmp_path / "phrases.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"version": 1, **change}))
    with pytest.raises(PhrasebookError, match=re.escape(message)):
        load_phrasebook(path)


# ------------------------------------------------------------------------------------------------
# Grouping and phrasing hand-made contributions
# ------------------------------------------------------------------------------------------------
NAMES = (
    "revenue_yoy_90d",
    "revenue_90d_last_year",
    "discount_rate_trend_180d",
    "executive_contact_recency_days",
    "contacts_180d",
    "complaints_open_overdue",
    "on_time_rate_180d",
    "late_deliveries_180d",
    "industry",
)
SPEC = FeatureSpec(
    NAMES,
    {"industry": ("banking", "retail")},
    {n: by_name(n).family for n in NAMES},
)
VALUES = _values(
    revenue_yoy_90d=[-0.235, -0.235, -0.5, 0.1],
    revenue_90d_last_year=[80_000, 80_000, 50_000, 10_000],
    discount_rate_trend_180d=[0.04, 0.0, 0.0, 0.0],
    executive_contact_recency_days=[94, 12, 30, 400],
    contacts_180d=[1, 4, 3, 2],
    complaints_open_overdue=[2, 0, 0, 0],
    on_time_rate_180d=[0.71, 0.99, 0.6, 0.95],
    late_deliveries_180d=[3, 0, 5, 0],
)


def _contrib(rows: list[dict[str, float]]) -> np.ndarray:
    out = np.zeros((len(rows), len(NAMES) + 1))
    for i, row in enumerate(rows):
        for name, value in row.items():
            out[i, NAMES.index(name)] = value
        out[i, -1] = -2.0  # bias
    return out


def test_families_are_summed_ranked_and_phrased_from_their_strongest_feature() -> None:
    contrib = _contrib([
        {
            "executive_contact_recency_days": 0.5, "contacts_180d": 0.3,
            "complaints_open_overdue": 0.4, "on_time_rate_180d": -0.2,
            "late_deliveries_180d": 0.1, "revenue_yoy_90d": 0.05, "industry": 2.0,
        },
        {"revenue_yoy_90d": -0.3, "executive_contact_recency_days": -0.1},
    ])
    values = {k: v[:2] for k, v in VALUES.items()}
    drivers = compute_drivers(contrib, SPEC, values, PHRASES)
    first = drivers.records(0)
    assert [d["family"] for d in first] == ["relationship", "service", "spend"]
    assert [d["contribution"] for d in first] == [0.8, 0.4, 0.05]
    assert first[0] == {
        "family": "relationship",
        "cause": "relationship",
        "feature": "executive_contact_recency_days",
        "contribution": 0.8,
        "phrase": "no executive contact for 94 days; "
        "single-threaded: one person at the account spoken to in 180 days",
        # the same figures in Chinese, joined with the Chinese separator
        "phrase_zh": "已94天无高层联系；单线联系：180天内只与客户方一人沟通",
    }
    assert first[1]["phrase"] == "2 complaints open for 21+ days"
    assert first[1]["cause"] == "unresolved_complaints"
    # supply nets to -0.1: it pulls risk down and is no driver; industry is not actionable
    assert "supply" not in {d["family"] for d in first}
    assert drivers.records(1) == []
    top, cause = drivers.top()
    assert top.tolist() == [first[0]["phrase"], None]
    assert cause.tolist() == ["relationship", None]
    assert [json.loads(t) for t in drivers_json(drivers)] == [first, []]


@pytest.mark.parametrize(
    ("supply", "cause"),
    [(0.3, "unmet_needs"), (-0.3, "competitor_price")],
    ids=["with-supply-evidence", "without-evidence"],
)
def test_falling_spend_takes_the_cause_the_evidence_shows(supply, cause) -> None:
    contrib = _contrib([{"revenue_yoy_90d": 0.9, "late_deliveries_180d": supply}])
    values = {k: v[2:3] for k, v in VALUES.items()}
    drivers = compute_drivers(contrib, SPEC, values, PHRASES)
    spend = drivers.records(0)[0]
    assert spend["family"] == "spend"
    assert spend["cause"] == cause
    assert spend["phrase"] == "spend down 67% vs the same quarter last year"


def test_cause_strength_adds_up_the_contributions_by_cause() -> None:
    contrib = _contrib([{
        "discount_rate_trend_180d": 0.3, "complaints_open_overdue": 0.2,
        "on_time_rate_180d": 0.1, "contacts_180d": -0.05, "industry": 1.0,
    }])
    values = {k: v[:1] for k, v in VALUES.items()}
    drivers = compute_drivers(contrib, SPEC, values, PHRASES)
    strength = dict(zip(CAUSES, drivers.cause_strength[0].round(6).tolist(), strict=True))
    assert strength == {
        "competitor_price": 0.3,
        "unmet_needs": 0.1,
        "unresolved_complaints": 0.2,
        "relationship": 0.0,
    }


# ------------------------------------------------------------------------------------------------
# With a trained model
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored(small_world: World) -> dict:
    model = small_world.model()
    con = small_world.connect()
    snapshot = build_snapshots(con, [data_end(con)])
    x = model.scorer.spec.matrix(snapshot)
    contrib = model.scorer.contributions(x)
    values = {
        n: snapshot[n].to_numpy(dtype=float, na_value=np.nan)
        for n in snapshot.columns
        if n in model.scorer.spec.names and n not in model.scorer.spec.categories
    }
    drivers = compute_drivers(contrib, model.scorer.spec, values, PHRASES)
    return {"model": model, "x": x, "contrib": contrib, "values": values, "drivers": drivers}


def test_contributions_are_lightgbms_own_shap_values(scored: dict) -> None:
    raw = scored["model"].scorer.defection.predict(scored["x"], raw_score=True)
    np.testing.assert_allclose(scored["contrib"].sum(axis=1), raw, atol=1e-6)


def test_scores_from_the_contribution_sums_equal_the_direct_scores(scored: dict) -> None:
    scorer = scored["model"].scorer
    direct = scorer.predict_matrix(scored["x"])
    reused = scorer.predict_matrix(scored["x"], defection_log_odds=scored["contrib"].sum(axis=1))
    for name, values in direct.items():
        np.testing.assert_allclose(reused[name], values, rtol=1e-9, atol=1e-12, err_msg=name)


def test_drivers_push_risk_up_in_order(scored: dict) -> None:
    drivers = scored["drivers"]
    c = drivers.contribution
    assert np.all(np.nan_to_num(c, nan=1.0) > 0)
    filled = np.where(np.isnan(c), -1e9, c)
    assert np.all(np.diff(filled, axis=1) <= 0)
    # an account whose every family lowers its risk (a safe one) has no driver to show
    assert (drivers.family_code[:, 0] >= 0).mean() >= 0.85


# the figure each feature's phrase must show, formatted as the phrase does
_FIGURES = {
    "executive_contact_recency_days": lambda v: f"{round(v):,d} days" if v < 730 else "two years",
    "complaints_open_overdue": lambda v: f"{round(v)} complaint",
    "on_time_rate_180d": lambda v: f"{v * 100:.0f}%",
    "fill_rate_180d": lambda v: f"{v * 100:.0f}%",
    "late_deliveries_180d": lambda v: f"{round(v)} deliver" if v > 0 else "no late",
    "complaints_365d": lambda v: f"{round(v)} complaint",
    "discount_rate_365d": lambda v: f"{v * 100:.0f}%",
    "sentiment_mean_180d": lambda v: f"{v:+.2f}",
    "recency_days": lambda v: f"{round(v):,d} days",
}


def test_phrases_of_a_real_batch_show_each_accounts_figures(scored: dict) -> None:
    drivers, values = scored["drivers"], scored["values"]
    checked = 0
    for i in range(len(drivers)):
        for s in range(drivers.contribution.shape[1]):
            code = drivers.feature_code[i, s]
            if code < 0:
                continue
            feature = drivers.feature_names[code]
            if feature in _FIGURES and not np.isnan(values[feature][i]):
                # figures are settled to 9 decimals before they are written (float noise)
                figure = round(float(values[feature][i]), 9)
                assert _FIGURES[feature](figure) in drivers.phrase[i, s], (
                    feature, values[feature][i], drivers.phrase[i, s],
                )
                checked += 1
    assert checked >= 20


def test_small_and_large_batches_give_the_same_drivers(scored: dict) -> None:
    """One-row (online) and whole-book (batch) code paths agree account by account."""
    whole = scored["drivers"]
    assert len(whole) > 256  # the whole book takes the family-by-family path
    for start in range(0, len(whole), 97):
        rows = slice(start, start + 97)
        part = compute_drivers(
            scored["contrib"][rows], scored["model"].scorer.spec,
            {k: v[rows] for k, v in scored["values"].items()}, PHRASES,
        )
        for name in ("family_code", "feature_code", "cause_code", "phrase"):
            np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[rows])
        np.testing.assert_allclose(part.contribution, whole.contribution[rows])
        np.testing.assert_allclose(part.cause_strength, whole.cause_strength[rows])


def test_a_joined_runner_up_adds_only_what_is_new() -> None:
    names = ("complaints_90d", "complaint_share_delivery_365d", "revenue_trend_90d",
             "revenue_yoy_90d")
    spec = FeatureSpec(names, {}, {n: by_name(n).family for n in names})
    values = _values(
        complaints_90d=4, complaints_365d=9, complaint_share_delivery_365d=0.5,
        revenue_trend_90d=np.nan, revenue_yoy_90d=-0.5, revenue_90d_last_year=1000,
    )
    contrib = np.array([[0.5, 0.4, 0.3, 0.5, -1.0]])
    drivers = compute_drivers(contrib, spec, values, PHRASES).records(0)
    # the delivery share repeats a part of the complaint phrase; the spend trend has no value
    assert [d["phrase"] for d in drivers] == [
        "4 complaints in the last 90 days; 50% of 9 complaints this year about delivery",
        "spend down 67% vs the same quarter last year",
    ]
    assert [d["cause"] for d in drivers] == ["unmet_needs", "unmet_needs"]


def test_no_delivery_due_is_a_symptom_not_a_supply_problem() -> None:
    names = ("on_time_rate_180d", "recency_days")
    spec = FeatureSpec(names, {}, {n: by_name(n).family for n in names})
    values = _values(on_time_rate_180d=[np.nan, 0.6], recency_days=[200, 10])
    contrib = np.array([[0.4, 0.9, -1.0], [0.4, 0.0, -1.0]])
    drivers = compute_drivers(contrib, spec, values, PHRASES)
    assert drivers.records(0)[1] == {
        "family": "supply", "cause": "competitor_price", "feature": "on_time_rate_180d",
        "contribution": 0.4, "phrase": "no delivery due in the last 180 days",
        "phrase_zh": "近180天无到期交付",
    }
    assert drivers.records(1)[0]["cause"] == "unmet_needs"
