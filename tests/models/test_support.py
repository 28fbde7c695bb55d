"""The training rows' range of each feature, kept in the bundle, and scored rows beyond it."""

from __future__ import annotations

import numpy as np
import pytest

from kam.features.snapshots import build_snapshots, data_end
from kam.features.store import one_thread
from kam.models.feature_spec import FeatureSpec
from kam.models.support import (
    ExtrapolationWarning,
    beyond_support,
    describe,
    feature_support,
    support_of,
)
from kam.project import open_project
from kam.serving.scoring.batch import score_accounts
from tests.world import World

SPEC = FeatureSpec(
    names=("tenure_days", "industry", "recency_days"),
    categories={"industry": ("chemicals", "retail")},
)


def test_the_range_ignores_missing_values_and_categories() -> None:
    x = np.array([[10.0, 0, np.nan], [90.0, 1, 5.0], [np.nan, 1, 40.0]])
    assert feature_support(SPEC, x) == {"tenure_days": [10.0, 90.0], "recency_days": [5.0, 40.0]}
    assert feature_support(SPEC, np.full((2, 3), np.nan)) == {}


def test_features_are_named_when_enough_rows_lie_beyond_the_range() -> None:
    support = {"tenure_days": [10.0, 90.0], "recency_days": [5.0, 40.0]}
    # tenure: 3 of 4 beyond (2 above, 1 below); recency: 1 of 3 known, the missing one ignored
    x = np.array(
        [[200.0, 0, 41.0], [95.0, 0, 6.0], [5.0, 1, np.nan], [50.0, 1, 7.0]]
    )
    found = beyond_support(SPEC, x, support, min_share=0.3)
    assert [(b.name, b.share) for b in found] == [("tenure_days", 0.75), ("recency_days", 1 / 3)]
    assert (found[0].seen_low, found[0].seen_high) == (5.0, 200.0)
    assert [b.name for b in beyond_support(SPEC, x, support, min_share=0.5)] == ["tenure_days"]
    assert beyond_support(SPEC, x[3:], support, min_share=0.01) == []
    said = describe(found, 4)
    assert "of the 4 scored accounts" in said
    assert "tenure_days 75% (trained on 10..90, here 5..200)" in said


def test_a_bundle_without_ranges_reports_nothing() -> None:
    assert support_of({"capacity": "small"}) == {}
    assert beyond_support(SPEC, np.ones((3, 3)) * 1e9, support_of({})) == []


def test_the_registered_model_keeps_the_range_of_the_rows_it_was_refit_on(
    small_world: World,
) -> None:
    model = small_world.model()
    support = support_of(model.scorer.meta)
    assert {"tenure_days", "recency_days", "revenue_365d"} <= set(support)
    # the deployed refit's newest rows lie inside its range: a range kept from the backtest's
    # rows (whose labels close a horizon earlier) would end a horizon too young
    con = small_world.connect()
    one_thread(con)  # training's sums, to the last digit
    try:
        latest = build_snapshots(
            con, [model.metadata.train_as_of.last], horizon=model.metadata.horizon
        )
    finally:
        con.disconnect()
    x = model.scorer.spec.matrix(latest)
    tenure = x[:, model.scorer.spec.names.index("tenure_days")]
    assert np.nanmax(tenure) == support["tenure_days"][1]
    assert model.scorer.beyond_training(x, min_share=1e-9) == []


def test_scoring_names_the_features_where_accounts_outgrew_the_training_rows(
    small_world: World,
) -> None:
    model = small_world.model()
    con = small_world.connect()
    try:
        at_training_edge: list[str] = []
        score_accounts(
            con, model, as_of=model.metadata.train_as_of.last, notes=at_training_edge
        )
        a_horizon_later: list[str] = []
        score_accounts(con, model, as_of=data_end(con), notes=a_horizon_later)
    finally:
        con.disconnect()
    assert at_training_edge == []
    assert len(a_horizon_later) == 1
    assert "tenure_days" in a_horizon_later[0]


def test_the_notebook_warns_which_features_lie_beyond(small_world: World) -> None:
    project = open_project(
        workdir=small_world.root, data_dir=small_world.store_file.parent,
        tracking_uri=small_world.tracking,
    )
    with pytest.warns(ExtrapolationWarning, match="tenure_days"):
        project.score(model_uri=f"models:/{small_world.model_name}/1")
