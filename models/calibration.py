"""Probability calibration of the defection model, fitted with scikit-learn's own tools."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

Method = Literal["none", "sigmoid", "isotonic"]
METHODS: tuple[Method, ...] = ("none", "sigmoid", "isotonic")

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p)).reshape(-1, 1)


class ProbabilityCalibrator(BaseEstimator):
    """Maps raw model probabilities to calibrated ones.

    ``sigmoid`` is Platt scaling (a logistic regression on the raw log-odds), ``isotonic`` a
    monotone step function; ``none`` passes probabilities through. They are fitted on
    out-of-time predictions, never on the rows the model was trained on.

    Parameters
    ----------
    method
        One of ``none``, ``sigmoid``, ``isotonic``.
    """

    def __init__(self, method: Method = "none") -> None:
        self.method = method

    def fit(self, proba: np.ndarray, y: np.ndarray) -> ProbabilityCalibrator:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; use one of {METHODS}")
        y = np.asarray(y, dtype=np.int64)
        if self.method == "sigmoid":
            self.mapper_ = LogisticRegression(C=1e6).fit(_logit(proba), y)
        elif self.method == "isotonic":
            self.mapper_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                np.asarray(proba, dtype=np.float64), y
            )
        else:
            self.mapper_ = None
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "mapper_")
        if self.mapper_ is None:
            return np.asarray(proba, dtype=np.float64)
        if self.method == "sigmoid":
            # the fitted logistic regression's own formula: predict_proba's input checks cost
            # more than the arithmetic when the service scores one row at a time
            z = _logit(proba)[:, 0] * self.mapper_.coef_[0, 0] + self.mapper_.intercept_[0]
            return expit(z)
        return self.mapper_.predict(np.asarray(proba, dtype=np.float64))
