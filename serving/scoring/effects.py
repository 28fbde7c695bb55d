"""Effect of each retention action on defection, estimated from the actions table's history.

The question a manager asks is "did accounts we ran this action on defect less than comparable
accounts we did not?". The estimate compares, at monthly as_of dates:

- **treated**: accounts for which the action was taken in the 30 days up to as_of (so the
  features at as_of include the signals that prompted it),
- **comparable untreated**: accounts without that action in the half-year up to as_of,

among accounts still buying at as_of (last order within three typical gaps: an action is only
ever run on an account that has not left, so accounts that had already stopped would flatter
every action), within strata of the defection risk the model predicts at as_of (so accounts
singled out because they looked at risk are compared with accounts that looked as risky). The
outcome is the defection label over the horizon after as_of (from the point-in-time
snapshots). Per stratum, the treated defection rate minus the untreated one; strata are
weighted by their treated accounts (the effect on the treated), with a normal-approximation
confidence interval.

An effect is ``supported`` only when enough accounts were treated and its interval excludes
zero: anything else is reported as what it is, no effect the data can show. Caveats: the same
account can appear at several as_of dates (the interval is somewhat too narrow), and actions
targeted on signals the model's risk does not capture remain confounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from kam.features.periods import Period
from kam.features.snapshots import AsOf, as_of_range, build_snapshots, data_end
from kam.models.scorer import Scorer
from kam.serving.decisions.stages import STOPPED_OVERDUE
from kam.serving.store import earliest, read_action_history

TREATMENT_WINDOW_DAYS = 30
WASHOUT_DAYS = 180
STRATA = 10
MIN_TREATED = 50
LEVEL = 0.95
EFFECT_COLUMNS = (
    "action",
    "n_treated",
    "n_untreated",
    "treated_rate",
    "untreated_rate",
    "effect",
    "ci_low",
    "ci_high",
    "supported",
    "summary",
)


@dataclass(frozen=True)
class ActionEffect:
    """The estimated effect of one action on the defection rate (in probability points)."""

    action: str
    n_treated: int
    n_untreated: int
    treated_rate: float
    untreated_rate: float
    effect: float
    ci_low: float
    ci_high: float
    supported: bool
    summary: str


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
    snapshots: pd.DataFrame | None = None,
    strata: int = STRATA,
    min_treated: int = MIN_TREATED,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Estimate each action's effect on defection from the store's history.

    Parameters
    ----------
    con
        Ibis connection to the store (tables ``orders`` and ``actions``).
    scorer
        Scorer whose predicted risk at as_of defines the comparison strata.
    horizon, activity_window, decline
        Snapshot and label settings (those of the model).
    as_of
        Comparison dates; monthly over the history when None (:func:`effect_dates`).
    actions
        Actions to estimate (all in the table when None).
    snapshots
        Labelled snapshots at ``as_of`` already built (saves rebuilding them).
    strata
        Number of risk strata (quantiles of predicted risk).
    min_treated
        Fewer treated accounts than this never support an effect.
    level
        Confidence level of the interval.

    Returns
    -------
    pandas.DataFrame
        One row per action, columns :data:`EFFECT_COLUMNS`: treated and untreated counts,
        the defection rate of the treated and of comparable untreated accounts (weighted to the
        treated's risk mix), ``effect`` = their difference (negative: fewer defections), its
        interval, ``supported`` and a one-line ``summary``.
    """
    history = read_action_history(con)
    if history is None or history.empty:
        return pd.DataFrame(columns=list(EFFECT_COLUMNS))
    if snapshots is None:
        dates = list(as_of) if as_of is not None else effect_dates(con, horizon)
        if not dates:
            return pd.DataFrame(columns=list(EFFECT_COLUMNS))
        snapshots = build_snapshots(
            con, dates, horizon=horizon, activity_window=activity_window, decline=decline
        )
    rows = snapshots[snapshots["label_observed"].astype(bool)].reset_index(drop=True)
    buying = np.ones(len(rows), dtype=bool)
    if "overdue_ratio" in rows.columns:
        overdue = rows["overdue_ratio"].to_numpy(dtype=float, na_value=np.nan)
        buying = ~(overdue > STOPPED_OVERDUE)
    if rows.empty:
        return pd.DataFrame(columns=list(EFFECT_COLUMNS))
    risk = scorer.predict_matrix(scorer.spec.matrix(rows))["defection_probability"]
    stratum = _strata(risk, strata)
    outcome = rows["label_defection"].astype(float).to_numpy()
    history["taken_at"] = pd.to_datetime(history["taken_at"]).dt.normalize()
    names = sorted(history["action"].dropna().unique()) if actions is None else list(actions)
    results = [
        _estimate(
            name,
            rows,
            history[history["action"] == name],
            outcome,
            stratum,
            buying,
            min_treated,
            level,
        )
        for name in names
    ]
    return pd.DataFrame([r.__dict__ for r in results], columns=list(EFFECT_COLUMNS))


