"""Tier (A/B/C by cumulative share of predicted value) and relationship stage of each account.

Tiering follows the Pareto rule of key-account practice: sorted by predicted next-horizon value,
the accounts that make up the first 70% of the total are tier A, those up to 90% tier B, the
rest tier C (thresholds are arguments; the caller takes them from settings).

The relationship stage is a documented heuristic on what the data shows of the relationship
model's stages (exploratory, basic, co-operative, interdependent, integrated, disintegrating):
see :func:`relationship_stage` (and its one-account twin,
:func:`kam.serving.decisions.one_row.relationship_stage_one`). The tier and stage names are
those of :mod:`kam.serving.decisions.vocabulary`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DEFAULT_TIER_THRESHOLDS = (0.7, 0.9)

# Stage thresholds. Symmetric changes (-1..1): -1/3 is a plain fall of 50%, -0.2 one of 33%.
ERODING_QUARTER = -1 / 3
ERODING_YEAR = -0.2
STOPPED_OVERDUE = 3.0  # days since the last order, in typical gaps
YEAR_DAYS = 365.0


def assign_tiers(
    value: np.ndarray, thresholds: tuple[float, float] = DEFAULT_TIER_THRESHOLDS
) -> np.ndarray:
    """A/B/C tier of each account by its cumulative share of the total predicted value.

    Accounts are sorted by value, largest first (ties keep their order); an account is tier A
    when the accounts before it hold less than ``thresholds[0]`` of the total, tier B when they
    hold less than ``thresholds[1]``, else C. The account that crosses a threshold therefore
    still belongs to the higher tier (the same rule as the ``spend_tier`` feature).

    Parameters
    ----------
    value
        Predicted value per account; negative and missing values count as zero.
    thresholds
        Cumulative shares closing tiers A and B, with 0 < A <= B <= 1.

    Returns
    -------
    numpy.ndarray
        Object array of ``"A"``, ``"B"`` or ``"C"``, aligned with ``value``.
    """
    a, b = thresholds
    if not 0 < a <= b <= 1:
        raise ValueError(f"tier thresholds must satisfy 0 < A <= B <= 1, got {thresholds}")
    v = np.clip(np.nan_to_num(np.asarray(value, dtype=float), nan=0.0), 0.0, None)
    tiers = np.full(len(v), "C", dtype=object)
    total = v.sum()
    if total <= 0:
        return tiers
    order = np.argsort(-v, kind="stable")
    before = (np.cumsum(v[order]) - v[order]) / total
    sorted_tiers = np.where(before < a, "A", np.where(before < b, "B", "C"))
    tiers[order] = sorted_tiers
    return tiers


def tier_cutoffs(value: np.ndarray, tiers: np.ndarray) -> tuple[float, float]:
    """The smallest predicted value in tiers A and B: apply a batch's tiering to one new row.

    Returns
    -------
    tuple of float
        ``(a_min, b_min)``; an empty tier gives ``inf``.
    """
    v = np.asarray(value, dtype=float)
    t = np.asarray(tiers, dtype=object)
    a = v[t == "A"]
    b = v[t == "B"]
    return (float(a.min()) if a.size else np.inf, float(b.min()) if b.size else np.inf)


def tiers_from_cutoffs(value: np.ndarray, cutoffs: tuple[float, float]) -> np.ndarray:
    """Tier by fixed value cutoffs (see :func:`tier_cutoffs`)."""
    v = np.nan_to_num(np.asarray(value, dtype=float), nan=0.0)
    return np.where(v >= cutoffs[0], "A", np.where(v >= cutoffs[1], "B", "C")).astype(object)


def relationship_stage(values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Estimated development stage of each account relationship.

    The heuristic reads, in order (the first rule that matches wins):

    1. **disintegrating**: spend is eroding, down at least 50% on the same quarter last year and
       at least 33% on the year before, or no order for three typical gaps;
    2. **exploratory**: first order less than a year ago;
    3. with contact history (``contact_roles_180d`` known), the bow-tie to diamond picture of
       who talks to whom: **integrated** when five or more buyer roles are reached, an executive
       was met within 90 days and the account has bought for three years or more;
       **interdependent** with three or more roles, executive contact within 180 days and two
       years of buying; **co-operative** with two or more roles or three or more people;
       else **basic** (one seller, one buyer);
    4. from transactions alone a coarser estimate: **interdependent** after three years with
       orders in at least 9 of the last 12 months across three or more product categories;
       **co-operative** after two years with orders in at least half of the months; else
       **basic**. Integration cannot be seen without contact data, so it is never given.

    Parameters
    ----------
    values
        Feature name -> float array (NaN = no value); absent features count as unknown.
    n
        Number of accounts.

    Returns
    -------
    numpy.ndarray
        Object array of stage names (see :data:`kam.serving.decisions.vocabulary.STAGES`).
    """

    def col(name: str) -> np.ndarray:
        column = values.get(name)
        return np.full(n, np.nan) if column is None else np.asarray(column, dtype=float)

    with np.errstate(invalid="ignore"):
        tenure = col("tenure_days")
        yoy, year = col("revenue_yoy_90d"), col("revenue_change_365d")
        eroding = ((yoy <= ERODING_QUARTER) & (year <= ERODING_YEAR)) | (
            col("overdue_ratio") >= STOPPED_OVERDUE
        )
        young = tenure < YEAR_DAYS

        roles, people = col("contact_roles_180d"), col("contacts_180d")
        executive = col("executive_contact_recency_days")
        known = ~np.isnan(roles)
        contact_stage = np.select(
            [
                (roles >= 5) & (executive <= 90) & (tenure >= 3 * YEAR_DAYS),
                (roles >= 3) & (executive <= 180) & (tenure >= 2 * YEAR_DAYS),
                (roles >= 2) | (people >= 3),
            ],
            ["integrated", "interdependent", "co-operative"],
            "basic",
        )
        months, categories = col("active_months_share_12m"), col("categories_365d")
        orders_stage = np.select(
            [
                (tenure >= 3 * YEAR_DAYS) & (months >= 0.75) & (categories >= 3),
                (tenure >= 2 * YEAR_DAYS) & (months >= 0.5),
            ],
            ["interdependent", "co-operative"],
            "basic",
        )
    stage = np.where(known, contact_stage, orders_stage)
    stage = np.where(young, "exploratory", stage)
    stage = np.where(eroding, "disintegrating", stage)
    return stage.astype(object)
