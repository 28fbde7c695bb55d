"""Order table to model inputs: per-account frequency, recency, age and mean repeat value."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kam.features.btyd.errors import BTYDError


def rfm_summary(
    orders: pd.DataFrame,
    as_of: Any,
    *,
    unit_days: float = 1.0,
    account: str = "account_id",
    date: str = "order_date",
    value: str = "revenue",
) -> pd.DataFrame:
    """Per-account frequency, recency, age and mean repeat value from an order table.

    Only orders dated on or before ``as_of`` are used, so the summary is what was known at
    ``as_of``. Orders are grouped by calendar day: several orders on one day count as one
    purchase whose value is their sum.

    Parameters
    ----------
    orders : pandas.DataFrame
        One row per order with columns ``account``, ``date`` and ``value``.
    as_of : date-like
        The point in time; orders with ``date > as_of`` are ignored.
    unit_days : float
        Days per time unit of ``recency`` and ``T`` (1 for days, 7 for weeks).
    account, date, value : str
        Column names in ``orders``.

    Returns
    -------
    pandas.DataFrame
        Indexed by account (accounts with an order on or before ``as_of``), with columns
        ``frequency`` (purchase days minus 1), ``recency`` (first to last purchase day),
        ``T`` (first purchase day to the day of ``as_of``) and ``monetary_value`` (mean value
        of the purchase days after the first, 0 when there are none).

    Raises
    ------
    BTYDError
        If a column is missing, ``unit_days`` is not positive, dates are missing or values are
        missing or infinite.
    """
    missing = [c for c in (account, date, value) if c not in orders.columns]
    if missing:
        raise BTYDError(f"orders has no column(s) {missing}; it has {list(orders.columns)}")
    if not (np.isfinite(unit_days) and unit_days > 0):
        raise BTYDError(f"unit_days must be a positive number, got {unit_days!r}")
    cutoff = pd.Timestamp(as_of)
    if pd.isna(cutoff):
        raise BTYDError("as_of is missing")
    dates = pd.to_datetime(orders[date])
    if dates.isna().any():
        raise BTYDError(f"{date} has {int(dates.isna().sum())} missing date(s)")
    amounts = pd.to_numeric(orders[value])
    try:
        known = (dates <= cutoff).to_numpy()
    except TypeError as exc:
        raise BTYDError(f"as_of cannot be compared with {date}: {exc}") from exc
    if not np.all(np.isfinite(amounts.to_numpy(dtype=float)[known])):
        raise BTYDError(f"{value} has missing or infinite values")

    # Calendar days are counted on the wall clock of the dates' own time zone, so that a day
    # across a daylight-saving change is still one day.
    end = cutoff
    if dates.dt.tz is not None:
        end = cutoff.tz_convert(dates.dt.tz).tz_localize(None)
        dates = dates.dt.tz_localize(None)
    end = end.normalize()
    days = pd.DataFrame(
        {
            "account": orders[account].to_numpy()[known],
            "day": dates.dt.normalize()[known].reset_index(drop=True),
            "amount": amounts.to_numpy(dtype=float)[known],
        }
    )
    daily = days.groupby(["account", "day"], sort=True, as_index=False)["amount"].sum()
    grouped = daily.groupby("account", sort=True)
    first = grouped["day"].min()
    last = grouped["day"].max()
    n_days = grouped["day"].size()
    total = grouped["amount"].sum()
    first_amount = grouped["amount"].first()  # days are sorted within account
    frequency = (n_days - 1).astype("int64")
    repeat_value = (total - first_amount).where(frequency > 0, 0.0)
    day = np.timedelta64(1, "D")
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "recency": ((last - first) / day).astype(float) / unit_days,
            "T": ((end - first) / day).astype(float) / unit_days,
            "monetary_value": (repeat_value / frequency.where(frequency > 0, 1)).astype(float),
        }
    )
    summary.index.name = account
    return summary