def _strata(risk: np.ndarray, k: int) -> np.ndarray:
    edges = np.unique(np.quantile(risk, np.linspace(0, 1, k + 1)[1:-1]))
    return np.searchsorted(edges, risk, side="right")


def _estimate(
    name: str,
    rows: pd.DataFrame,
    taken: pd.DataFrame,
    outcome: np.ndarray,
    stratum: np.ndarray,
    buying: np.ndarray,
    min_treated: int,
    level: float,
) -> ActionEffect:
    """Stratified treated-vs-untreated comparison for one action."""
    pairs = rows[["account_id", "as_of"]].reset_index().merge(
        taken[["account_id", "taken_at"]], on="account_id"
    )
    offset = (pairs["taken_at"] - pd.to_datetime(pairs["as_of"])).dt.days
    treated_rows = pairs.loc[(offset > -TREATMENT_WINDOW_DAYS) & (offset <= 0), "index"]
    recent_rows = pairs.loc[(offset > -WASHOUT_DAYS) & (offset <= 0), "index"]
    treated = np.zeros(len(rows), dtype=bool)
    treated[treated_rows.to_numpy()] = True
    untreated = np.ones(len(rows), dtype=bool)
    untreated[recent_rows.to_numpy()] = False
    # a treated account with an earlier run of the action in the washout still counts as
    # treated: excluding it would drop the accounts the action is run on most
    treated &= buying
    untreated &= buying

    effect = var = 0.0
    n_t = n_c = 0
    rate_t = rate_c = 0.0
    total = 0
    for s in np.unique(stratum[treated]):
        in_s = stratum == s
        t, c = treated & in_s, untreated & in_s
        nt, nc = int(t.sum()), int(c.sum())
        if nc < 2:
            continue  # no comparable untreated accounts at this risk level
        yt, yc = outcome[t].mean(), outcome[c].mean()
        effect += nt * (yt - yc)
        rate_t += nt * yt
        rate_c += nt * yc
        # smoothed rates keep the variance of small strata away from zero
        pt, pc = (outcome[t].sum() + 0.5) / (nt + 1), (outcome[c].sum() + 0.5) / (nc + 1)
        var += nt**2 * (pt * (1 - pt) / nt + pc * (1 - pc) / nc)
        total += nt
        n_t += nt
        n_c += nc
    if total == 0:
        return ActionEffect(
            name, 0, int(untreated.sum()), np.nan, np.nan, np.nan, np.nan, np.nan, False,
            f"{name}: no treated account with a comparable untreated one; no effect shown",
        )
    effect, rate_t, rate_c = effect / total, rate_t / total, rate_c / total
    se = float(np.sqrt(var)) / total
    z = NormalDist().inv_cdf(0.5 + level / 2)
    low, high = effect - z * se, effect + z * se
    supported = n_t >= min_treated and (high < 0 or low > 0)
    return ActionEffect(
        name, n_t, n_c, rate_t, rate_c, effect, low, high, supported,
        _summary(name, n_t, effect, low, high, supported, min_treated, level),
    )


def _summary(
    name: str, n: int, effect: float, low: float, high: float, supported: bool,
    min_treated: int, level: float,
) -> str:
    interval = f"{level:.0%} interval {100 * low:+.1f} to {100 * high:+.1f} points, n={n:,}"
    if n < min_treated:
        return f"{name}: too few treated accounts to tell ({interval})"
    if not supported:
        return f"{name}: no effect the data can support ({interval})"
    direction = "fewer" if effect < 0 else "more"
    return f"{name}: {abs(100 * effect):.1f} points {direction} defections ({interval})"
