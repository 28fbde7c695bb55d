"""Service features from complaints: open issues at as_of, volume, resolution, satisfaction."""

from __future__ import annotations

import ibis.expr.types as ir

from kam.features.catalog import OVERDUE_COMPLAINT_DAYS
from kam.features.families.expr import count_if, max_if, mean_if, ratio, within, zero_if_null

TABLE = "complaints"
# A complaint opened long ago may still be open at as_of, so all history is read.
LOOKBACK_DAYS: int | None = None


def events(complaints: ir.Table) -> ir.Table:
    """Complaints dated by the day they were opened."""
    c = complaints
    return c.select(
        "account_id",
        "category",
        "satisfaction",
        day=c.opened_at.date(),
        resolved_day=c.resolved_at.date(),
        is_severe=c.severity.isin(("high", "critical")).fill_null(False),
    )


def metrics(rows: ir.Table) -> dict[str, ir.Value]:
    """Conditional aggregates over complaints opened on or before each as_of.

    A resolution after as_of is unknown at as_of: such a complaint counts as open, and neither
    its resolution time nor its satisfaction score is used.
    """
    is_open = rows.resolved_day.isnull() | (rows.resolved_day > rows.as_of)
    resolved_recently = (rows.resolved_day <= rows.as_of) & (
        rows.as_of.delta(rows.resolved_day, unit="day") < 365
    )
    last_365 = within(rows, 0, 365)
    resolution_days = rows.resolved_day.delta(rows.day, unit="day").clip(lower=0)
    return {
        "_c_open": count_if(is_open),
        "_c_open_overdue": count_if(is_open & (rows.d > OVERDUE_COMPLAINT_DAYS)),
        "_c_open_max_age": max_if(rows.d, is_open),
        "_c_90": count_if(within(rows, 0, 90)),
        "_c_365": count_if(last_365),
        "_c_severe_365": count_if(rows.is_severe & last_365),
        "_c_quality_365": count_if((rows.category == "quality") & last_365),
        "_c_delivery_365": count_if((rows.category == "delivery") & last_365),
        "_c_price_365": count_if((rows.category == "price") & last_365),
        "_c_resolution_days": mean_if(resolution_days, resolved_recently),
        "_c_satisfaction": mean_if(rows.satisfaction, resolved_recently),
    }


def finish(t: ir.Table) -> ir.Table:
    """Service features from the complaint metrics."""
    n_365 = zero_if_null(t._c_365)
    return t.mutate(
        complaints_open=zero_if_null(t._c_open),
        complaints_open_overdue=zero_if_null(t._c_open_overdue),
        open_complaint_max_age_days=t._c_open_max_age,
        complaints_90d=zero_if_null(t._c_90),
        complaints_365d=n_365,
        complaints_severe_365d=zero_if_null(t._c_severe_365),
        resolution_days_mean_365d=t._c_resolution_days,
        complaint_share_quality_365d=ratio(zero_if_null(t._c_quality_365), n_365),
        complaint_share_delivery_365d=ratio(zero_if_null(t._c_delivery_365), n_365),
        complaint_share_price_365d=ratio(zero_if_null(t._c_price_365), n_365),
        satisfaction_mean_365d=t._c_satisfaction,
    )
