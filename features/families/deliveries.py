"""Supply features from deliveries: on-time and fill rates."""

from __future__ import annotations

import ibis.expr.types as ir

from kam.features.families.expr import count_if, ratio, sum_if, within, zero_if_null

TABLE = "deliveries"
LOOKBACK_DAYS: int | None = 360


def events(deliveries: ir.Table) -> ir.Table:
    """Deliveries dated by the promised day.

    Whether a delivery due on or before as_of was on time is known at as_of: it was on time only
    if it arrived by the promised day, which is itself on or before as_of.
    """
    d = deliveries
    delivered_day = d.delivered_date.date()
    promised_day = d.promised_date.date()
    return d.select(
        "account_id",
        "quantity_ordered",
        "quantity_delivered",
        day=promised_day,
        delivered_day=delivered_day,
        on_time=(delivered_day <= promised_day).fill_null(False),
    )


def metrics(rows: ir.Table) -> dict[str, ir.Value]:
    """Conditional aggregates over deliveries due in the lookback before each as_of."""
    last_180, prev_180 = within(rows, 0, 180), within(rows, 180, 360)
    # quantities arriving after as_of are not yet delivered at as_of (they count as zero);
    # a delivered line whose quantity is unknown is left out of both sides of the fill rate
    delivered_by = (rows.delivered_day <= rows.as_of).fill_null(False)
    fill_known = ~delivered_by | rows.quantity_delivered.notnull()
    return {
        "_d_n_180": count_if(last_180),
        "_d_on_time_180": count_if(rows.on_time & last_180),
        "_d_n_prev_180": count_if(prev_180),
        "_d_on_time_prev_180": count_if(rows.on_time & prev_180),
        "_d_ordered_180": sum_if(rows.quantity_ordered, last_180 & fill_known),
        "_d_delivered_180": sum_if(rows.quantity_delivered, last_180 & delivered_by),
    }


def finish(t: ir.Table) -> ir.Table:
    """Supply features from the delivery metrics."""
    n_180 = zero_if_null(t._d_n_180)
    on_time_180 = zero_if_null(t._d_on_time_180)
    on_time_rate = ratio(on_time_180, n_180)
    return t.mutate(
        on_time_rate_180d=on_time_rate,
        on_time_rate_trend_180d=on_time_rate
        - ratio(zero_if_null(t._d_on_time_prev_180), zero_if_null(t._d_n_prev_180)),
        fill_rate_180d=ratio(zero_if_null(t._d_delivered_180), t._d_ordered_180),
        late_deliveries_180d=n_180 - on_time_180,
    )
