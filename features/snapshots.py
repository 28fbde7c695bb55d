"""Point-in-time account snapshots: features at as_of dates and labels over the next horizon.

One snapshot row is an (account, as_of) pair. Features read only events dated on or before
as_of; labels read only orders dated in (as_of, as_of + horizon]. as_of is a calendar day:
every event stamped on that day, whatever its time, is known at as_of (the day's books are
closed), and none stamped on a later day is.

The whole table is one Ibis expression: each input table's events are range-joined once to the
as_of dates (orders once more, for the labels) and reduced with conditional aggregates to one
row per (account, as_of), and those rows are joined onto the population. Nothing is computed
row by row in Python, so the same code runs on DuckDB or, unchanged, on Spark through Ibis's
pyspark backend (any Ibis SQL backend with window functions and a ``bit_or`` aggregate).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd

from kam.features import labels
from kam.features.atomic import atomic_path
from kam.features.catalog import Feature, available
from kam.features.errors import DataContractError, EmptyWindowError
from kam.features.families import accounts, btyd, complaints, deliveries, interactions, orders
from kam.features.periods import Period, format_window, parse_window
from kam.features.store import input_tables

KEYS = ["account_id", "as_of"]
# Event tables that add features to an existing population (orders define the population).
_EVENT_FAMILIES = (interactions, complaints, deliveries)
_DATES_SCHEMA = ibis.schema(
    {
        "as_of": "date",
        "activity_start": "date",
        "history_start": "date",
        "prior_start": "date",
        "label_end": "date",
        "observed": "boolean",
    }
)

AsOf = date | str | pd.Timestamp


def data_start(con: Any) -> pd.Timestamp:
    """The day of the first order in the store: the start of the data."""
    orders = con.table("orders")
    return pd.Timestamp(orders.order_date.min().execute()).normalize()


def data_end(con: Any) -> pd.Timestamp:
    """The latest event date in the store: the end of the data.

    The end recorded by the latest ingestion run (table ``ingest_runs``, column ``data_end``) is
    used when present, since an extract can end after its last order; otherwise the latest
    order date.

    Parameters
    ----------
    con
        Ibis connection to the store.

    Returns
    -------
    pandas.Timestamp
        The end of the data (a day; labels are observed only up to it).

    Raises
    ------
    EmptyWindowError
        When the store holds no orders.
    """
    if "ingest_runs" in con.list_tables():
        runs = con.table("ingest_runs")
        if "data_end" in runs.columns:
            order = [c for c in ("finished_at", "started_at", "run_at", "ingested_at") if c in
                     runs.columns]
            latest = runs.filter(runs.data_end.notnull())
            latest = latest.order_by([ibis.desc(c) for c in order]) if order else latest.order_by(
                ibis.desc("data_end")
            )
            value = latest.limit(1).data_end.to_pandas()
            if len(value) and not pd.isna(value.iloc[0]):
                return pd.Timestamp(value.iloc[0]).normalize()
    value = con.table("orders").order_date.max().to_pandas()
    if value is None or pd.isna(value):
        raise EmptyWindowError("the store holds no orders, so the data has no end date")
    return pd.Timestamp(value).normalize()


def as_of_range(start: AsOf, end: AsOf, every: Period | str) -> list[pd.Timestamp]:
    """as_of dates from ``start`` to ``end`` (inclusive) spaced by ``every``.

    Each date is ``start`` plus a whole number of periods, so monthly dates from a month end stay
    on month ends (31 Jan, 28 Feb, 31 Mar) instead of drifting.

    Parameters
    ----------
    start, end
        First and last allowed date.
    every
        Spacing, e.g. ``Period(1, "month")`` or ``"1mo"``.

    Returns
    -------
    list of pandas.Timestamp
        The dates, oldest first.
    """
    first, last = _day(start), _day(end)
    if last < first:
        raise ValueError(f"as_of range ends ({last.date()}) before it starts ({first.date()})")
    step = Period.parse(every)
    dates = [first]
    k = 1
    while (nxt := first + Period(step.count * k, step.unit).offset()) <= last:
        dates.append(nxt)
        k += 1
    return dates


def snapshot_table(
    con: Any,
    as_of: Sequence[AsOf],
    *,
    horizon: Period | str = Period(365, "day"),
    activity_window: Period | str | None = Period(365, "day"),
    decline: float = 0.5,
) -> ir.Table:
    """The snapshot table as a lazy Ibis expression (see :func:`build_snapshots`).

    The end of the data is read from the store to validate the dates and mark which labels are
    observed; everything else stays lazy, so the expression can be executed, written to another
    table or inspected as SQL.

    Returns
    -------
    ibis.Table
        Columns ``account_id``, ``as_of``, the available catalog features in catalog order, then
        ``label_value``, ``label_prior_value``, ``label_defection``, ``label_observed``.
    """
    horizon = Period.parse(horizon)
    activity = parse_window(activity_window)
    if not 0 < decline <= 1:
        raise ValueError(f"decline must be in (0, 1], got {decline}")
    tables = input_tables(con)
    if "orders" not in tables:
        raise DataContractError("the store has no orders table: run `kam ingest` first")
    dates = ibis.memtable(
        _as_of_dates(as_of, horizon, activity, data_end(con)), schema=_DATES_SCHEMA
    )

    keys = _account_keys(con)
    order_lines = _keyed(con.table("orders"), keys)
    cats = orders.categories(con.table("orders"))
    order_events = orders.events(order_lines, cats)
    # an "ever" population needs every account's orders however old; otherwise only the
    # features' and the prior label window's history is joined
    history_start = None if activity is None else dates.history_start
    rows = _rows_before(order_events, dates, history_start)
    spend = rows.group_by(KEYS).aggregate(
        **orders.metrics(rows, cats),
        _last_day=rows.day.max(),
        _prior_value=labels.prior_value_metric(rows),
    )
    t = spend.join(dates, "as_of").join(orders.first_days(order_lines), "account_id")
    # the population: accounts with an order in (as_of - activity_window, as_of]
    t = t.filter(t.activity_start.isnull() | (t._last_day > t.activity_start))
    t = accounts.spend_standing(orders.finish(t, cats))
    t = accounts.season(t)

    for family in _EVENT_FAMILIES:
        if family.TABLE not in tables:
            continue
        events = family.events(_keyed(con.table(family.TABLE), keys))
        lookback = family.LOOKBACK_DAYS
        start = None if lookback is None else dates.as_of - ibis.interval(days=lookback)
        rows = _rows_before(events, dates, start)
        metrics = rows.group_by(KEYS).aggregate(**family.metrics(rows))
        t = family.finish(_left_join(t, metrics))

    t = labels.finish(_left_join(t, labels.horizon_value(order_lines, dates)), decline)
    ids = keys.select("account_key", _account_id="account_id")
    t = t.join(ids, t.account_id == ids.account_key)
    t = t.mutate(account_id=t._account_id)
    if accounts.TABLE in tables:
        t = accounts.attach(t, con.table(accounts.TABLE))
    # the BG/NBD features are fitted after the query (btyd.attach), not computed in it
    names = [f.name for f in available(tables) if f.name not in btyd.FEATURES]
    t = t.mutate(as_of=t.as_of.cast("timestamp"))
    return t.select("account_id", "as_of", *names, *labels.LABELS)


def build_snapshots(
    con: Any,
    as_of: Sequence[AsOf],
    *,
    horizon: Period | str = Period(365, "day"),
    activity_window: Period | str | None = Period(365, "day"),
    decline: float = 0.5,
) -> pd.DataFrame:
    """Point-in-time features and labels for every active account at each as_of date.

    Parameters
    ----------
    con
        Ibis connection to the store holding the clean input tables.
    as_of
        Snapshot dates (days), none after the end of the data.
    horizon
        Label window after as_of, e.g. ``Period(365, "day")`` or ``"26w"``, ``"6mo"``.
    activity_window
        Population: accounts with an order in (as_of - activity_window, as_of]; ``None`` (or
        ``"ever"``) takes every account with an order on or before as_of.
    decline
        Defection threshold: value below ``(1 - decline)`` times the prior window's revenue.

    Returns
    -------
    pandas.DataFrame
        One row per (account_id, as_of), sorted by as_of then account_id: the ids, the catalog
        features available for the tables present (in catalog order), then the labels
        ``label_value``, ``label_prior_value``, ``label_defection`` (nullable Int8) and
        ``label_observed`` (bool). Labels are null where the horizon is not fully observed.

    Raises
    ------
    EmptyWindowError
        When an as_of lies after the end of the data, or has no active account.
    DataContractError
        When the store has no orders table.
    """
    expr = snapshot_table(
        con, as_of, horizon=horizon, activity_window=activity_window, decline=decline
    )
    frame = con.execute(expr)
    wanted = {_day(a) for a in as_of}
    found = set(pd.to_datetime(frame["as_of"]).unique())
    empty = sorted(wanted - found)
    if empty:
        window = format_window(parse_window(activity_window))
        listed = ", ".join(str(d.date()) for d in empty)
        raise EmptyWindowError(
            f"no account has an order in the activity window ({window}) before as_of {listed}: "
            "choose a later as_of or a longer activity window"
        )
    features = available(input_tables(con))
    frame = btyd.attach(con, frame, Period.parse(horizon).approx_days())
    frame = frame[["account_id", "as_of", *(f.name for f in features), *labels.LABELS]]
    return _typed(frame, features).sort_values(KEYS, ignore_index=True)


def _typed(frame: pd.DataFrame, features: list[Feature]) -> pd.DataFrame:
    """Columns typed by the catalog's kinds, whatever the engine returned for all-null ones."""
    types: dict[str, Literal["float64", "int64", "str"]] = {
        "number": "float64",
        "count": "int64",
        "category": "str",
    }
    columns: dict[str, pd.Series] = {f.name: frame[f.name].astype(types[f.kind]) for f in features}
    columns["label_value"] = frame["label_value"].astype("float64")
    columns["label_prior_value"] = frame["label_prior_value"].astype("float64")
    columns["label_defection"] = frame["label_defection"].astype("Int8")
    columns["label_observed"] = frame["label_observed"].astype(bool)
    # engines return their own time resolution (DuckDB microseconds, Spark nanoseconds)
    columns["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[us]")
    return frame.assign(**columns)


