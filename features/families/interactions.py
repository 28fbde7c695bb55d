"""Relationship features from the contact history."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from kam.features.catalog import CONTACT_LOOKBACK_DAYS
from kam.features.contract import CONTACT_ROLES
from kam.features.families.expr import (
    bit_count,
    count_if,
    distinct_within,
    max_if,
    mean_gap,
    mean_if,
    min_if,
    next_gap,
    or_if,
    symmetric_change,
    within,
    zero_if_null,
)

TABLE = "interactions"
LOOKBACK_DAYS: int | None = CONTACT_LOOKBACK_DAYS


def events(interactions: ir.Table) -> ir.Table:
    """Interactions with the flags the relationship metrics count.

    Each row carries the days to the account's next interaction with the same contact and the
    same rep, for counting distinct people per window (see ``expr.next_gap``), and its buyer
    role as a bit, so distinct roles are a bitwise OR.
    """
    i = interactions
    executive = (i.our_seniority == "executive") | (i.contact_seniority == "executive")
    e = i.select(
        "account_id",
        "contact_id",
        "contact_role",
        "rep_id",
        "sentiment",
        day=i.occurred_at.date(),
        is_visit=(i.channel == "visit").fill_null(False),
        is_executive=executive.fill_null(False),
        is_economic=(i.contact_role == "economic").fill_null(False),
        role_bit=ibis.cases(
            *((i.contact_role == role, 1 << k) for k, role in enumerate(CONTACT_ROLES))
        ).cast("int64"),
    )
    return e.mutate(contact_gap=next_gap(e, ["contact_id"]), rep_gap=next_gap(e, ["rep_id"]))


def metrics(rows: ir.Table) -> dict[str, ir.Value]:
    """Conditional aggregates over the interactions of the lookback before each as_of."""
    last_180, prev_180 = within(rows, 0, 180), within(rows, 180, 360)
    visit_365 = rows.is_visit & within(rows, 0, 365)

    def distinct(key: ir.Value, gap: ir.IntegerValue, start: int, end: int) -> ir.IntegerValue:
        return distinct_within(rows, key, gap, start, end)

    return {
        "_i_n_90": count_if(within(rows, 0, 90)),
        "_i_n_prev_90": count_if(within(rows, 90, 180)),
        "_i_contacts_180": distinct(rows.contact_id, rows.contact_gap, 0, 180),
        "_i_contacts_360": distinct(rows.contact_id, rows.contact_gap, 0, 360),
        "_i_roles_180": or_if(rows.role_bit, last_180),
        "_i_economic_newest": min_if(rows.d, rows.is_economic),
        "_i_exec_newest": min_if(rows.d, rows.is_executive),
        "_i_exec_180": count_if(rows.is_executive & last_180),
        "_i_visits_180": count_if(rows.is_visit & last_180),
        "_i_visit_newest": min_if(rows.d, rows.is_visit),
        "_i_visit_oldest_365": max_if(rows.d, visit_365),
        "_i_visits_365": count_if(visit_365),
        "_i_sentiment_180": mean_if(rows.sentiment, last_180),
        "_i_sentiment_prev_180": mean_if(rows.sentiment, prev_180),
        "_i_reps_180": distinct(rows.rep_id, rows.rep_gap, 0, 180),
        "_i_reps_prev_180": distinct(rows.rep_id, rows.rep_gap, 180, 360),
        "_i_reps_360": distinct(rows.rep_id, rows.rep_gap, 0, 360),
    }


def finish(t: ir.Table) -> ir.Table:
    """Relationship features; contact recencies capped at the lookback when none happened."""
    n_90 = zero_if_null(t._i_n_90)
    contacts_180 = zero_if_null(t._i_contacts_180)
    reps_180 = zero_if_null(t._i_reps_180)
    reps_360 = zero_if_null(t._i_reps_360)
    cap = CONTACT_LOOKBACK_DAYS
    return t.mutate(
        interactions_90d=n_90,
        interactions_trend_90d=symmetric_change(n_90, zero_if_null(t._i_n_prev_90)),
        contacts_180d=contacts_180,
        contacts_dropped_180d=zero_if_null(t._i_contacts_360) - contacts_180,
        contact_roles_180d=bit_count(zero_if_null(t._i_roles_180), len(CONTACT_ROLES)),
        economic_buyer_recency_days=t._i_economic_newest.fill_null(cap),
        executive_contact_recency_days=t._i_exec_newest.fill_null(cap),
        executive_contacts_180d=zero_if_null(t._i_exec_180),
        visits_180d=zero_if_null(t._i_visits_180),
        visit_recency_days=t._i_visit_newest.fill_null(cap),
        visit_gap_days_365d=mean_gap(
            t._i_visit_oldest_365, t._i_visit_newest, zero_if_null(t._i_visits_365)
        ),
        sentiment_mean_180d=t._i_sentiment_180,
        sentiment_trend_180d=t._i_sentiment_180 - t._i_sentiment_prev_180,
        reps_180d=reps_180,
        reps_new_180d=reps_360 - zero_if_null(t._i_reps_prev_180),
        reps_dropped_180d=reps_360 - reps_180,
    )
