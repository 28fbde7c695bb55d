"""The scorer: both LightGBM models, the calibrator, the value interval and the feature spec.

One object that training builds and saves, the MLflow bundle wraps, and serving calls directly
(its numpy path skips pandas so one-row scoring stays well under a millisecond).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit

from kam.models.calibration import ProbabilityCalibrator
from kam.models.feature_spec import FeatureSpec
from kam.models.single_row import Kind, SingleRowPredictor, single_row_predictor
from kam.models.support import NOTABLE_SHARE, Beyond, beyond_support, support_of

PREDICTION_COLUMNS = ("defection_probability", "value", "value_low", "value_high")
OFFSET_FEATURE = "revenue_365d"
# BG/NBD x Gamma-Gamma expected revenue over the horizon (features/families/btyd.py)
EXPECTED_FEATURE = "btyd_expected_value"
# the statistical model's probability of no order in the horizon: the defection offset
DEFECTION_OFFSET_FEATURE = "btyd_p_no_order"
TENURE_FEATURE = "tenure_days"
# Up to this many rows, scoring takes them one at a time rather than in one call for all, at
# both steps where that pays: LightGBM's single-row fast path instead of Booster.predict (whose
# fixed cost is about 60-90 microseconds a call), and serving's one-row twins of the drivers,
# actions and stages (0.16-0.24 ms a row) instead of the vectorised rules (1.4-2.4 ms on one row,
# nearly all numpy's fixed cost per call; 2 cores, the benchmark's model). One threshold keeps a
# small batch on the one-row path from end to end; serving imports it from here, as models must
# not import serving.
SINGLE_ROW_MAX = 8


def value_base(
    revenue_365d: np.ndarray,
    tenure_days: np.ndarray | None,
    horizon_days: float,
    expected: np.ndarray | None = None,
) -> np.ndarray:
    """The value models' base over the horizon, floored at 1.

    Where ``expected`` (the statistical model's expected revenue in the horizon) is known and
    positive it is the base: it already carries the account's rhythm, age and spend level, so
    the trees learn a correction to it. Elsewhere the account's revenue run-rate: revenue of the
    last 365 days per day the account has been buying (at least 30, at most 365) times the
    horizon, so a young account's year-to-date is not mistaken for its yearly spend.
    """
    revenue = np.nan_to_num(np.asarray(revenue_365d, dtype=float), nan=0.0)
    if tenure_days is None:
        days = np.full(len(revenue), 365.0)
    else:
        days = np.clip(np.nan_to_num(np.asarray(tenure_days, dtype=float) + 1, nan=365.0), 30, 365)
    base = revenue / days * horizon_days
    if expected is not None:
        known = np.asarray(expected, dtype=float)
        base = np.where(np.isfinite(known) & (known > 0), known, base)
    return np.maximum(base, 1.0)


def offset_log_odds(probability: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Log-odds of a probability feature, clipped off 0 and 1; ``fill`` where it is missing."""
    p = np.clip(np.asarray(probability, dtype=float), 1e-4, 1 - 1e-4)
    return np.where(np.isfinite(p), np.log(p / (1 - p)), fill)


def _margins(saved: float | list[float]) -> tuple[float, float]:
    # bundles saved before per-bound margins hold one symmetric margin
    if isinstance(saved, int | float):
        return float(saved), float(saved)
    low, high = saved
    return float(low), float(high)


@dataclass
class Scorer:
    """Fitted models and everything needed to apply them to feature rows.

    Parameters
    ----------
    spec
        Feature spec shared by every model.
    defection
        Binary LightGBM booster (raw probability of defection).
    calibrator
        Maps raw probabilities to calibrated ones.
    value
        LightGBM booster predicting next-horizon value (Tweedie, on the revenue scale).
    lower, upper
        Quantile boosters on log1p(value) for the interval bounds.
    interval_margin
        Conformal widening of the lower and upper bound (log1p scale) that brings the interval
        to its nominal coverage.
    offset_feature, tenure_feature, offset_scale
        The value models predict a multiplicative change on the account's revenue run-rate
        (:func:`value_base` of these features over a horizon of ``offset_scale`` days): trees
        cannot extrapolate to accounts larger or older than any they were trained on, but a
        ratio carries over to any size and age.
    defection_offset_feature, defection_offset_weight, defection_offset_center
        The defection model's trees start from ``weight`` times the log-odds of this feature
        (a statistical model's probability of the same event, e.g. BG/NBD's P(no order in the
        horizon)), which extrapolates to accounts older or longer silent than any in training;
        weight 0 means no offset. ``center`` is the mean of those log-odds on the training rows:
        in :meth:`contributions` the offset's deviation from it is the feature's contribution.
    meta
        Free-form facts about training (window, horizon, metrics, interval level).
    """

    spec: FeatureSpec
    defection: lgb.Booster
    calibrator: ProbabilityCalibrator
    value: lgb.Booster
    lower: lgb.Booster
    upper: lgb.Booster
    interval_margin: tuple[float, float] = (0.0, 0.0)
    offset_feature: str | None = None
    tenure_feature: str | None = None
    offset_scale: float = 365.0
    expected_feature: str | None = None
    defection_offset_feature: str | None = None
    defection_offset_weight: float = 0.0
    defection_offset_center: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    _single_row: dict[tuple[str, str], SingleRowPredictor | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __getstate__(self) -> dict[str, Any]:
        # the fast predictors hold C handles: rebuilt on first use after unpickling or copying
        return {k: v for k, v in self.__dict__.items() if k != "_single_row"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _single_row={})

    def _predict(self, model: str, x: np.ndarray, kind: Kind, threads: int) -> np.ndarray:
        """One of the boosters on ``x``: one row at a time for a few rows, else in one call."""
        if 0 < len(x) <= SINGLE_ROW_MAX:
            key = (model, kind)
            if key not in self._single_row:
                self._single_row[key] = single_row_predictor(getattr(self, model), kind)
            fast = self._single_row[key]
            if fast is not None:
                out = np.stack([fast.predict(row) for row in x])
                return out if kind == "contrib" else out[:, 0]
        booster: lgb.Booster = getattr(self, model)
        if kind == "contrib":
            return np.asarray(booster.predict(x, pred_contrib=True, num_threads=threads))
        return np.asarray(booster.predict(x, raw_score=kind == "raw", num_threads=threads))

    def value_offset(self, x: np.ndarray) -> np.ndarray:
        """Last period's revenue (scaled to the horizon), floored at 1: the value models' base."""
        if self.offset_feature is None:
            return np.ones(len(x))
        names = self.spec.names
        tenure = x[:, names.index(self.tenure_feature)] if self.tenure_feature else None
        expected = (
            x[:, names.index(self.expected_feature)] if self.expected_feature else None
        )
        return value_base(
            x[:, names.index(self.offset_feature)], tenure, self.offset_scale, expected
        )

    def defection_offset(self, x: np.ndarray) -> np.ndarray | None:
        """The log-odds the defection trees start from, or None without an offset."""
        if self.defection_offset_feature is None or self.defection_offset_weight == 0:
            return None
        return self.defection_offset_weight * offset_log_odds(
            x[:, self.spec.names.index(self.defection_offset_feature)],
            self.defection_offset_center,
        )

    def predict_matrix(
        self,
        x: np.ndarray,
        *,
        num_threads: int = 0,
        defection_log_odds: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Scores for a model matrix built by the spec.

        ``defection_log_odds``, when given, are the defection model's raw scores for ``x``
        (e.g. the row sums of :meth:`contributions`), which spares predicting them again.
        """
        # one thread for small batches: an idle second OpenMP thread spins and costs ~8 ms
        threads = 1 if len(x) < 2000 else num_threads
        offset = self.defection_offset(x)
        if defection_log_odds is None and offset is None:
            raw = self._predict("defection", x, "normal", threads)
        elif defection_log_odds is None:
            raw = expit(self._predict("defection", x, "raw", threads) + offset)
        else:
            raw = expit(np.asarray(defection_log_odds, dtype=float))
        base = self.value_offset(x)
        value = np.exp(self._predict("value", x, "raw", threads)) * base
        log_base = np.log1p(base)
        low = np.expm1(
            self._predict("lower", x, "normal", threads) + log_base - self.interval_margin[0]
        )
        high = np.expm1(
            self._predict("upper", x, "normal", threads) + log_base + self.interval_margin[1]
        )
        low = np.clip(np.minimum(low, value), 0.0, None)
        high = np.maximum(high, value)
        return {
            "defection_probability": np.clip(self.calibrator.transform(raw), 0.0, 1.0),
            "value": value,
            "value_low": low,
            "value_high": high,
        }

    def beyond_training(self, x: np.ndarray, *, min_share: float = NOTABLE_SHARE) -> list[Beyond]:
        """Features on which at least ``min_share`` of the rows of ``x`` lie outside the range of
        the training rows (none for bundles saved before those ranges were kept)."""
        return beyond_support(self.spec, x, support_of(self.meta), min_share=min_share)

    def predict_frame(self, frame: pd.DataFrame, *, num_threads: int = 0) -> pd.DataFrame:
        """Scores for a frame holding the spec's feature columns (extra columns ignored)."""
        scores = self.predict_matrix(self.spec.matrix(frame), num_threads=num_threads)
        return pd.DataFrame(scores, index=frame.index)

    def contributions(self, x: np.ndarray, *, num_threads: int = 0) -> np.ndarray:
        """SHAP contributions of each feature to the defection log-odds (last column: bias)."""
        threads = 1 if len(x) < 2000 else num_threads
        contrib = self._predict("defection", x, "contrib", threads)
        offset = self.defection_offset(x)
        if offset is None:
            return contrib
        # the offset's deviation from its training mean is its feature's part; the mean joins
        # the bias, so that the row sums stay the full log-odds
        assert self.defection_offset_feature is not None
        column = self.spec.names.index(self.defection_offset_feature)
        mean = self.defection_offset_weight * self.defection_offset_center
        contrib = np.array(contrib, dtype=float, copy=True)
        contrib[:, column] += offset - mean
        contrib[:, -1] += mean
        return contrib

    @staticmethod
    def _paths(directory: Path) -> dict[str, Path]:
        return {
            "defection": directory / "defection.txt",
            "value": directory / "value.txt",
            "lower": directory / "value_lower.txt",
            "upper": directory / "value_upper.txt",
            "calibrator": directory / "calibrator.pkl",
            "spec": directory / "feature_spec.json",
            "meta": directory / "meta.json",
        }

    def save(self, directory: Path) -> dict[str, str]:
        """Write the scorer to ``directory``; returns the artifact paths by name."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = self._paths(directory)
        self.defection.save_model(paths["defection"])
        self.value.save_model(paths["value"])
        self.lower.save_model(paths["lower"])
        self.upper.save_model(paths["upper"])
        paths["calibrator"].write_bytes(pickle.dumps(self.calibrator))
        paths["spec"].write_text(self.spec.to_json())
        meta = {
            **self.meta,
            "interval_margin": self.interval_margin,
            "offset_feature": self.offset_feature,
            "tenure_feature": self.tenure_feature,
            "offset_scale": self.offset_scale,
            "expected_feature": self.expected_feature,
            "defection_offset_feature": self.defection_offset_feature,
            "defection_offset_weight": self.defection_offset_weight,
            "defection_offset_center": self.defection_offset_center,
        }
        paths["meta"].write_text(json.dumps(meta, indent=1, default=str))
        return {name: str(path) for name, path in paths.items()}

    @classmethod
    def load_dir(cls, directory: Path) -> Scorer:
        """Rebuild a scorer from a folder :meth:`save` wrote."""
        return cls.load({name: str(path) for name, path in cls._paths(Path(directory)).items()})

    @classmethod
    def load(cls, artifacts: dict[str, str]) -> Scorer:
        """Rebuild a scorer from the artifact paths :meth:`save` returned."""
        meta = json.loads(Path(artifacts["meta"]).read_text())
        return cls(
            spec=FeatureSpec.from_json(Path(artifacts["spec"]).read_text()),
            defection=lgb.Booster(model_file=artifacts["defection"]),
            # written by this class itself, inside the model's own artifacts
            calibrator=pickle.loads(Path(artifacts["calibrator"]).read_bytes()),
            value=lgb.Booster(model_file=artifacts["value"]),
            lower=lgb.Booster(model_file=artifacts["lower"]),
            upper=lgb.Booster(model_file=artifacts["upper"]),
            interval_margin=_margins(meta.pop("interval_margin", 0.0)),
            offset_feature=meta.pop("offset_feature", None),
            tenure_feature=meta.pop("tenure_feature", None),
            offset_scale=float(meta.pop("offset_scale", 365.0)),
            expected_feature=meta.pop("expected_feature", None),
            defection_offset_feature=meta.pop("defection_offset_feature", None),
            defection_offset_weight=float(meta.pop("defection_offset_weight", 0.0)),
            defection_offset_center=float(meta.pop("defection_offset_center", 0.0)),
            meta=meta,
        )
