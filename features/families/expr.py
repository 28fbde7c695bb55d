"""Ibis expression helpers shared by the feature families."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def within(rows: ir.Table, start: int, end: int) -> ir.BooleanValue:
    """Events dated from ``start`` (inclusive) to ``end`` (exclusive) days before as_of.

    ``within(rows, 0, 90)`` is the last 90 days including as_of itself; ``within(rows, 90, 180)``
    the 90 days before those.
    """
    if start == 0:
        return rows.d < end
    return (rows.d >= start) & (rows.d < end)


# Conditional aggregates are written as aggregates of CASE expressions rather than with
# FILTER clauses (ibis's ``where=``): DuckDB runs the CASE form about twice as fast, and every
# engine accepts it.


def sum_if(value: ir.NumericValue, condition: ir.BooleanValue) -> ir.NumericScalar:
    """Sum of ``value`` over the rows meeting ``condition`` (null when there are none)."""
    return ibis.cases((condition, value)).sum()


def count_if(condition: ir.BooleanValue) -> ir.IntegerScalar:
    """Number of rows meeting ``condition``."""
    return ibis.cases((condition, 1)).count()


def min_if(value: ir.Value, condition: ir.BooleanValue) -> ir.Scalar:
    """Smallest ``value`` among the rows meeting ``condition`` (null when there are none)."""
    return ibis.cases((condition, value)).min()


def max_if(value: ir.Value, condition: ir.BooleanValue) -> ir.Scalar:
    """Largest ``value`` among the rows meeting ``condition`` (null when there are none)."""
    return ibis.cases((condition, value)).max()


def mean_if(value: ir.NumericValue, condition: ir.BooleanValue) -> ir.FloatingScalar:
    """Mean of non-null ``value`` over the rows meeting ``condition``."""
    return ibis.cases((condition, value)).mean()


@ibis.udf.agg.builtin(name="bit_or")
def _bit_or(value: int) -> int:
    """Bitwise OR of the values (the engine's own ``bit_or`` aggregate)."""
    raise NotImplementedError  # never called: the engine supplies the body


def or_if(mask: ir.IntegerValue, condition: ir.BooleanValue) -> ir.IntegerScalar:
    """Bitwise OR of ``mask`` over the rows meeting ``condition`` (null when there are none).

    Called through the engines' shared ``bit_or`` aggregate: Ibis compiles its own BitOr
    reduction for DuckDB but not for Spark.
    """
    return _bit_or(ibis.cases((condition, mask)))


def ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """``numerator / denominator``, null where the denominator is not positive."""
    return ibis.cases((denominator > 0, numerator.cast("float64") / denominator))


def symmetric_change(now: ir.NumericValue, before: ir.NumericValue) -> ir.FloatingValue:
    """(now - before) / (abs(now) + abs(before)) in -1..1; null when both are zero."""
    scale = now.abs() + before.abs()
    return ibis.cases((scale > 0, (now - before).cast("float64") / scale))


def zero_if_null(value: ir.NumericValue) -> ir.NumericValue:
    """Zero for accounts without events in the window (sums over no rows are null)."""
    return value.fill_null(0)


def mean_gap(
    oldest: ir.NumericValue, newest: ir.NumericValue, days: ir.IntegerValue
) -> ir.FloatingValue:
    """Average days between distinct event days, from the oldest and newest day's distance."""
    return ibis.cases((days >= 2, (oldest - newest).cast("float64") / (days - 1)))


def next_gap(events: ir.Table, keys: list[str]) -> ir.IntegerValue:
    """Days from each event to the account's next event with the same ``keys`` (null if none).

    With it, distinct values in a window are counted with plain conditional counts (see
    :func:`distinct_within`) instead of ``COUNT(DISTINCT ...)``, which is many times slower
    over the as_of join's rows.
    """
    window = ibis.window(group_by=["account_id", *keys], order_by="day")
    return events.day.lead().over(window).delta(events.day, unit="day")


def distinct_within(
    rows: ir.Table, key: ir.Value, gap: ir.IntegerValue, start: int, end: int
) -> ir.IntegerValue:
    """Distinct non-null ``key`` values among events ``start`` to ``end`` days before as_of.

    Each value is counted on its last event in the window: the one whose next event with the
    same value (``gap`` days later, from :func:`next_gap`) falls after the window's end.
    """
    last_in_window = gap.isnull() | (rows.d - gap < start)
    return count_if(within(rows, start, end) & key.notnull() & last_in_window)


def bit_count(mask: ir.IntegerValue, bits: int) -> ir.IntegerValue:
    """Set bits among the lowest ``bits`` of ``mask``.

    Spelled out bit by bit because engines share no popcount function; masks here hold a
    handful of categories, so the expression stays short.
    """
    total = ibis.literal(0, "int64")
    for j in range(max(bits, 0)):
        total = total + ((mask >> j) & 1)
    return total
