"""Every read and write of the store that serving does.

The store (a DuckDB file, or another Ibis backend, opened with
:func:`kam.features.store.connect`) holds the input tables and the ``scores`` table. Serving
writes the scores of each as_of (:func:`write_scores`), loads each account's latest score
(:func:`read_latest_scores`), reads the account master and the actions history for scoring and
effect estimates, and, for an account's page, its score history and last year's activity
(:func:`read_account_store`). The point-in-time feature snapshots are read by
:mod:`kam.features`, not here.

DuckDB stores are read by the service through their serving snapshot
(:mod:`kam.serving.snapshot`), which :func:`write_scores` rewrites.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from kam.features.store import connect
from kam.serving.record import RECORD
from kam.serving.snapshot import database_file, open_for_serving, snapshot_of, write_snapshot

logger = logging.getLogger(__name__)

SCORES_TABLE = "scores"
# The scores table, in column order, with its store types (the API and the web page read it).
SCORES_SCHEMA: dict[str, str] = RECORD.store_schema
SCORE_COLUMNS: tuple[str, ...] = RECORD.names
MASTER_COLUMNS: tuple[str, ...] = RECORD.master_columns
ACTIVITY_DAYS = 365
HISTORY_POINTS = 24
# the input tables an account page reads (:func:`_activity`); copied into the snapshot
SNAPSHOT_INPUTS = ("orders", "interactions", "complaints", "actions")
EFFECTS_TABLE = "action_effects"
PLAN_TABLE = "plan"
# what the service reads, so what the serving snapshot holds
SNAPSHOT_TABLES = (SCORES_TABLE, *SNAPSHOT_INPUTS, EFFECTS_TABLE, PLAN_TABLE)


class ScoresNotLoadedError(RuntimeError):
    """The scores table could not be read (no store, no table, or no rows)."""


def none_if_missing(value: Any) -> Any:
    """None for pandas' missing values (NaN, NaT, None); any other value as it is."""
    if value is None:
        return None
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):  # a list or another container: not missing
        return value


# ------------------------------------------------------------------------------------------------
# The scores table
# ------------------------------------------------------------------------------------------------
def write_scores(con_or_url: Any, frame: pd.DataFrame) -> int:
    """Store ``frame`` in the ``scores`` table, replacing the rows of its as_of dates.

    Rows of other as_of dates stay, so the table holds each account's score history. In a
    DuckDB store, the serving snapshot is then rewritten (:func:`write_snapshot`).

    Parameters
    ----------
    con_or_url
        Ibis connection to the store, or its URL (``duckdb:///path``).
    frame
        Rows from :func:`kam.serving.scoring.batch.score_accounts` (columns
        :data:`SCORE_COLUMNS`).

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    kam.serving.snapshot.SnapshotError
        When the rows are stored but the serving snapshot could not be written.
    """
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"scores frame lacks columns {missing}")
    con = connect(con_or_url) if isinstance(con_or_url, str) else con_or_url
    rows = frame[list(SCORE_COLUMNS)].copy()
    days = sorted({pd.Timestamp(d).date() for d in rows["as_of"].dropna()})
    raw = getattr(con, "con", None)
    if getattr(con, "name", "") == "duckdb" and raw is not None:
        _write_duckdb(raw, rows, days)
        refresh_snapshot(con)
    else:  # any other Ibis backend: rewrite the table without the replaced as_of rows
        kept = None
        if SCORES_TABLE in con.list_tables():
            old = con.table(SCORES_TABLE)
            kept = con.execute(old.filter(~old.as_of.cast("date").isin(days)))
        combined = rows if kept is None or kept.empty else pd.concat([kept, rows])
        con.create_table(SCORES_TABLE, combined.reset_index(drop=True), overwrite=True)
    return len(rows)


def refresh_snapshot(con: Any) -> None:
    """Rewrite the serving snapshot of a DuckDB store file (other stores have none)."""
    raw = getattr(con, "con", None)
    if getattr(con, "name", "") != "duckdb" or raw is None:
        return
    store = database_file(raw)
    if store is not None:
        write_snapshot(raw, snapshot_of(store), SNAPSHOT_TABLES)


