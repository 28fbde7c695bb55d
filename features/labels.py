"""Labels of a snapshot: next-horizon value and defection, from orders after as_of only.

- ``label_value``: net revenue in (as_of, as_of + horizon].
- ``label_prior_value``: net revenue in the equally long window before, (as_of - horizon, as_of].
- ``label_defection``: 1 when ``label_value < (1 - decline) * label_prior_value``, and also when
  an account with positive prior revenue bought nothing (net) in the horizon, so that
  ``decline=1.0`` reads "stopped buying entirely" rather than "returned more than it bought";
  with ``decline=1.0`` every account that buys nothing in the horizon has defected, whatever it
  bought before (population ``ever``); else 0.
- ``label_observed``: the whole horizon lies on or before the end of the data. Where it does not,
  all labels are null: a partly observed window would pass for a decline.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from kam.features.families.expr import sum_if

LABELS = ("label_value", "label_prior_value", "label_defection", "label_observed")


def prior_value_metric(rows: ir.Table) -> ir.Value:
    """Revenue in (as_of - horizon, as_of], over order rows joined to the as_of dates."""
    return sum_if(rows.revenue, rows.day > rows.prior_start)


def horizon_value(orders: ir.Table, dates: ir.Table) -> ir.Table:
    """Net revenue per account in (as_of, as_of + horizon] for each as_of date.

    Parameters
    ----------
    orders
        Order lines (``account_id``, ``order_date``, ``revenue``).
    dates
        The as_of dates with their ``label_end``.

    Returns
    -------
    ibis.Table
        ``account_id``, ``as_of``, ``_label_value``; accounts without orders in the horizon are
        absent (their value is zero).
    """
    lines = orders.mutate(day=orders.order_date.date())
    days = lines.group_by(["account_id", "day"]).aggregate(revenue=lines.revenue.sum())
    rows = days.join(dates, [days.day > dates.as_of, days.day <= dates.label_end])
    return rows.group_by(["account_id", "as_of"]).aggregate(_label_value=rows.revenue.sum())


def finish(t: ir.Table, decline: float) -> ir.Table:
    """The label columns, from ``_label_value``, ``_prior_value`` and ``observed``."""
    value = t._label_value.fill_null(0.0)
    prior = t._prior_value.fill_null(0.0)
    # "stopped buying" also covers an account with nothing before (population 'ever'): with
    # decline 1.0 any account that buys nothing (net) in the horizon has defected
    stopped = (value <= 0) & ((prior > 0) | ibis.literal(decline >= 1.0))
    defected = (value < (1.0 - decline) * prior) | stopped
    observed = t.observed
    return t.mutate(
        label_value=ibis.cases((observed, value)),
        label_prior_value=ibis.cases((observed, prior)),
        label_defection=ibis.cases((observed, defected.cast("int8"))),
        label_observed=observed,
    )
