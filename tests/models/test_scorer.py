"""The scorer on a few rows: LightGBM's single-row fast path gives Booster.predict's numbers."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest
from scipy.special import expit

from kam.features.snapshots import build_snapshots, data_end
from kam.models.scorer import (
    DEFECTION_OFFSET_FEATURE,
    SINGLE_ROW_MAX,
    Scorer,
    offset_log_odds,
)
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


@pytest.fixture(scope="module")
def with_offset(rows: dict) -> Scorer:
    """The scorer with a BG/NBD offset under its defection trees (the arithmetic, not a fit)."""
    return dataclasses.replace(
        rows["scorer"],
        defection_offset_feature=DEFECTION_OFFSET_FEATURE,
        defection_offset_weight=0.7,
        defection_offset_center=-0.4,
    )


def test_an_offset_is_the_offset_features_part_and_the_sums_stay_the_log_odds(
    rows: dict, with_offset: Scorer
) -> None:
    plain, x = rows["scorer"], rows["x"]
    column = plain.spec.names.index(DEFECTION_OFFSET_FEATURE)
    shift = 0.7 * offset_log_odds(x[:, column], -0.4)
    before, after = plain.contributions(x), with_offset.contributions(x)
    np.testing.assert_allclose(after.sum(axis=1), before.sum(axis=1) + shift, atol=1e-9)
    moved = np.abs(after - before).max(axis=0) > 1e-12
    assert set(np.flatnonzero(moved)) <= {column, x.shape[1]}  # its feature and the bias only
    # a row without the feature gets the training mean: nothing in its feature's part
    assert after[3, column] == pytest.approx(before[3, column])
    probability = with_offset.calibrator.transform(expit(before.sum(axis=1) + shift))
    np.testing.assert_allclose(
        with_offset.predict_matrix(x)["defection_probability"], probability, atol=1e-9
    )


def test_an_offset_scorer_gives_the_same_numbers_row_by_row_and_after_saving(
    with_offset: Scorer, rows: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    x = rows["x"]
    whole = with_offset.predict_matrix(x, num_threads=1)
    for start in range(0, len(x), SINGLE_ROW_MAX):
        part = slice(start, start + SINGLE_ROW_MAX)
        np.testing.assert_allclose(
            with_offset.predict_matrix(x[part])["defection_probability"],
            whole["defection_probability"][part],
            rtol=1e-12,
        )
    folder = tmp_path_factory.mktemp("offset")
    with_offset.save(folder)
    loaded = Scorer.load_dir(folder)
    assert loaded.defection_offset_weight == 0.7
    np.testing.assert_allclose(
        loaded.predict_matrix(x)["defection_probability"], whole["defection_probability"]
    )
