"""Evaluation on the test as_of: models beside their baselines, with bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

from kam.models.scorer import Scorer
from kam.training.metrics import (
    MIN_DEFECTIONS,
    MIN_ROWS,
    bootstrap_ci,
    defection_metrics,
    normalized_gini,
    value_metrics,
)

# Baselines a model must beat: the heuristics a sales team would use without one.
RECENCY_FEATURE = "recency_days"
PRIOR_VALUE = "label_prior_value"
# The classic statistical model, fitted at the same as_of on the same history (a feature too).
BTYD_DEFECTION = "btyd_p_no_order"
BTYD_VALUE = "btyd_expected_value"
# Metrics whose model-minus-BG/NBD difference gets a paired bootstrap interval.
PAIRED = (("defection", "roc_auc"), ("defection", "brier"), ("value", "gini"))


@dataclass
class Evaluation:
    """Metrics of the models and baselines on one labelled as_of."""

    as_of: pd.Timestamp
    n_rows: int
    n_defections: int
    table: pd.DataFrame  # rows: (target, metric); columns: model, model_lo, model_hi, baseline, ...
    predictions: pd.DataFrame
    calibration: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    def metric(self, target: str, name: str, column: str = "model") -> float:
        return float(self.table[column].loc[(target, name)])

    def flat(self, prefix: str = "test") -> dict[str, float]:
        """Metrics as flat MLflow names, e.g. ``test_defection_pr_auc``."""
        out = {}
        for key, row in self.table.iterrows():
            target, name = cast(tuple[str, str], key)  # rows are keyed (target, metric)
            for column, suffix in (("model", ""), ("baseline", "_baseline"), ("btyd", "_btyd")):
                value = row.get(column)
                if value is not None and pd.notna(value):
                    out[f"{prefix}_{target}_{name}{suffix}"] = float(value)
        return out


def baseline_scores(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Recency (days since the last order) and last-period value, the heuristics to beat."""
    recency = frame[RECENCY_FEATURE].to_numpy(dtype=float)
    recency = np.where(np.isnan(recency), np.nanmax(recency), recency)
    return recency, frame[PRIOR_VALUE].to_numpy(dtype=float)


def evaluate(
    scorer: Scorer, frame: pd.DataFrame, *, n_boot: int = 200, seed: int = 0
) -> Evaluation:
    """Score labelled ``frame`` (one as_of) and compare with the baselines.

    Parameters
    ----------
    scorer
        Fitted scorer.
    frame
        Labelled snapshots at the test as_of.
    n_boot
        Bootstrap resamples for the confidence intervals (over accounts).
    seed
        Seed of the bootstrap.

    Returns
    -------
    Evaluation
    """
    return evaluate_scores(scorer.predict_frame(frame), frame, n_boot=n_boot, seed=seed)


def evaluate_scores(
    scores: pd.DataFrame, frame: pd.DataFrame, *, n_boot: int = 200, seed: int = 0
) -> Evaluation:
    """Compare given scores of labelled ``frame`` (one as_of) with the baselines.

    Parameters
    ----------
    scores
        ``defection_probability``, ``value``, ``value_low``, ``value_high``, row for row with
        ``frame`` (e.g. cross-fitted predictions).
    frame
        Labelled snapshots at one as_of.
    n_boot, seed
        Bootstrap resamples and their seed.

    Returns
    -------
    Evaluation
    """
    as_of = pd.Timestamp(frame["as_of"].iloc[0])
    scores = scores.reset_index(drop=True)
    y = frame["label_defection"].to_numpy(dtype=int)
    value = np.clip(frame["label_value"].to_numpy(dtype=float), 0.0, None)
    p = scores["defection_probability"].to_numpy()
    v, lo, hi = (scores[c].to_numpy() for c in ("value", "value_low", "value_high"))
    recency, prior = baseline_scores(frame)

    warnings = []
    n_def = int(y.sum())
    if len(y) < MIN_ROWS or n_def < MIN_DEFECTIONS or n_def == len(y):
        warnings.append(
            f"the test as_of {as_of.date()} has {len(y)} accounts and {n_def} defections: "
            f"below {MIN_ROWS} accounts or {MIN_DEFECTIONS} defections a metric's confidence "
            "interval is wide; do not trust small differences"
        )
    if n_def == 0 or n_def == len(y):
        raise ValueError(
            f"the test as_of {as_of.date()} has {n_def} defections among {len(y)} accounts: "
            "defection metrics are undefined"
        )

    dm = defection_metrics(y, p, is_probability=True)
    db = defection_metrics(y, recency, is_probability=False)
    vm = value_metrics(value, v, lo, hi)
    vb = value_metrics(value, prior)
    d_ci = bootstrap_ci(
        lambda i: defection_metrics(y[i], p[i], is_probability=True),
        len(y),
        n_boot=n_boot,
        seed=seed,
    )
    v_ci = bootstrap_ci(
        lambda i: value_metrics(value[i], v[i], lo[i], hi[i]), len(y), n_boot=n_boot, seed=seed
    )
    nan_pair = (np.nan, np.nan)
    records = [
        ("defection", name, m, *d_ci.get(name, nan_pair), db.get(name, np.nan))
        for name, m in dm.items()
    ] + [
        ("value", name, m, *v_ci.get(name, nan_pair), vb.get(name, np.nan))
        for name, m in vm.items()
    ]
    table = pd.DataFrame(
        records, columns=["target", "metric", "model", "model_lo", "model_hi", "baseline"]
    ).set_index(["target", "metric"])
    extra = _btyd_columns(frame, y, p, value, v, n_boot=n_boot, seed=seed)
    if len(extra):
        table = table.join(extra)
    else:
        table = table.assign(**dict.fromkeys(map(str, extra.columns), np.nan))

    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    calibration = pd.DataFrame({"mean_predicted": mean_pred, "observed_rate": frac_pos})
    predictions = pd.DataFrame(
        {
            "account_id": frame["account_id"].to_numpy(),
            "as_of": as_of,
            "defection_probability": p,
            "recency_baseline": recency,
            "label_defection": y,
            "value": v,
            "value_low": lo,
            "value_high": hi,
            "prior_value_baseline": prior,
            "label_value": value,
        }
    )
    return Evaluation(as_of, len(y), n_def, table, predictions, calibration, warnings)


