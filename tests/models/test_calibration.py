"""Probability calibration: fitted by scikit-learn, applied without its per-call overhead."""

from __future__ import annotations

import numpy as np
import pytest

from kam.models.calibration import ProbabilityCalibrator


@pytest.fixture(scope="module")
def raw_and_labels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.001, 0.999, 5000)
    # the model is over-confident: the true probability is a flattened version of the raw one
    truth = 1 / (1 + np.exp(-0.5 * np.log(raw / (1 - raw)) + 0.7))
    return raw, rng.binomial(1, truth)


def test_sigmoid_matches_the_fitted_logistic_regression(raw_and_labels) -> None:
    raw, y = raw_and_labels
    calibrator = ProbabilityCalibrator("sigmoid").fit(raw, y)
    logit = np.log(raw / (1 - raw)).reshape(-1, 1)
    expected = calibrator.mapper_.predict_proba(logit)[:, 1]
    np.testing.assert_allclose(calibrator.transform(raw), expected, rtol=1e-10, atol=1e-12)
    # and it learned the flattening: slope about 0.5, a negative intercept
    assert calibrator.mapper_.coef_[0, 0] == pytest.approx(0.5, abs=0.1)
    assert calibrator.mapper_.intercept_[0] == pytest.approx(-0.7, abs=0.15)


def test_sigmoid_on_one_row_equals_the_batch(raw_and_labels) -> None:
    raw, y = raw_and_labels
    calibrator = ProbabilityCalibrator("sigmoid").fit(raw, y)
    batch = calibrator.transform(raw[:10])
    one = [calibrator.transform(raw[i : i + 1])[0] for i in range(10)]
    np.testing.assert_allclose(one, batch, rtol=1e-12)


def test_isotonic_is_monotone_and_bounded(raw_and_labels) -> None:
    raw, y = raw_and_labels
    out = ProbabilityCalibrator("isotonic").fit(raw, y).transform(np.linspace(0, 1, 101))
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0 and out.max() <= 1


def test_none_passes_probabilities_through(raw_and_labels) -> None:
    raw, y = raw_and_labels
    np.testing.assert_array_equal(ProbabilityCalibrator("none").fit(raw, y).transform(raw), raw)


def test_unknown_method_is_named() -> None:
    with pytest.raises(ValueError, match="unknown calibration method 'platt'"):
        ProbabilityCalibrator("platt").fit(np.array([0.1, 0.9]), np.array([0, 1]))  # type: ignore[arg-type]
