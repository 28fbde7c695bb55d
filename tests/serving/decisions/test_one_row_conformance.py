"""Every one-row twin of a decision rule gives exactly what the vectorised rule gives.

Posted rows are explained one by one on plain floats (``serving/decisions/one_row.py``); the
vectorised rules are the reference. One parametrized test runs each (vectorised, one-row) pair
on every account of the simulated small world, once on its real figures and once with 30% of
them blanked out. A few edge cases the world may not reach follow it.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from kam.features.catalog import CATALOG
from kam.features.snapshots import build_snapshots, data_end
from kam.models.registry import LoadedModel
from kam.models.scorer import SINGLE_ROW_MAX
from kam.serving.decisions import one_row
from kam.serving.decisions.conditions import Condition
from kam.serving.decisions.drivers import (
    NOT_ACTIONABLE,
    compute_drivers,
    driver_plan,
    feature_causes,
)
from kam.serving.decisions.evidence import evidence_for
from kam.serving.decisions.phrasebook import Phrasebook, Phrasing, load_phrasebook
from kam.serving.decisions.playbook import load_playbook
from kam.serving.decisions.recommend import recommend
from kam.serving.decisions.stages import (
    ERODING_QUARTER,
    ERODING_YEAR,
    STOPPED_OVERDUE,
    YEAR_DAYS,
    assign_tiers,
    relationship_stage,
    tier_cutoffs,
)
from kam.serving.decisions.vocabulary import STAGES
from kam.serving.scoring.online import score_matrix
from tests.world import World, with_gaps

PHRASES = load_phrasebook()
PLAYBOOK = load_playbook()
NUMERIC = [f.name for f in CATALOG if f.kind != "category"]
# every this many accounts has no tier: actions of every tier apply to it
NO_TIER_EVERY = 7


@dataclass(frozen=True)
class Book:
    """A simulated book of accounts, as both paths see it.

    ``values`` holds every numeric catalog feature of the snapshot (also those the model does
    not use, which phrases and triggers read); ``x`` is the model's matrix of the same figures.
    """

    model: LoadedModel
    x: np.ndarray
    contrib: np.ndarray
    values: dict[str, np.ndarray]
    tiers: np.ndarray
    as_of: pd.Timestamp

    def __len__(self) -> int:
        return len(self.x)

    def row(self, i: int) -> dict[str, float]:
        """Account ``i``'s figures as the one-row path gets them."""
        return {name: float(column[i]) for name, column in self.values.items()}

    def rows(self) -> list[dict[str, float]]:
        return [self.row(i) for i in range(len(self))]


@pytest.fixture(
    scope="module", params=[0.0, 0.3], ids=["real figures", "30% of figures blanked"]
)
def book(request: pytest.FixtureRequest, small_world: World) -> Book:
    gaps = request.param
    model = small_world.model()
    spec = model.scorer.spec
    con = small_world.connect()
    end = data_end(con)
    snapshot = build_snapshots(con, [end])
    con.disconnect()
    names = [n for n in NUMERIC if n in snapshot.columns]
    values = {
        name: with_gaps(snapshot[name].to_numpy(dtype=float, na_value=np.nan), gaps, seed=3 + j)
        for j, name in enumerate(names)
    }
    # the model sees the same blanked figures, and loses some of its categories too
    x = spec.matrix(snapshot)
    for j, name in enumerate(spec.names):
        if name in spec.categories:
            x[:, j] = with_gaps(x[:, j], gaps, seed=101 + j)
        else:
            x[:, j] = values[name]
    predictions = model.scorer.predict_matrix(x)
    tiers = assign_tiers(predictions["value"])
    tiers[::NO_TIER_EVERY] = None
    contrib = model.scorer.contributions(x)
    return Book(model, x, contrib, values, tiers, pd.Timestamp(end))


# ------------------------------------------------------------------------------------------------
# The pairs
# ------------------------------------------------------------------------------------------------
def _conditions() -> list[Condition]:
    """Every distinct condition of the shipped phrase catalog and playbook."""
    found = [c for ps in PHRASES.phrasings.values() for p in ps for c in p.conditions]
    found += [c for a in PLAYBOOK.actions for c in a.trigger.conditions]
    return list(dict.fromkeys(found))