def write_snapshots(frame: pd.DataFrame, out: Path | str) -> None:
    """Write snapshots to ``out``: CSV when the name ends in ``.csv``, else Parquet.

    Parameters
    ----------
    frame
        Snapshots from :func:`build_snapshots`.
    out
        Target file; its folder is created when missing.
    """
    path = Path(out)
    with atomic_path(path) as temporary:  # a failed write leaves the previous file
        if path.suffix.lower() == ".csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)


def _day(value: AsOf) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise ValueError(f"cannot read as_of date {value!r}")
    return stamp.normalize()


def _as_of_dates(
    as_of: Sequence[AsOf], horizon: Period, activity: Period | None, end: pd.Timestamp
) -> pd.DataFrame:
    """One row per as_of with the window bounds that depend on calendar periods."""
    if isinstance(as_of, str | date | pd.Timestamp):
        as_of = [as_of]
    days = sorted({_day(a) for a in as_of})
    if not days:
        raise ValueError("no as_of dates given")
    late = [d for d in days if d > end]
    if late:
        raise EmptyWindowError(
            f"as_of {', '.join(str(d.date()) for d in late)} is after the end of the data "
            f"({end.date()}): events after that are unknown; choose an as_of on or before it"
        )
    label_ends = [d + horizon.offset() for d in days]
    order_lookback = pd.DateOffset(days=orders.LOOKBACK_DAYS)

    def history_start(day: pd.Timestamp) -> date | None:
        if activity is None:
            return None
        return min(day - order_lookback, day - horizon.offset(), day - activity.offset()).date()

    return pd.DataFrame(
        {
            "as_of": [d.date() for d in days],
            "activity_start": [
                None if activity is None else (d - activity.offset()).date() for d in days
            ],
            "history_start": [history_start(d) for d in days],
            "prior_start": [(d - horizon.offset()).date() for d in days],
            "label_end": [e.date() for e in label_ends],
            "observed": [e <= end for e in label_ends],
        }
    )