def _write_duckdb(raw: Any, rows: pd.DataFrame, days: Sequence[Any]) -> None:
    """Replace the rows of ``days`` in one transaction, creating the typed table if needed."""
    columns = ", ".join(f'"{c}" {t}' for c, t in SCORES_SCHEMA.items())
    selected = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in SCORES_SCHEMA.items())
    raw.execute(f"CREATE TABLE IF NOT EXISTS {SCORES_TABLE} ({columns})")
    raw.register("_kam_new_scores", rows)
    try:
        raw.execute("BEGIN TRANSACTION")
        try:
            # a table written before a field joined the record gets its column (null on the
            # older rows); inserting by name, its columns may stand in another order
            present = {r[0] for r in raw.execute(f"DESCRIBE {SCORES_TABLE}").fetchall()}
            for c, t in SCORES_SCHEMA.items():
                if c not in present:
                    raw.execute(f'ALTER TABLE {SCORES_TABLE} ADD COLUMN "{c}" {t}')
            if days:
                raw.execute(
                    f"DELETE FROM {SCORES_TABLE} WHERE as_of IN ({', '.join('?' for _ in days)})",
                    list(days),
                )
            names = ", ".join(f'"{c}"' for c in SCORES_SCHEMA)
            raw.execute(
                f"INSERT INTO {SCORES_TABLE} ({names}) SELECT {selected} FROM _kam_new_scores"
            )
            raw.execute("COMMIT")
        except Exception:
            raw.execute("ROLLBACK")
            raise
    finally:
        raw.unregister("_kam_new_scores")


def read_scores(con_or_url: Any, *, as_of: Any = None) -> pd.DataFrame:
    """The stored scores of one as_of (the latest when None), sorted by rank.

    Parameters
    ----------
    con_or_url
        Ibis connection to the store, or its URL (``duckdb:///path``).
    as_of
        The as_of date to read; the latest stored when None.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SCORE_COLUMNS`; empty when nothing is stored.
    """
    con = connect(con_or_url) if isinstance(con_or_url, str) else con_or_url
    if SCORES_TABLE not in con.list_tables():
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    table = con.table(SCORES_TABLE)
    if as_of is None:
        latest = table.as_of.max().to_pandas()
        if latest is None or pd.isna(latest):
            return pd.DataFrame(columns=list(SCORE_COLUMNS))
        as_of = latest
    day = pd.Timestamp(as_of).date()
    frame = con.execute(table.filter(table.as_of.cast("date") == day).order_by("rank"))
    return frame[list(SCORE_COLUMNS)]


def read_latest_scores(store_url: str) -> pd.DataFrame:
    """Each account's rows at its latest as_of, from the serving snapshot (or the store).

    Parameters
    ----------
    store_url
        The store's URL; its snapshot, else the store, is opened read-only, so a running
        ``kam score`` is not disturbed.

    Returns
    -------
    pandas.DataFrame
        The scores table's rows at each account's own latest as_of, in no particular order.

    Raises
    ------
    ScoresNotLoadedError
        When there is no store, no scores table, or the store cannot be read.
    """
    try:
        con, url = open_for_serving(store_url)
    except Exception as err:  # any backend's own error: the message is what matters here
        raise ScoresNotLoadedError(f"cannot open the store {store_url}: {err}") from err
    try:
        if SCORES_TABLE not in con.list_tables():
            raise ScoresNotLoadedError(
                f"the store {store_url} has no {SCORES_TABLE} table: run `kam score`"
            )
        table = con.table(SCORES_TABLE)
        newest = table.as_of.max().over(group_by=table.account_id)
        return con.execute(table.filter(table.as_of == newest))
    except ScoresNotLoadedError:
        raise
    except Exception as err:  # a table written by an older release, a locked file, ...
        raise ScoresNotLoadedError(f"cannot read scores from {url}: {err}") from err
    finally:
        con.disconnect()