def check_conditions(book: Book) -> None:
    rows, n = book.rows(), len(book)
    held = []
    for condition in _conditions():
        expected = condition.holds(book.values, n).tolist()
        assert [one_row.holds_one(condition, r) for r in rows] == expected, str(condition)
        held += expected
    assert any(held) and not all(held)


def check_phrasings(book: Book) -> None:
    rows, rendered = book.rows(), 0
    for feature, phrasings in PHRASES.phrasings.items():
        for phrasing in phrasings:
            if any(name not in book.values for name in phrasing.uses):
                continue
            # a phrasing is only said where its placeholders have values
            at = np.flatnonzero(
                np.all([~np.isnan(book.values[name]) for name in phrasing.uses], axis=0)
            )
            expected = phrasing.render(book.values, at)
            assert [one_row.render_phrasing_one(phrasing, rows[i]) for i in at] == expected, (
                feature, phrasing.text,
            )
            rendered += len(at)
    assert rendered > 0


def check_choose(book: Book) -> None:
    rows = book.rows()
    chosen = []
    for feature in PHRASES.phrasings:
        expected = PHRASES.choose(feature, book.values).tolist()
        assert [one_row.choose_one(PHRASES, feature, r) for r in rows] == expected, feature
        chosen += expected
    assert min(chosen) == -1 and max(chosen) >= 1


def check_render(book: Book) -> None:
    rows = book.rows()
    for feature in NUMERIC:  # also features without a phrasing, said by their description
        expected = PHRASES.render(feature, book.values).tolist()
        assert [one_row.render_one(PHRASES, feature, r) for r in rows] == expected, feature


def check_cause_codes(book: Book) -> None:
    rows, n = book.rows(), len(book)
    for feature in PHRASES.causes:
        expected = PHRASES.cause_codes(feature, book.values, n).tolist()
        assert [one_row.cause_code_one(PHRASES, feature, r) for r in rows] == expected, feature


def check_feature_causes(book: Book) -> None:
    spec = book.model.scorer.spec
    plan = driver_plan(spec, PHRASES, tuple(NOT_ACTIONABLE))
    contrib = book.contrib[:, : len(plan.names)]
    expected = feature_causes(contrib, plan, book.values, PHRASES)
    for i in range(len(book)):
        got = one_row.feature_causes_one(contrib[i].tolist(), plan, book.row(i), PHRASES)
        assert got == expected[i].tolist(), i


def check_drivers(book: Book) -> None:
    spec = book.model.scorer.spec
    whole = compute_drivers(book.contrib, spec, book.values, PHRASES)
    joined = 0
    for i in range(len(book)):
        one = one_row.row_drivers(book.contrib[i].tolist(), spec, book.row(i), PHRASES)
        expected = whole.records(i)
        assert one.records() == expected, i
        np.testing.assert_allclose(one.cause_strength, whole.cause_strength[i], atol=1e-12)
        joined += sum("; " in d["phrase"] for d in expected)
    assert joined > 0  # runner-up features joined some phrases: that rule was exercised


def check_recommend(book: Book) -> None:
    spec = book.model.scorer.spec
    drivers = compute_drivers(book.contrib, spec, book.values, PHRASES)
    whole = recommend(PLAYBOOK, drivers, book.values, book.tiers, book.as_of, PHRASES)
    day = book.as_of.date()
    with_actions = 0
    for i in range(len(book)):
        row = book.row(i)
        mine = one_row.row_drivers(book.contrib[i].tolist(), spec, row, PHRASES)
        got = one_row.recommend_row(PLAYBOOK, mine, row, book.tiers[i], day, PHRASES)
        assert got == whole.records(i), i
        with_actions += bool(got)
    assert with_actions > len(book) / 2
    check_recommend_by_saving(book)


# What a study of the actions history could say (kam effects' records), one action of each kind.
EFFECTS = [
    {"action": "complaint_closure", "status": "helps", "effect": -0.05, "ci_low": -0.08,
     "ci_high": -0.02, "relative": 0.4, "cause_share": 0.3, "n_treated": 300},
    {"action": "technical_exchange", "status": "helps", "effect": -0.03, "ci_low": -0.05,
     "ci_high": -0.01, "relative": 0.25, "cause_share": 0.5, "n_treated": 200},
    {"action": "business_review", "status": "helps", "effect": -0.02, "ci_low": -0.04,
     "ci_high": -0.001, "relative": 0.15, "cause_share": 0.2, "n_treated": 150},
    {"action": "quality_rca", "status": "harms", "effect": 0.04, "ci_low": 0.01,
     "ci_high": 0.07, "relative": -0.3, "cause_share": 0.4, "n_treated": 120},
    {"action": "nurture_c", "status": "no_effect", "effect": 0.01, "ci_low": -0.02,
     "ci_high": 0.04, "relative": -0.1, "cause_share": 0.3, "n_treated": 100},
    {"action": "multi_threading", "status": "too_few", "n_treated": 12},
]