def _rows_before(events: ir.Table, dates: ir.Table, start: ir.DateValue | None) -> ir.Table:
    """Each event joined to every as_of on or after its day (and after ``start``), with ``d``.

    ``d`` is the number of days from the event's day to as_of (0 = on as_of); the families'
    windows are ranges of ``d``.
    """
    conditions = [events.day <= dates.as_of]
    if start is not None:
        conditions.append(events.day > start)
    rows = events.join(dates, conditions)
    return rows.mutate(d=rows.as_of.delta(rows.day, unit="day"))


def _account_keys(con: Any) -> ir.Table:
    """An integer key per account with orders, numbered in account_id order.

    The as_of joins multiply event rows many times over; carrying and grouping by a small
    integer instead of the account_id string makes them about twice as fast.
    """
    ids = con.table("orders").select("account_id").distinct()
    return ids.mutate(account_key=ibis.row_number().over(order_by="account_id"))


def _keyed(table: ir.Table, keys: ir.Table) -> ir.Table:
    """``table`` with ``account_id`` holding the account's integer key (see _account_keys)."""
    joined = table.join(keys, "account_id")
    return joined.mutate(account_id=joined.account_key).drop("account_key")


def _left_join(t: ir.Table, metrics: ir.Table) -> ir.Table:
    return t.left_join(metrics, KEYS).drop("account_id_right", "as_of_right")
