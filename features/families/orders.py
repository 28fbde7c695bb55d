"""Spend, rhythm, breadth and price features from the order lines."""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from kam.features.families.expr import (
    bit_count,
    count_if,
    max_if,
    or_if,
    ratio,
    sum_if,
    symmetric_change,
    within,
    zero_if_null,
)

TABLE = "orders"
# The longest window: the year before last year (categories, revenue change).
LOOKBACK_DAYS: int = 730

_DAYS_PER_MONTH = 365.25 / 12
# Product categories are tracked as bits of 62-bit masks (bit 63 is the sign; 62 keeps every
# shifted value positive on engines that check for overflow). Up to this many masks are used;
# beyond 4 x 62 categories the rarest share the last bit, so they count as one category.
_BITS = 62
_MAX_MASKS = 4


@dataclass(frozen=True)
class Categories:
    """The product categories of the orders, numbered most frequent first.

    Parameters
    ----------
    index
        Table of ``product_category`` and its bit number ``bit``.
    count
        Number of distinct categories (the bits in use).
    """

    index: ir.Table
    count: int

    @property
    def masks(self) -> int:
        return max(1, min(_MAX_MASKS, -(-self.count // _BITS)))


def categories(orders: ir.Table) -> Categories:
    """Number the product categories (executes one small query to count them)."""
    named = orders.filter(orders.product_category.notnull())
    counts = named.group_by("product_category").aggregate(lines=named.count())
    last_bit = _MAX_MASKS * _BITS - 1
    index = counts.mutate(
        bit=ibis.least(
            ibis.row_number().over(order_by=[ibis.desc("lines"), "product_category"]), last_bit
        )
    ).select("product_category", "bit")
    count = int(counts.count().to_pyarrow().as_py())
    return Categories(index, min(count, last_bit + 1))


def events(orders: ir.Table, cats: Categories) -> ir.Table:
    """Order lines summed per account and day, with the day's product categories as bitmasks.

    One row per account and order day keeps the rows the as_of join multiplies few, makes
    distinct order days a plain count, and turns distinct categories in a window into a
    bitwise OR of the days' masks.
    """
    lines = orders.left_join(cats.index, "product_category").drop("product_category_right")
    lines = lines.mutate(
        day=lines.order_date.date(),
        # gross (pre-discount) value; null where the discount is unknown, so such lines drop
        # out of both sides of the discount rate
        gross=lines.revenue + lines.discount_amount,
    )
    masks = {
        f"category_mask_{m}": or_if(
            ibis.literal(1, "int64") << (lines.bit % _BITS), lines.bit // _BITS == m
        )
        for m in range(cats.masks)
    }
    days = lines.group_by(["account_id", "day"]).aggregate(
        revenue=lines.revenue.sum(),
        sales=sum_if(lines.revenue, lines.revenue > 0),
        credits=sum_if(-lines.revenue, lines.revenue < 0),
        lines=lines.count(),
        discount=sum_if(lines.discount_amount, lines.gross.notnull()),
        gross=lines.gross.sum(),
        margin=lines.gross_margin.sum(),
        margin_base=sum_if(lines.revenue, lines.gross_margin.notnull()),
        **masks,
    )
    return days


def first_days(orders: ir.Table) -> ir.Table:
    """Each account's first order day (``_o_first_day``), for tenure.

    Joined onto the aggregated snapshot rows rather than carried on the events, so the as_of
    join does not have to drag it along.
    """
    return orders.group_by("account_id").aggregate(_o_first_day=orders.order_date.min().date())


def metrics(rows: ir.Table, cats: Categories) -> dict[str, ir.Value]:
    """Conditional aggregates over the order days in the lookback before each as_of."""
    last_90, last_365 = within(rows, 0, 90), within(rows, 0, 365)
    prev_365 = within(rows, 365, 730)
    # price rates compare the last 180 days with the rest of the year before as_of
    last_180, rest_365 = within(rows, 0, 180), within(rows, 180, 365)
    # the last 365 days cut into twelve equal "months" counted back from as_of, so the share
    # does not depend on where as_of falls in a calendar month
    month_bit = ibis.literal(1, "int64") << ((rows.d * 12) // 365)
    out = {
        "_o_rev_90": sum_if(rows.revenue, last_90),
        "_o_rev_prev_90": sum_if(rows.revenue, within(rows, 90, 180)),
        "_o_rev_365": sum_if(rows.revenue, last_365),
        "_o_rev_prev_365": sum_if(rows.revenue, prev_365),
        "_o_rev_ly_90": sum_if(rows.revenue, within(rows, 365, 455)),
        "_o_sales_365": sum_if(rows.sales, last_365),
        "_o_credits_365": sum_if(rows.credits, last_365),
        "_o_lines_365": sum_if(rows.lines, last_365),
        "_o_days_90": count_if(last_90),
        "_o_days_365": count_if(last_365),
        "_o_days_730": count_if(within(rows, 0, 730)),
        "_o_newest": rows.d.min(),
        "_o_oldest": max_if(rows.d, within(rows, 0, 730)),
        "_o_months_mask": or_if(month_bit, last_365),
        "_o_disc_180": sum_if(rows.discount, last_180),
        "_o_gross_180": sum_if(rows.gross, last_180),
        "_o_disc_rest": sum_if(rows.discount, rest_365),
        "_o_gross_rest": sum_if(rows.gross, rest_365),
        "_o_margin_180": sum_if(rows.margin, last_180),
        "_o_mbase_180": sum_if(rows.margin_base, last_180),
        "_o_margin_rest": sum_if(rows.margin, rest_365),
        "_o_mbase_rest": sum_if(rows.margin_base, rest_365),
    }
    for m in range(cats.masks):
        mask = rows[f"category_mask_{m}"]
        out[f"_o_cat_now_{m}"] = or_if(mask, last_365)
        out[f"_o_cat_prev_{m}"] = or_if(mask, prev_365)
    return out


def finish(t: ir.Table, cats: Categories) -> ir.Table:
    """Spend, rhythm, breadth and price features from the order metrics."""
    zero = zero_if_null
    rev_90, rev_prev_90 = zero(t._o_rev_90), zero(t._o_rev_prev_90)
    rev_365, rev_prev_365 = zero(t._o_rev_365), zero(t._o_rev_prev_365)
    rev_ly_90 = zero(t._o_rev_ly_90)
    tenure = t.as_of.delta(t._o_first_day, unit="day")
    # the typical gap over the last two years: first to last order day in them, divided by the
    # gaps between their order days
    gap = ibis.cases(
        (t._o_days_730 >= 2, (t._o_oldest - t._o_newest).cast("float64") / (t._o_days_730 - 1))
    )
    # months observed: the last two years, or the tenure when shorter (at least one month)
    months = ibis.least(ibis.greatest(tenure, 30), LOOKBACK_DAYS).cast("float64") / _DAYS_PER_MONTH
    disc = (zero(t._o_disc_180), zero(t._o_disc_rest))
    gross = (zero(t._o_gross_180), zero(t._o_gross_rest))
    margin = (zero(t._o_margin_180), zero(t._o_margin_rest))
    mbase = (zero(t._o_mbase_180), zero(t._o_mbase_rest))

    def categories_in(masks: list[ir.IntegerValue]) -> ir.IntegerValue:
        total = ibis.literal(0, "int64")
        for m, mask in enumerate(masks):
            total = total + bit_count(mask, min(_BITS, cats.count - m * _BITS))
        return total

    now = [zero(t[f"_o_cat_now_{m}"]) for m in range(cats.masks)]
    prev = [zero(t[f"_o_cat_prev_{m}"]) for m in range(cats.masks)]
    both = [a | b for a, b in zip(now, prev, strict=True)]
    return t.mutate(
        revenue_90d=rev_90,
        revenue_180d=rev_90 + rev_prev_90,
        revenue_365d=rev_365,
        revenue_trend_90d=symmetric_change(rev_90, rev_prev_90),
        revenue_90d_last_year=rev_ly_90,
        revenue_yoy_90d=symmetric_change(rev_90, rev_ly_90),
        revenue_change_365d=symmetric_change(rev_365, rev_prev_365),
        avg_order_value_365d=ratio(rev_365, t._o_days_365),
        order_days_90d=t._o_days_90,
        order_days_365d=t._o_days_365,
        lines_per_order_day_365d=ratio(t._o_lines_365, t._o_days_365),
        return_share_365d=ratio(zero(t._o_credits_365), t._o_sales_365),
        recency_days=t._o_newest,
        mean_gap_days=gap,
        overdue_ratio=ratio(t._o_newest, gap),
        tenure_days=tenure,
        order_days_per_month=t._o_days_730.cast("float64") / months,
        active_months_share_12m=bit_count(zero(t._o_months_mask), 12).cast("float64") / 12,
        categories_365d=categories_in(now),
        categories_prev_365d=categories_in(prev),
        categories_lost_365d=categories_in(both) - categories_in(now),
        categories_new_365d=categories_in(both) - categories_in(prev),
        discount_rate_365d=ratio(disc[0] + disc[1], gross[0] + gross[1]),
        discount_rate_trend_180d=ratio(disc[0], gross[0]) - ratio(disc[1], gross[1]),
        margin_rate_365d=ratio(margin[0] + margin[1], mbase[0] + mbase[1]),
        margin_rate_trend_180d=ratio(margin[0], mbase[0]) - ratio(margin[1], mbase[1]),
    )
