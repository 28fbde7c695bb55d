"""Account features (master data, spend tier) and season features."""

from __future__ import annotations

import math

import ibis
import ibis.expr.types as ir

TABLE = "accounts"

# Cumulative shares of revenue closing tiers A and B (the Pareto rule of key-account tiering).
TIER_A_SHARE = 0.70
TIER_B_SHARE = 0.90


def attach(population: ir.Table, accounts: ir.Table) -> ir.Table:
    """Industry, region and account age from the account master.

    The master holds today's attributes; industry and region rarely change, so using them at a
    past as_of is accepted. An account created after as_of (by the master's date) gets no age.
    """
    master = accounts.select(
        "account_id", "industry", "region", _created_day=accounts.created_at.date()
    )
    t = population.left_join(master, "account_id").drop("account_id_right")
    age = t.as_of.delta(t._created_day, unit="day")
    return t.mutate(account_age_days=ibis.cases((age >= 0, age)))


def spend_standing(t: ir.Table) -> ir.Table:
    """Percentile and A/B/C tier of each account's last-365-day revenue among its as_of peers."""
    spend = t.revenue_365d.clip(lower=0)
    ranked = ibis.window(
        group_by="as_of", order_by=[ibis.desc(t.revenue_365d), t.account_id], rows=(None, 0)
    )
    t = t.mutate(
        _spend_before=spend.sum().over(ranked) - spend,
        _spend_total=spend.sum().over(group_by="as_of"),
        spend_percentile=ibis.percent_rank().over(group_by="as_of", order_by=t.revenue_365d),
    )
    share_before = ibis.cases((t._spend_total > 0, t._spend_before / t._spend_total))
    return t.mutate(
        spend_tier=ibis.cases(
            (share_before < TIER_A_SHARE, "A"),
            (share_before < TIER_B_SHARE, "B"),
            else_="C",
        )
    )


def season(t: ir.Table) -> ir.Table:
    """Month of the year of as_of on the unit circle, so December sits next to January."""
    angle = (t.as_of.month() - 1).cast("float64") * (2 * math.pi / 12)
    return t.mutate(season_month_sin=angle.sin(), season_month_cos=angle.cos())