# ------------------------------------------------------------------------------------------------
# Input tables read for scoring and for the effect estimates
# ------------------------------------------------------------------------------------------------
def read_master(con: Any) -> pd.DataFrame | None:
    """The account master: ``account_id`` and those of :data:`MASTER_COLUMNS` the store has.

    Parameters
    ----------
    con
        Ibis connection to the store.

    Returns
    -------
    pandas.DataFrame or None
        One row per stored account row; None when the store has no ``accounts`` table.
    """
    if "accounts" not in con.list_tables():
        return None
    table = con.table("accounts")
    columns = ["account_id", *(c for c in MASTER_COLUMNS if c in table.columns)]
    return con.execute(table.select(*columns))


def read_action_history(con: Any) -> pd.DataFrame | None:
    """Every retention action taken: ``account_id``, ``taken_at`` and ``action``.

    Parameters
    ----------
    con
        Ibis connection to the store.

    Returns
    -------
    pandas.DataFrame or None
        One row per action taken; None when the store has no ``actions`` table.
    """
    if "actions" not in con.list_tables():
        return None
    return con.execute(con.table("actions").select("account_id", "taken_at", "action"))


def earliest(con: Any, table: str, column: str) -> Any:
    """The smallest value of ``column`` in the store's ``table``: None or NaT when it is empty."""
    return con.table(table)[column].min().to_pandas()


# ------------------------------------------------------------------------------------------------
# One account's page: its score history and the last year's activity
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Activity:
    """An account's orders, contacts, complaints and retention actions in the last year."""

    start: date
    end: date
    orders: int
    revenue: float
    last_order: date | None
    interactions: int | None = None
    contacts: int | None = None
    visits: int | None = None
    last_executive_contact: date | None = None
    complaints_opened: int | None = None
    open_complaints: tuple[Mapping[str, Any], ...] | None = None
    actions_taken: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True)
class StoreView:
    """What could be read from the store for an account page, or why nothing could."""

    history: tuple[Mapping[str, Any], ...] = ()
    activity: Activity | None = None
    problem: str | None = None


def _day_of(value: Any) -> date | None:
    value = none_if_missing(value)
    return None if value is None else pd.Timestamp(value).date()


def _open_complaint(row: Mapping[Any, Any], as_of: date) -> dict[str, Any]:
    opened_at = _day_of(row.get("opened_at"))
    return {
        "opened_at": opened_at,
        "category": none_if_missing(row.get("category")),
        "severity": none_if_missing(row.get("severity")),
        "days_open": None if opened_at is None else (as_of - opened_at).days,
    }


def _scalar(con: Any, expr: Any) -> Any:
    return none_if_missing(con.execute(expr))


def read_account_store(store_url: str, account_id: str, as_of: date) -> StoreView:
    """The account's score history and last-year activity, from the serving snapshot (or the
    store), read-only.

    Events count when their calendar day lies in ``(as_of - 365 days, as_of]``, as in the
    snapshots. A store that cannot be read gives a view with ``problem`` set, not an error:
    the page still shows the score held in memory.

    Parameters
    ----------
    store_url
        The store's URL.
    account_id
        The account.
    as_of
        The date of the account's score in memory: the activity window ends on it.

    Returns
    -------
    StoreView
        Up to :data:`HISTORY_POINTS` past scores (oldest first) and the activity, or why
        they could not be read.
    """
    try:
        con, _ = open_for_serving(store_url)
    except Exception as err:  # any backend's error (a writer holding the file, no file)
        logger.warning("account page: cannot open the store %s: %s", store_url, err)
        return StoreView(problem=f"the store cannot be read right now ({err})")
    try:
        tables = set(con.list_tables())
        history = _history(con, account_id) if SCORES_TABLE in tables else ()
        activity = _activity(con, tables, account_id, as_of)
        return StoreView(history=history, activity=activity)
    except Exception as err:  # a table of an older release, a locked file, ...
        logger.warning("account page: cannot read the store %s: %s", store_url, err)
        return StoreView(problem=f"the store cannot be read right now ({err})")
    finally:
        con.disconnect()