def check_recommend_by_saving(book: Book) -> None:
    """With effect evidence: savings, evidence and order equal on both paths, supported first."""
    spec = book.model.scorer.spec
    evidence = evidence_for(PLAYBOOK, EFFECTS)
    probability = book.model.scorer.predict_matrix(book.x)["defection_probability"]
    stake = np.clip(book.values["revenue_365d"], 0.0, None)
    drivers = compute_drivers(book.contrib, spec, book.values, PHRASES)
    whole = recommend(PLAYBOOK, drivers, book.values, book.tiers, book.as_of, PHRASES,
                      evidence=evidence, probability=probability, stake=stake)
    day = book.as_of.date()
    saved = 0
    for i in range(len(book)):
        row = book.row(i)
        mine = one_row.row_drivers(book.contrib[i].tolist(), spec, row, PHRASES)
        got = one_row.recommend_row(PLAYBOOK, mine, row, book.tiers[i], day, PHRASES,
                                    evidence=evidence, probability=float(probability[i]),
                                    stake=float(stake[i]))
        assert got == whole.records(i), i
        assert "quality_rca" not in {a["action_id"] for a in got}  # harmful: never shown
        known = [a["expected_saving"] is not None for a in got]
        assert known == sorted(known, reverse=True), i  # supported ones first
        savings = [a["expected_saving"] for a in got if a["expected_saving"] is not None]
        assert savings == sorted(savings, reverse=True), i
        untested = [a for a in got if a["action_id"] == "multi_threading"]
        assert all(a["evidence"] == "untested" and a["effect"] is None for a in untested)
        saved += bool(savings)
    assert saved > len(book) / 10


def check_stages(book: Book) -> None:
    expected = relationship_stage(book.values, len(book)).tolist()
    assert [one_row.relationship_stage_one(r) for r in book.rows()] == expected
    assert len(set(expected)) >= 3, set(expected)


def _nan_as_none(results: list[dict]) -> list[dict]:
    # NaN never equals itself: compare missing figures as None
    return [
        {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in r.items()}
        for r in results
    ]


def check_scoring(book: Book) -> None:
    """The whole posted-row path: score_matrix on the one-row twins or the vectorised rules."""
    value = book.model.scorer.predict_matrix(book.x)["value"]
    cutoffs = tier_cutoffs(value, assign_tiers(value))
    for tiers in (cutoffs, None):
        options = {"as_of": book.as_of, "tier_cutoffs": tiers, "playbook": PLAYBOOK}
        vectorised = score_matrix(book.model, book.x, one_by_one=False, **options)
        one_by_one = score_matrix(book.model, book.x, one_by_one=True, **options)
        assert _nan_as_none(one_by_one) == _nan_as_none(vectorised)


def check_scorer(book: Book) -> None:
    """LightGBM's single-row fast path, taken for batches of up to SINGLE_ROW_MAX rows."""
    scorer, x = book.model.scorer, book.x
    whole = scorer.predict_matrix(x, num_threads=1)
    contributions = scorer.contributions(x, num_threads=1)
    for start in range(0, len(x), SINGLE_ROW_MAX):
        part = slice(start, start + SINGLE_ROW_MAX)
        np.testing.assert_allclose(
            scorer.contributions(x[part]), contributions[part], rtol=0, atol=1e-12
        )
        for name, values in scorer.predict_matrix(x[part]).items():
            np.testing.assert_allclose(values, whole[name][part], rtol=1e-12, err_msg=name)


@dataclass(frozen=True)
class Pair:
    """The check that holds a vectorised rule and its one-row twin equal on a book.

    ``vectorised`` and ``one_row`` name the two functions when the twin is in ``one_row.py``;
    the pairs that compare whole paths (scoring, LightGBM's fast path) leave them None.
    """

    name: str
    check: Callable[[Book], None]
    vectorised: Callable | None = None
    one_row: Callable | None = None


