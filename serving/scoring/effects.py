"""Effect of each retention action on defection and on value, estimated from the actions history.

The question a manager asks is "did accounts we ran this action on defect less than comparable
accounts we did not, and by how much?". At monthly as_of dates the estimate compares

- **treated**: accounts for which the action was taken in the 30 days up to as_of,
- **untreated**: accounts without that action in the half-year up to as_of,

among accounts still buying at as_of (an action is only run on an account that has not left, so
accounts that had already stopped would flatter every action). Everything used to compare them is
known at as_of (the point-in-time features and the model's risk at that date); the outcomes are
the labels of the horizon after it (defection, and net revenue).

The comparison is doubly robust (augmented inverse-propensity weighting for the effect on the
treated): a propensity model (scikit-learn logistic regression on the model's risk and the
account's features) says how likely each account was to receive the action given what the team
could see; an outcome model fitted on untreated accounts predicts each treated account's
defection without the action; the untreated residuals, weighted by the propensity odds, correct
that prediction. Either model being right is enough for the estimate to be right.

Overlap is checked before anything is claimed: treated accounts whose propensity is beyond every
comparable untreated account's are dropped, and when more than a tenth of them would be dropped,
or the weighted untreated accounts are too few, the action is refused with the reason. The
interval is a normal one from the estimate's influence function, summed by account (the same
account appears at several as_of dates).

Each action's evidence has a status:

- ``helps``: enough treated accounts, overlap, and an interval below zero (supported);
- ``harms``: an interval above zero (never recommended);
- ``no_effect``: tested, but the interval includes zero: no effect the data can show;
- ``too_few`` / ``no_overlap``: not enough evidence to estimate; the effect is unknown.

An unknown effect is never reported as zero or as helpful. Besides the change in defection
probability (points), the evidence carries the relative risk reduction (the change over the
treated accounts' defection rate without the action) and the share of the treated accounts' risk
that the action's cause explains (from their drivers), which turns the action's reduction into
the reduction for an account with another cause mix (:mod:`kam.serving.decisions.evidence`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge

from kam.features.periods import Period
from kam.features.snapshots import AsOf, as_of_range, build_snapshots, data_end
from kam.models.scorer import Scorer
from kam.serving.decisions.drivers import compute_drivers
from kam.serving.decisions.phrasebook import Phrasebook, load_phrasebook
from kam.serving.decisions.playbook import Playbook
from kam.serving.decisions.stages import STOPPED_OVERDUE
from kam.serving.decisions.vocabulary import CAUSES
from kam.serving.store import earliest, read_action_history

TREATMENT_WINDOW_DAYS = 30
WASHOUT_DAYS = 180
MIN_TREATED = 50
LEVEL = 0.90
# Most of the untreated rows add little once there are many of them: keep at most this many
# per treated row (each kept one weighted for the ones left out).
CONTROLS_PER_TREATED = 20
MAX_CONTROLS = 200_000
MAX_DROPPED_SHARE = 0.10
PROPENSITY_CLIP = 0.99
SEED = 0
STATUSES = ("helps", "harms", "no_effect", "too_few", "no_overlap")
EFFECT_COLUMNS = (
    "action",
    "cause",
    "status",
    "supported",
    "n_treated",
    "n_untreated",
    "n_dropped",
    "treated_rate",
    "untreated_rate",
    "effect",
    "ci_low",
    "ci_high",
    "relative",
    "relative_low",
    "relative_high",
    "cause_share",
    "value_effect",
    "value_low",
    "value_high",
    "summary",
)


@dataclass(frozen=True)
class ActionEffect:
    """The estimated effect of one action.

    ``effect`` and its interval are in probability (``-0.05``: five points fewer defections
    among the treated); ``relative`` is the risk reduction as a share of the treated accounts'
    defection rate without the action (``0.3``: 30% fewer); ``value_effect`` is the change in
    next-horizon net revenue. Estimates are NaN when the status is ``too_few`` or ``no_overlap``.
    """

    action: str
    cause: str | None
    status: str
    supported: bool
    n_treated: int
    n_untreated: int
    n_dropped: int
    treated_rate: float
    untreated_rate: float
    effect: float
    ci_low: float
    ci_high: float
    relative: float
    relative_low: float
    relative_high: float
    cause_share: float
    value_effect: float
    value_low: float
    value_high: float
    summary: str


class EffectsError(ValueError):
    """The history cannot give effects (no actions table, no dates with observed labels)."""


def effect_dates(con: Any, horizon: Period | str, *, every: str = "1mo") -> list[pd.Timestamp]:
    """Monthly as_of dates whose label horizon (and treatment window) the data covers.

    From the first recorded action (but at least one horizon after the first order, so the
    defection label has a full prior window to compare with) to the end of the data minus the
    horizon.
    """
    horizon = Period.parse(horizon)
    end = data_end(con) - horizon.offset()
    first = earliest(con, "actions", "taken_at")
    first_order = earliest(con, "orders", "order_date")
    if first is None or pd.isna(first) or first_order is None or pd.isna(first_order):
        return []
    start = max(
        pd.Timestamp(first).normalize() - pd.DateOffset(days=1),
        pd.Timestamp(first_order).normalize() + horizon.offset(),
    )
    if start > end:
        return []
    return [d for d in as_of_range(start, end, every) if d <= end]


def estimate_effects(
    con: Any,
    scorer: Scorer,
    *,
    horizon: Period | str = "365d",
    activity_window: Period | str | None = "365d",
    decline: float = 0.5,
    as_of: Sequence[AsOf] | None = None,
    actions: Sequence[str] | None = None,
    playbook: Playbook | None = None,
    snapshots: pd.DataFrame | None = None,
    phrasebook: Phrasebook | None = None,
    min_treated: int = MIN_TREATED,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Estimate each action's effect on defection and value from the store's history.

    Parameters
    ----------
    con
        Ibis connection to the store (tables ``orders`` and ``actions``).
    scorer
        Scorer whose risk at as_of is one of the comparison's covariates, and whose drivers say
        which cause the treated accounts' risk came from.
    horizon, activity_window, decline
        Snapshot and label settings (those of the model).
    as_of
        Comparison dates; monthly over the history when None (:func:`effect_dates`).
    actions
        Actions to estimate (all in the table when None).
    playbook
        Gives each action's cause (for ``cause_share``); actions it lacks get none.
    snapshots
        Labelled snapshots at ``as_of`` already built (saves rebuilding them).
    phrasebook
        For the treated accounts' drivers; the shipped default when None.
    min_treated
        Fewer treated accounts than this never give an estimate.
    level
        Confidence level of the intervals.

    Returns
    -------
    pandas.DataFrame
        One row per action, the columns :data:`EFFECT_COLUMNS`.

    Raises
    ------
    EffectsError
        When the store has no actions, or no as_of date with an observed horizon.
    """
    history = read_action_history(con)
    if history is None or history.empty:
        raise EffectsError("the store has no actions table (or it is empty): nothing to learn")
    if snapshots is None:
        dates = list(as_of) if as_of is not None else effect_dates(con, horizon)
        if not dates:
            raise EffectsError(
                f"no as_of date has both recorded actions and a full {horizon} horizon after it"
            )
        snapshots = build_snapshots(
            con, dates, horizon=horizon, activity_window=activity_window, decline=decline
        )
    rows = snapshots[snapshots["label_observed"].astype(bool)].reset_index(drop=True)
    if "overdue_ratio" in rows.columns:
        overdue = rows["overdue_ratio"].to_numpy(dtype=float, na_value=np.nan)
        rows = rows[~(overdue > STOPPED_OVERDUE)].reset_index(drop=True)
    if rows.empty:
        raise EffectsError("no account still buying at the as_of dates has an observed horizon")
    x = scorer.spec.matrix(rows)
    predicted = scorer.predict_matrix(x)
    covariates = _covariates(x, scorer, predicted["defection_probability"], rows)
    outcome = rows["label_defection"].astype(float).to_numpy()
    value = rows["label_value"].to_numpy(dtype=float, na_value=0.0)
    history = history.assign(taken_at=pd.to_datetime(history["taken_at"]).dt.normalize())
    names = sorted(history["action"].dropna().unique()) if actions is None else list(actions)
    causes = {a.id: a.cause for a in playbook.actions} if playbook is not None else {}
    study = _Study(rows, x, covariates, outcome, value, scorer, phrasebook, min_treated, level)
    results = [
        study.estimate(name, causes.get(name), history[history["action"] == name])
        for name in names
    ]
    return pd.DataFrame([asdict(r) for r in results], columns=list(EFFECT_COLUMNS))


