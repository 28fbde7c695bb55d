"""Buy-till-you-die features: BG/NBD and Gamma-Gamma fitted at each as_of on the history before it.

The statistical model of repeat buying is fitted by maximum likelihood once per as_of date, on
every account's purchase days on or before that date (never after), and its predictions for the
coming horizon become features of both LightGBM models. The purchase summary (ordering days,
first and last day, revenue of the repeat days) is one Ibis expression, so it runs on any
engine that runs the snapshots; only that summary (one row per account and as_of) comes back to
fit the two small models.

Time runs in weeks inside the fits, the unit of the published CDNOW estimates; the features do
not depend on the unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from kam.features.btyd import BetaGeo, BTYDError, GammaGamma

TABLE = "orders"
WEEK_DAYS = 7.0
# A fit needs some repeat buyers to say anything about drop-out; below this the features are
# left missing at that as_of rather than drawn from a fit the data do not support.
MIN_REPEAT_ACCOUNTS = 20
# A light ridge keeps the fit finite when an early as_of shows almost no drop-out yet.
PENALIZER = 1e-4

FEATURES = (
    "btyd_p_alive",
    "btyd_p_no_order",
    "btyd_expected_order_days",
    "btyd_expected_order_value",
    "btyd_expected_value",
)


def purchase_summary(orders: ir.Table, as_of: Sequence[pd.Timestamp]) -> ir.Table:
    """Per account and as_of: ordering days, first and last day, revenue of the repeat days.

    Parameters
    ----------
    orders
        The order lines (``account_id``, ``order_date``, ``revenue``).
    as_of
        Snapshot days.

    Returns
    -------
    ibis.expr.types.Table
        ``account_id``, ``as_of`` (date), ``order_days``, ``first_day``, ``last_day`` and
        ``repeat_revenue`` (net revenue of every ordering day but the first), from orders dated
        on or before as_of only.
    """
    dates = ibis.memtable(
        pd.DataFrame({"as_of": [pd.Timestamp(d).date() for d in as_of]}),
        schema=ibis.schema({"as_of": "date"}),
    )
    days = orders.group_by("account_id", day=orders.order_date.date()).aggregate(
        revenue=orders.revenue.sum()
    )
    first = days.group_by("account_id").aggregate(first_day=days.day.min())
    days = days.join(first, "account_id")
    joined = days.join(dates, days.day <= dates.as_of)
    return joined.group_by(["account_id", "as_of"]).aggregate(
        order_days=joined.count(),
        first_day=joined.first_day.min(),
        last_day=joined.day.max(),
        repeat_revenue=joined.revenue.sum(where=joined.day > joined.first_day),
    )


def fit_features(summary: pd.DataFrame, as_of: pd.Timestamp, horizon_days: float) -> pd.DataFrame:
    """Fit BG/NBD and Gamma-Gamma on one as_of's summary and predict the coming horizon.

    Parameters
    ----------
    summary
        Rows of :func:`purchase_summary` for this as_of (every account with an order by then).
    as_of
        The snapshot day.
    horizon_days
        Length of the coming horizon in days.

    Returns
    -------
    pandas.DataFrame
        ``account_id`` and the :data:`FEATURES`; missing where the fit is not supported by
        the data (too few repeat buyers, or no convergence).
    """
    day = pd.Timestamp(as_of)
    first = pd.to_datetime(summary["first_day"])
    last = pd.to_datetime(summary["last_day"])
    x = summary["order_days"].to_numpy(dtype=float) - 1.0
    T = ((day - first).dt.days.to_numpy(dtype=float)) / WEEK_DAYS
    t_x = ((last - first).dt.days.to_numpy(dtype=float)) / WEEK_DAYS
    # to a millionth of the currency unit: engines add the revenue in their own order, and the
    # last-bit differences of the sums would otherwise move the likelihood maximum (and every
    # account's prediction) by far more than they are
    repeat = np.round(np.nan_to_num(summary["repeat_revenue"].to_numpy(dtype=float)), 6)
    with np.errstate(divide="ignore", invalid="ignore"):
        monetary = np.where(x > 0, repeat / np.maximum(x, 1.0), 0.0)
    out = pd.DataFrame({"account_id": summary["account_id"].to_numpy()})
    for name in FEATURES:
        out[name] = np.nan
    if int((x > 0).sum()) < MIN_REPEAT_ACCOUNTS:
        return out
    t = horizon_days / WEEK_DAYS
    try:
        bg = _fit_compressed(x, t_x, T)
        out["btyd_p_alive"] = bg.prob_alive(x, t_x, T)
        out["btyd_p_no_order"] = bg.prob_no_purchase(t, x, t_x, T)
        out["btyd_expected_order_days"] = bg.expected_purchases(t, x, t_x, T)
    except BTYDError:
        return out
    # Gamma-Gamma needs positive mean spend; net credits (returns above purchases) stay out
    # of the fit and get the population's mean spend, like an account without repeats.
    spend = (x > 0) & (monetary > 0)
    if int(spend.sum()) >= MIN_REPEAT_ACCOUNTS:
        # fitted in units of the median order value: the scale parameter then sits near 1
        # whatever the currency, and no ridge is needed (a ridge on it would depend on money)
        scale = float(np.median(monetary[spend]))
        try:
            gg = GammaGamma().fit(x[spend], monetary[spend] / scale)
            value = scale * gg.expected_spend(
                np.where(spend, x, 0.0), np.where(spend, monetary / scale, 0.0)
            )
            out["btyd_expected_order_value"] = value
            out["btyd_expected_value"] = value * out["btyd_expected_order_days"].to_numpy()
        except BTYDError:
            pass
    return out


def _fit_compressed(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BetaGeo:
    # many accounts share (x, t_x, T) exactly (same first and last day): fit on the distinct
    # rows, weighted by their counts
    rows = pd.DataFrame({"x": x, "t_x": t_x, "T": T})
    grouped = rows.groupby(["x", "t_x", "T"], sort=False).size().reset_index(name="n")
    return BetaGeo(penalizer=PENALIZER).fit(
        grouped["x"], grouped["t_x"], grouped["T"], weights=grouped["n"]
    )


def attach(con: Any, frame: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
    """Add the :data:`FEATURES` to snapshot rows, fitted at each of their as_of dates.

    Parameters
    ----------
    con
        Ibis connection to the store (reads ``orders``).
    frame
        Snapshot rows with ``account_id`` and ``as_of``.
    horizon_days
        The label horizon in days: the features predict the same window.

    Returns
    -------
    pandas.DataFrame
        ``frame`` with the feature columns added (a new frame; ``frame`` is not modified).
    """
    dates = sorted(pd.to_datetime(frame["as_of"]).unique())
    if not dates:
        return frame.assign(**{name: np.nan for name in FEATURES})
    summary = con.execute(purchase_summary(con.table(TABLE), dates))
    summary["as_of"] = pd.to_datetime(summary["as_of"])
    # engines return groups in any order; the fits' floating-point sums must not depend on it
    summary = summary.sort_values(["as_of", "account_id"], ignore_index=True)
    parts = []
    for day, rows in summary.groupby("as_of", sort=True):
        fitted = fit_features(rows, day, horizon_days)
        parts.append(fitted.assign(as_of=day))
    features = pd.concat(parts, ignore_index=True)
    features["account_id"] = features["account_id"].astype(frame["account_id"].dtype)
    keyed = frame.assign(as_of=pd.to_datetime(frame["as_of"]))
    merged = keyed.merge(features, on=["account_id", "as_of"], how="left", validate="1:1")
    merged["as_of"] = merged["as_of"].astype(frame["as_of"].dtype)
    return merged