PAIRS = (
    Pair("conditions", check_conditions, Condition.holds, one_row.holds_one),
    Pair("phrasings", check_phrasings, Phrasing.render, one_row.render_phrasing_one),
    Pair("choose", check_choose, Phrasebook.choose, one_row.choose_one),
    Pair("render", check_render, Phrasebook.render, one_row.render_one),
    Pair("cause codes", check_cause_codes, Phrasebook.cause_codes, one_row.cause_code_one),
    Pair("feature causes", check_feature_causes, feature_causes, one_row.feature_causes_one),
    Pair("drivers", check_drivers, compute_drivers, one_row.row_drivers),
    Pair("recommend", check_recommend, recommend, one_row.recommend_row),
    Pair("stages", check_stages, relationship_stage, one_row.relationship_stage_one),
    Pair("scoring", check_scoring),
    Pair("scorer", check_scorer),
)


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_one_row_twin_equals_the_vectorised_rule(pair: Pair, book: Book) -> None:
    pair.check(book)


def test_every_one_row_twin_is_checked_and_names_its_rule() -> None:
    twins = {
        f for _, f in inspect.getmembers(one_row, inspect.isfunction)
        if f.__module__ == one_row.__name__
    }
    unchecked = twins - {p.one_row for p in PAIRS}
    assert not unchecked, sorted(f.__name__ for f in unchecked)
    for pair in PAIRS:
        if pair.one_row is None or pair.vectorised is None:
            continue
        named = f"{pair.vectorised.__module__}.{pair.vectorised.__qualname__}`"
        first_line = (pair.one_row.__doc__ or "").splitlines()[0]
        assert first_line.startswith("One-row twin of :"), pair.name
        assert named in first_line, (pair.name, named)


# ------------------------------------------------------------------------------------------------
# Edge cases
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", [">=", "<=", "==", "!=", ">", "<", "missing"])
def test_a_condition_on_one_row_holds_as_on_arrays(op: str) -> None:
    text = f"on_time_rate_180d {op}" + ("" if op == "missing" else " 0.5")
    condition = Condition.parse(text)
    column = [0.2, 0.5, 0.9, np.nan]
    expected = condition.holds({"on_time_rate_180d": np.array(column)}, 4).tolist()
    assert [one_row.holds_one(condition, {"on_time_rate_180d": v}) for v in column] == expected
    assert one_row.holds_one(condition, {}) is False  # a feature not in the data at all


def test_one_row_stage_on_every_combination_of_figures() -> None:
    """Every combination of low, high, missing and threshold figures gets the vectorised stage.

    Each rule's thresholds are in the grid exactly (a simulated book seldom hits them), so that
    a ``>=`` written ``>`` on one side shows.
    """
    grid = {
        "tenure_days": [200.0, 400.0, 2 * YEAR_DAYS, 3 * YEAR_DAYS, np.nan],
        "revenue_yoy_90d": [-0.5, ERODING_QUARTER, 0.1, np.nan],
        "revenue_change_365d": [-0.3, ERODING_YEAR, 0.0, np.nan],
        "overdue_ratio": [1.0, STOPPED_OVERDUE, np.nan],
        "contact_roles_180d": [1.0, 2.0, 3.0, 5.0, np.nan],
        "contacts_180d": [1.0, 3.0, np.nan],
        "executive_contact_recency_days": [30.0, 90.0, 180.0, 400.0, np.nan],
        "active_months_share_12m": [0.3, 0.5, 0.75, np.nan],
        "categories_365d": [1.0, 3.0, np.nan],
    }
    rows = list(itertools.product(*grid.values()))
    columns = {name: np.array(column) for name, column in zip(grid, zip(*rows, strict=True),
                                                               strict=True)}
    expected = relationship_stage(columns, len(rows)).tolist()
    got = [one_row.relationship_stage_one(dict(zip(grid, r, strict=True))) for r in rows]
    assert got == expected
    assert set(got) == set(STAGES)
    # features absent from the data count as unknown, as in the vectorised rules
    assert one_row.relationship_stage_one({"tenure_days": 100.0}) == relationship_stage(
        {"tenure_days": np.array([100.0])}, 1
    )[0]