def _btyd_columns(
    frame: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    value: np.ndarray,
    v: np.ndarray,
    *,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """BG/NBD's metrics beside the model's, and paired intervals of the differences.

    Empty columns when the frame has no BG/NBD figures (they could not be fitted, e.g. too few
    repeat buyers); the paired bootstrap resamples the same accounts for both models.
    """
    columns = ["btyd", "vs_btyd_lo", "vs_btyd_hi"]
    empty = pd.DataFrame(columns=columns, dtype=float)
    if BTYD_DEFECTION not in frame or BTYD_VALUE not in frame:
        return empty
    q = frame[BTYD_DEFECTION].to_numpy(dtype=float)
    b = frame[BTYD_VALUE].to_numpy(dtype=float)
    if np.isnan(q).any() or np.isnan(b).any():
        return empty

    def both(i: np.ndarray) -> dict[tuple[str, str], float]:
        # only the paired metrics: each resample scores both models, the rest would be waste
        return {
            ("defection", "roc_auc"): roc_auc_score(y[i], p[i]) - roc_auc_score(y[i], q[i]),
            ("defection", "brier"): brier_score_loss(y[i], p[i]) - brier_score_loss(y[i], q[i]),
            ("value", "gini"): normalized_gini(value[i], v[i]) - normalized_gini(value[i], b[i]),
        }

    whole = np.arange(len(y))
    btyd = {
        **{("defection", k): m for k, m in defection_metrics(y, q, is_probability=True).items()},
        **{("value", k): m for k, m in value_metrics(value, b).items()},
    }
    ci = bootstrap_ci(lambda i: {"|".join(k): d for k, d in both(i).items()}, len(whole),
                      n_boot=n_boot, seed=seed)
    rows = {
        key: [m, *(ci.get("|".join(key), (np.nan, np.nan)) if key in PAIRED else (np.nan,) * 2)]
        for key, m in btyd.items()
    }
    out = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    out.index = pd.MultiIndex.from_tuples(out.index, names=["target", "metric"])
    return out


def format_table(evaluation: Evaluation) -> pd.DataFrame:
    """The metric table as printed: model (with its interval) beside the baseline."""
    t = evaluation.table
    shown = pd.DataFrame(
        {
            "model": t["model"].map("{:.4f}".format),
            "90% CI": [
                f"{a:.3f}..{b:.3f}" for a, b in zip(t["model_lo"], t["model_hi"], strict=True)
            ],
            "baseline": t["baseline"].map(lambda x: "" if pd.isna(x) else f"{x:.4f}"),
            "BG/NBD": t["btyd"].map(lambda x: "" if pd.isna(x) else f"{x:.4f}"),
            "model - BG/NBD, 90% CI": [
                "" if pd.isna(a) else f"{a:+.3f}..{b:+.3f}"
                for a, b in zip(t["vs_btyd_lo"], t["vs_btyd_hi"], strict=True)
            ],
        },
        index=t.index,
    )
    return shown