def _history(con: Any, account_id: str) -> tuple[Mapping[str, Any], ...]:
    """The account's latest scores, one per as_of, oldest first."""
    table = con.table(SCORES_TABLE)
    mine = table.filter(table.account_id == account_id).select(
        "as_of", "defection_probability", "value", "value_at_risk", "tier"
    )
    frame = con.execute(mine.order_by(mine.as_of.desc()).limit(HISTORY_POINTS))
    frame = frame.drop_duplicates("as_of").iloc[::-1]
    return tuple(
        {k: none_if_missing(v) for k, v in record.items()} for record in frame.to_dict("records")
    )


def _activity(con: Any, tables: set[str], account_id: str, as_of: date) -> Activity | None:
    """The account's last year in the input tables the store has; None without orders."""
    if "orders" not in tables:
        return None
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1)  # the whole as_of day counts
    start = end - pd.Timedelta(days=ACTIVITY_DAYS)

    def window(table: Any, column: str) -> Any:
        mine = table.filter(table.account_id == account_id)
        return mine.filter((mine[column] >= start) & (mine[column] < end))

    orders = window(con.table("orders"), "order_date")
    counted = con.execute(
        orders.aggregate(n=orders.count(), revenue=orders.revenue.sum())
    ).iloc[0]
    all_orders = con.table("orders")
    mine = all_orders.filter(
        (all_orders.account_id == account_id) & (all_orders.order_date < end)
    )
    found: dict[str, Any] = {
        "start": start.date(),
        "end": as_of,
        "orders": int(none_if_missing(counted["n"]) or 0),
        "revenue": float(none_if_missing(counted["revenue"]) or 0.0),
        "last_order": _day_of(_scalar(con, mine.order_date.max())),
    }
    if "interactions" in tables:
        table = con.table("interactions")
        recent = window(table, "occurred_at")
        found["interactions"] = int(_scalar(con, recent.count()) or 0)
        if "contact_id" in table.columns:
            found["contacts"] = int(_scalar(con, recent.contact_id.nunique()) or 0)
        if "channel" in table.columns:
            found["visits"] = int(
                _scalar(con, recent.filter(recent.channel == "visit").count()) or 0
            )
        senior = []
        if "contact_seniority" in table.columns:
            senior.append(table.contact_seniority == "executive")
        if "our_seniority" in table.columns:
            senior.append(table.our_seniority == "executive")
        if senior:
            either = senior[0] if len(senior) == 1 else senior[0] | senior[1]
            executive = table.filter(
                (table.account_id == account_id) & (table.occurred_at < end) & either
            )
            found["last_executive_contact"] = _day_of(_scalar(con, executive.occurred_at.max()))
    if "complaints" in tables:
        table = con.table("complaints")
        found["complaints_opened"] = int(_scalar(con, window(table, "opened_at").count()) or 0)
        opened = table.filter((table.account_id == account_id) & (table.opened_at < end))
        if "resolved_at" in table.columns:
            still_open = opened.filter(opened.resolved_at.isnull() | (opened.resolved_at >= end))
        else:
            still_open = opened
        wanted = [c for c in ("opened_at", "category", "severity") if c in table.columns]
        frame = con.execute(still_open.select(*wanted).order_by("opened_at"))
        found["open_complaints"] = tuple(
            _open_complaint(r, as_of) for r in frame.to_dict("records")
        )
    if "actions" in tables:
        table = con.table("actions")
        taken = window(table, "taken_at")
        wanted = [c for c in ("taken_at", "action", "owner") if c in table.columns]
        frame = con.execute(taken.select(*wanted).order_by(taken.taken_at.desc()).limit(8))
        found["actions_taken"] = tuple(
            {
                "taken_at": _day_of(r.get("taken_at")),
                "action": none_if_missing(r.get("action")),
                "owner": none_if_missing(r.get("owner")),
            }
            for r in frame.to_dict("records")
        )
    return Activity(**found)