def _covariates(
    x: np.ndarray, scorer: Scorer, risk: np.ndarray, rows: pd.DataFrame
) -> np.ndarray:
    """Standardised numeric features with missing indicators, plus the model's risk."""
    numeric = [j for j, n in enumerate(scorer.spec.names) if n not in scorer.spec.categories]
    z = x[:, numeric]
    missing = np.isnan(z)
    z = np.where(missing, np.nanmedian(np.where(missing.all(axis=0), 0.0, z), axis=0), z)
    # heavy-tailed amounts (revenue, counts) would dominate a linear model unscaled
    z = np.sign(z) * np.log1p(np.abs(z))
    spread = z.std(axis=0)
    z = (z - z.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    logit = np.log(np.clip(risk, 1e-6, 1 - 1e-6) / np.clip(1 - risk, 1e-6, 1))
    flags = missing[:, missing.any(axis=0) & ~missing.all(axis=0)].astype(float)
    return np.column_stack([logit, z, flags])


class _Study:
    """The rows every action's comparison shares, and one action's estimate at a time."""

    def __init__(
        self, rows: pd.DataFrame, x: np.ndarray, covariates: np.ndarray, outcome: np.ndarray,
        value: np.ndarray, scorer: Scorer, phrasebook: Phrasebook | None, min_treated: int,
        level: float,
    ) -> None:
        self.rows, self.x, self.covariates = rows, x, covariates
        self.outcome, self.value = outcome, value
        self.scorer, self.phrasebook = scorer, phrasebook
        self.min_treated, self.level = min_treated, level
        self.z = NormalDist().inv_cdf(0.5 + level / 2)
        self.accounts = pd.factorize(rows["account_id"])[0]
        self.key = rows[["account_id", "as_of"]].reset_index()
        self.key["as_of"] = pd.to_datetime(self.key["as_of"])

    def groups(self, taken: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        pairs = self.key.merge(taken[["account_id", "taken_at"]], on="account_id")
        offset = (pairs["taken_at"] - pairs["as_of"]).dt.days
        treated = np.zeros(len(self.rows), dtype=bool)
        treated[pairs.loc[(offset > -TREATMENT_WINDOW_DAYS) & (offset <= 0), "index"]] = True
        untreated = np.ones(len(self.rows), dtype=bool)
        untreated[pairs.loc[(offset > -WASHOUT_DAYS) & (offset <= 0), "index"]] = False
        return treated, untreated

    def estimate(self, name: str, cause: str | None, taken: pd.DataFrame) -> ActionEffect:
        treated, untreated = self.groups(taken)
        n_t, n_c = int(treated.sum()), int(untreated.sum())
        if n_t < self.min_treated or n_c < self.min_treated:
            return _unknown(name, cause, "too_few", n_t, n_c, 0,
                            f"{name}: too few accounts to tell ({n_t:,} treated, {n_c:,} "
                            f"untreated; at least {self.min_treated} of each needed)")
        rng = np.random.default_rng(SEED)
        control = np.flatnonzero(untreated)
        keep = min(len(control), CONTROLS_PER_TREATED * n_t, MAX_CONTROLS)
        sampled = np.sort(rng.choice(control, keep, replace=False))
        weight_c = len(control) / keep
        t_idx = np.flatnonzero(treated)
        idx = np.concatenate([t_idx, sampled])
        t = np.concatenate([np.ones(n_t), np.zeros(keep)])
        sample_w = np.concatenate([np.ones(n_t), np.full(keep, weight_c)])
        cov = self.covariates[idx]

        propensity = LogisticRegression(C=0.1, solver="newton-cholesky", max_iter=100)
        propensity.fit(cov, t, sample_weight=sample_w)
        e = np.clip(propensity.predict_proba(cov)[:, 1], 1e-6, PROPENSITY_CLIP)
        # overlap: no treated row beyond every comparable untreated row's propensity
        e_c = e[t == 0]
        top = np.quantile(e_c, 0.999)
        outside = (t == 1) & (e > top)
        n_drop = int(outside.sum())
        if n_drop > MAX_DROPPED_SHARE * n_t:
            return _unknown(name, cause, "no_overlap", n_t, n_c, n_drop,
                            f"{name}: treated and untreated accounts do not overlap: "
                            f"{n_drop:,} of {n_t:,} treated accounts were more likely to get "
                            "the action than any comparable untreated one; no effect shown")
        inside = ~outside & ~((t == 0) & (e < e[t == 1].min()))
        idx, t, e, sample_w = idx[inside], t[inside], e[inside], sample_w[inside]
        cov = cov[inside]
        odds = np.where(t == 0, sample_w * e / (1 - e), 0.0)
        n_t = int(t.sum())
        odds *= n_t / odds.sum()  # normalised: the untreated stand for the treated
        ess = odds.sum() ** 2 / max(float((odds**2).sum()), 1e-12)
        if ess < self.min_treated:
            return _unknown(name, cause, "no_overlap", n_t, n_c, n_drop,
                            f"{name}: the untreated accounts comparable to the treated ones "
                            f"weigh as {ess:.0f} accounts, too few to compare with")
        y, v = self.outcome[idx], self.value[idx]
        tau, se, base = self._att(cov, t, y, odds, sample_w, self.accounts[idx], binary=True)
        tau_v, se_v, _ = self._att(cov, t, v, odds, sample_w, self.accounts[idx], binary=False)
        low, high = tau - self.z * se, tau + self.z * se
        if high < 0:
            status = "helps"
        elif low > 0:
            status = "harms"
        else:
            status = "no_effect"
        rel = -tau / base if base > 0 else np.nan
        rel_low, rel_high = (-high / base, -low / base) if base > 0 else (np.nan, np.nan)
        share = self._cause_share(idx[t == 1], cause)
        summary = _summary(name, status, n_t, tau, low, high, rel, self.level)
        return ActionEffect(
            name, cause, status, status == "helps", n_t, n_c, n_drop,
            float(y[t == 1].mean()), float(base), tau, low, high, rel, rel_low, rel_high, share,
            tau_v, tau_v - self.z * se_v, tau_v + self.z * se_v, summary,
        )

    def _att(
        self, cov: np.ndarray, t: np.ndarray, y: np.ndarray, odds: np.ndarray,
        sample_w: np.ndarray, cluster: np.ndarray, *, binary: bool,
    ) -> tuple[float, float, float]:
        """Doubly robust effect on the treated, its standard error, the counterfactual mean."""
        c = t == 0
        if binary and 0 < y[c].mean() < 1:
            model: Any = LogisticRegression(C=0.1, solver="newton-cholesky", max_iter=100)
            model.fit(cov[c], y[c], sample_weight=sample_w[c])
            mu0 = model.predict_proba(cov)[:, 1]
        else:
            scale = max(float(np.abs(y[c]).mean()), 1.0)
            model = Ridge(alpha=1.0).fit(cov[c], y[c] / scale, sample_weight=sample_w[c])
            mu0 = model.predict(cov) * scale
        n_t = t.sum()
        residual = y - mu0
        tau = float((t * residual).sum() - (odds * residual).sum()) / n_t
        psi = t * (residual - tau) - odds * residual
        by_account = np.bincount(cluster, weights=psi)
        se = float(np.sqrt((by_account**2).sum())) / n_t
        base = float(y[t == 1].mean()) - tau
        return tau, se, base

    def _cause_share(self, treated: np.ndarray, cause: str | None) -> float:
        """Mean share of the treated accounts' risk that the action's cause explains."""
        if cause is None or cause not in CAUSES or not len(treated):
            return float("nan")
        rows = self.rows.iloc[treated]
        x = self.x[treated]
        values = {
            n: rows[n].to_numpy(dtype=float, na_value=np.nan)
            for n in self.scorer.spec.names
            if n in rows.columns and n not in self.scorer.spec.categories
        }
        phrasebook = self.phrasebook or load_phrasebook()
        drivers = compute_drivers(self.scorer.contributions(x), self.scorer.spec, values,
                                  phrasebook)
        strength = np.clip(drivers.cause_strength, 0.0, None)
        total = strength.sum(axis=1)
        has = total > 0
        if not has.any():
            return float("nan")
        return float((strength[has, CAUSES.index(cause)] / total[has]).mean())


def _unknown(
    name: str, cause: str | None, status: str, n_t: int, n_c: int, n_drop: int, summary: str
) -> ActionEffect:
    nan = float("nan")
    return ActionEffect(name, cause, status, False, n_t, n_c, n_drop, nan, nan, nan, nan, nan,
                        nan, nan, nan, nan, nan, nan, nan, summary)


def _summary(
    name: str, status: str, n: int, effect: float, low: float, high: float, relative: float,
    level: float,
) -> str:
    interval = f"{level:.0%} interval {100 * low:+.1f} to {100 * high:+.1f} points, n={n:,}"
    if status == "no_effect":
        return f"{name}: no effect the data can support ({interval})"
    direction = "fewer" if effect < 0 else "more"
    return (f"{name}: {abs(100 * effect):.1f} points {direction} defections, "
            f"{abs(relative):.0%} of the risk ({interval})")


def effects_json(effects: pd.DataFrame) -> str:
    """The effects table as JSON text (NaN as null), as logged with a trained model."""
    records = effects.astype(object).where(effects.notna(), None).to_dict(orient="records")
    return json.dumps(records, indent=1, default=str)


def log_effects(effects: pd.DataFrame, run_id: str, tracking_uri: str) -> None:
    """Log the effects table with a training run (``effects.json`` and per-action metrics)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    client.log_text(run_id, effects_json(effects), "effects/effects.json")
    for action, effect in zip(effects["action"], effects["effect"].astype(float), strict=True):
        if np.isfinite(effect):
            client.log_metric(run_id, f"effect_{action}", float(effect))
    client.set_tag(run_id, "effects_supported",
                   ",".join(effects.loc[effects["supported"], "action"]) or "none")
