"""The scorer on a few rows: LightGBM's single-row fast path gives Booster.predict's numbers."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from kam.features.snapshots import build_snapshots, data_end
from kam.models.scorer import SINGLE_ROW_MAX
from kam.models.single_row import single_row_predictor
from tests.world import World, with_gaps


@pytest.fixture(scope="module")
def rows(small_world: World) -> dict:
    model = small_world.model()
    con = small_world.connect()
    x = model.scorer.spec.matrix(build_snapshots(con, [data_end(con)]))
    con.disconnect()
    x = x[:120].copy()
    x[::7] = with_gaps(x[::7], 0.5, seed=2)
    x[3] = np.nan  # nothing known at all
    assert len(x) > SINGLE_ROW_MAX  # the whole matrix goes through Booster.predict
    return {"scorer": model.scorer, "x": x}


def test_this_lightgbm_has_the_single_row_fast_path(rows: dict) -> None:
    scorer = rows["scorer"]
    for booster in (scorer.defection, scorer.value, scorer.lower, scorer.upper):
        assert single_row_predictor(booster, "normal") is not None


def test_one_row_at_a_time_equals_one_call_for_all(rows: dict) -> None:
    scorer, x = rows["scorer"], rows["x"]
    whole = scorer.predict_matrix(x, num_threads=1)
    contributions = scorer.contributions(x, num_threads=1)
    for start in range(0, len(x), SINGLE_ROW_MAX):
        part = slice(start, start + SINGLE_ROW_MAX)
        np.testing.assert_allclose(
            scorer.contributions(x[part]), contributions[part], rtol=0, atol=1e-12
        )
        for name, values in scorer.predict_matrix(x[part]).items():
            np.testing.assert_allclose(values, whole[name][part], rtol=1e-12, err_msg=name)
    assert scorer._single_row[("defection", "contrib")] is not None  # the fast path was taken


def test_a_scorer_that_predicted_one_row_still_pickles_and_copies(rows: dict) -> None:
    scorer, x = rows["scorer"], rows["x"]
    before = scorer.predict_matrix(x[:1])["value"]
    for other in (pickle.loads(pickle.dumps(scorer)), copy.deepcopy(scorer)):
        assert other.predict_matrix(x[:1])["value"] == pytest.approx(before)


def test_a_row_of_the_wrong_width_is_refused(rows: dict) -> None:
    fast = single_row_predictor(rows["scorer"].value, "raw")
    assert fast is not None
    with pytest.raises(ValueError, match=f"expected one row of {fast.ncol} features"):
        fast.predict(np.zeros(fast.ncol - 1))
