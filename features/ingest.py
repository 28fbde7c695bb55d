"""Validated ingestion: input files in, clean contract tables in the store, bad rows set aside.

For each contract table, ``ingest`` finds its file in the data folder (``<table>.csv``,
``<table>.csv.gz`` or ``<table>.parquet``, or the file a mapping names), renames an export's
columns onto the contract (computing revenue from quantity x unit price and marking credit lines
when the mapping asks for it), validates every row (``features.validation``), writes the kept
rows to the store and the rejected rows, with their reasons, to ``<rejects_dir>/<table>.csv``.
Nothing is lost: for every table, kept + rejected == read.

Only ``orders`` is required. Without an accounts file the account master is derived from the
orders (one row per account, ``created_at`` = first order date); with one, child rows whose
account it does not list are rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kam.features.contract import ACCOUNTS, EVENT_DATE, ORDERS, REQUIRED_TABLES, TABLES
from kam.features.errors import DataContractError
from kam.features.exports import EXTENSIONS, Source, locate, read_source, to_contract
from kam.features.mapping import TableMapping, load_mapping
from kam.features.store import connect, write_table
from kam.features.validation import DATE, STRING, Checked, check_table

RUNS_TABLE = "ingest_runs"
REASON_COLUMN = "reason"
# Children are validated after accounts, so their account ids can be checked against it.
_ORDER = ("accounts", "orders", "interactions", "complaints", "deliveries", "actions")
# The date up to which a table shows what happened. A promised delivery date can lie beyond the
# end of the extract (a scheduled delivery), so deliveries count by the date they arrived.
_OBSERVED_DATE = {**EVENT_DATE, "deliveries": "delivered_date"}


@dataclass
class TableReport:
    """What happened to one table: rows read, kept and rejected, and why rows were rejected."""

    table: str
    source: str
    read: int
    kept: int
    rejected: int
    reasons: dict[str, int] = field(default_factory=dict)
    """Rejected rows per reason kind; a row with two kinds counts under both."""
    other_mapped: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per category column, the unknown values mapped to ``other`` and how often."""
    ignored_columns: tuple[str, ...] = ()
    credit_lines: int = 0
    """Kept lines the mapping marks as credit notes, stored with negative revenue."""
    rejects_file: Path | None = None
    latest_event: pd.Timestamp | None = None
    """Latest event date among the kept rows (for deliveries, the latest delivered date)."""


@dataclass
class IngestReport:
    """The outcome of one ingestion run, table by table."""

    tables: dict[str, TableReport]
    store_url: str
    rejects_dir: Path
    run_at: datetime
    data_end: pd.Timestamp | None
    seconds: float

    def __getitem__(self, table: str) -> TableReport:
        return self.tables[table]

    @property
    def rejected_total(self) -> int:
        """Rejected rows over all tables."""
        return sum(t.rejected for t in self.tables.values())

    def as_rows(self) -> list[dict[str, Any]]:
        """One row per table, for printing: source file name, counts, reasons, ``other`` counts,
        and the lines kept as credit notes (``mapping.credit_notes``).

        Reasons read ``"duplicate order_id (2)"``; values mapped to other read
        ``"channel: fax, telex (3)"`` (at most three examples per column).
        """
        rows = []
        for report in self.tables.values():
            reasons = "; ".join(f"{kind} ({n:,})" for kind, n in report.reasons.items())
            other = "; ".join(
                f"{column}: {', '.join(list(counts)[:3])} ({sum(counts.values()):,})"
                for column, counts in report.other_mapped.items()
            )
            rows.append(
                {
                    "table": report.table,
                    "source": Path(report.source).name,
                    "read": report.read,
                    "kept": report.kept,
                    "rejected": report.rejected,
                    "rejected by reason": reasons,
                    "mapped to other": other,
                    "credit lines": report.credit_lines,
                }
            )
        return rows


@dataclass
class _Result:
    source: Source | None
    read: int
    checked: Checked
    ignored: tuple[str, ...]
    rejects: pd.DataFrame | None
    """Rejected rows as the file holds them, plus generated ids and the reason."""
    credit_lines: int = 0


def ingest(
    data_dir: Path,
    store_url: str,
    *,
    mapping: Path | None = None,
    rejects_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Validate the input tables in ``data_dir`` and load the clean rows into the store.

    Parameters
    ----------
    data_dir
        Folder holding one file per contract table (``<table>.csv``, ``.csv.gz`` or
        ``.parquet``); only orders is required.
    store_url
        Store to write to (e.g. ``duckdb:///path/kam.duckdb``). Each contract table is replaced;
        a contract table absent from this run is dropped, so the store matches the input.
    mapping
        Optional YAML mapping (``features.mapping``) naming files, formats and column renames for
        an export whose names differ from the contract.
    rejects_dir
        Where rejected rows go, one ``<table>.csv`` per table with rejects, holding the file's own
        columns plus ``reason``; default ``<data_dir>/rejects``.
    progress
        Called with a short message as each stage completes.

    Returns
    -------
    IngestReport
        Rows read, kept and rejected per table, rejects by reason kind, values mapped to
        ``other``, and ``data_end``, the latest event date among the kept rows of all tables
        (deliveries count by delivered date, since promised dates may be scheduled). Accounts
        derived from orders count as read and kept, so kept + rejected == read holds for every
        table.

    Raises
    ------
    DataContractError
        When the orders file is missing, a file cannot be read, a required column is missing,
        or the mapping is malformed; the message names the file and the column.
    """
    started = time.perf_counter()
    run_at = datetime.now(UTC).replace(tzinfo=None)
    say = progress or (lambda _message: None)
    data_dir = Path(data_dir)
    rejects_dir = Path(rejects_dir) if rejects_dir is not None else data_dir / "rejects"
    if not data_dir.is_dir():
        raise DataContractError(f"data folder {data_dir} does not exist")
    mappings = load_mapping(mapping) if mapping is not None else {}
    sources = {
        name: locate(TABLES[name], data_dir, mappings.get(name, TableMapping(name)))
        for name in _ORDER
    }
    for name in REQUIRED_TABLES:
        if sources[name] is None:
            looked = ", ".join(name + ext for ext in EXTENSIONS)
            raise DataContractError(
                f"no {name} table in {data_dir}: looked for {looked} "
                "(or give a mapping file that names the file)"
            )

    results: dict[str, _Result] = {}
    known_accounts: pd.Index | None = None
    for name in _ORDER:
        source = sources[name]
        if source is None:
            continue
        say(f"{name}: reading {source.path}")
        result = _ingest_table(source, known_accounts)
        results[name] = result
        if name == ACCOUNTS.name:
            known_accounts = pd.Index(result.checked.clean["account_id"])
        _say_counts(say, name, result)
    if ACCOUNTS.name not in results:
        accounts = _derive_accounts(results[ORDERS.name].checked.clean)
        results[ACCOUNTS.name] = _Result(
            None, len(accounts), Checked(clean=accounts, reasons=_no_reasons()), (), None
        )
        say(f"accounts: derived {len(accounts):,} accounts from orders")

    reports = {
        name: _table_report(name, results[name], rejects_dir) for name in _ORDER if name in results
    }
    ends = [r.latest_event for r in reports.values() if r.latest_event is not None]
    data_end = max(ends) if ends else None
    say(f"writing {len(results)} tables to {store_url}")
    _write_store(store_url, results, reports, run_at, data_end)
    # After the store, so that a failed write leaves the rejects of the run the store reflects.
    _write_rejects(results, rejects_dir)
    return IngestReport(
        tables=reports,
        store_url=store_url,
        rejects_dir=rejects_dir,
        run_at=run_at,
        data_end=data_end,
        seconds=time.perf_counter() - started,
    )


def _ingest_table(source: Source, known_accounts: pd.Index | None) -> _Result:
    raw = read_source(source)
    frame, generated, ignored, credits = to_contract(raw, source)
    unparsed = {}
    if source.mapping.revenue_from is not None:
        unparsed["revenue"] = "quantity x unit price not a number"
    checked = check_table(
        frame,
        source.table,
        date_formats=source.mapping.date_format,
        known_accounts=known_accounts if source.table.child_of_accounts else None,
        unparsed=unparsed,
    )
    # Only the rejected rows of the raw file are kept, so memory holds one full copy at a time.
    rejects = _rejects_frame(raw, generated, checked.reasons) if len(checked.reasons) else None
    credits[checked.reasons.index.to_numpy()] = False
    return _Result(source, len(raw), checked, ignored, rejects, int(credits.sum()))


def _rejects_frame(
    raw: pd.DataFrame, generated: dict[str, pd.Series], reasons: pd.Series
) -> pd.DataFrame:
    rows = reasons.index.to_numpy()
    rejects = raw.iloc[rows].copy()
    for column, values in generated.items():
        if column not in rejects.columns:
            rejects[column] = values.iloc[rows].to_numpy()
    reason_column = REASON_COLUMN
    while reason_column in rejects.columns:
        reason_column = "_" + reason_column
    rejects[reason_column] = reasons.to_numpy()
    return rejects


def _say_counts(say: Callable[[str], None], name: str, result: _Result) -> None:
    checked = result.checked
    kept, rejected = len(checked.clean), len(checked.reasons)
    say(f"{name}: {result.read:,} read, {kept:,} kept, {rejected:,} rejected")
    if result.credit_lines:
        say(f"{name}: {result.credit_lines:,} credit lines kept with negative revenue")
    for column, counts in checked.other_mapped.items():
        examples = ", ".join(repr(v) for v in list(counts)[:3])
        say(
            f"{name}.{column}: {sum(counts.values()):,} unknown values mapped to other ({examples})"
        )


def _derive_accounts(orders: pd.DataFrame) -> pd.DataFrame:
    """The account master implied by the orders: each account, created at its first order."""
    first = orders.groupby("account_id", sort=True)["order_date"].min()
    accounts = pd.DataFrame(
        {name: pd.Series(np.nan, index=range(len(first)), dtype=STRING) for name in ACCOUNTS.names}
    )
    accounts["account_id"] = pd.Series(first.index, dtype=STRING)
    accounts["created_at"] = pd.Series(first.to_numpy(), dtype=DATE)
    return accounts


def _no_reasons() -> pd.Series:
    return pd.Series([], index=pd.Index([], dtype=np.int64), dtype=STRING, name=REASON_COLUMN)


def _table_report(name: str, result: _Result, rejects_dir: Path) -> TableReport:
    checked = result.checked
    kept, rejected = len(checked.clean), len(checked.reasons)
    event = _OBSERVED_DATE.get(name)
    latest = checked.clean[event].max() if event and kept else None
    return TableReport(
        table=name,
        source=str(result.source.path) if result.source else "derived from orders",
        read=result.read,
        kept=kept,
        rejected=rejected,
        reasons=checked.reason_counts,
        other_mapped=checked.other_mapped,
        ignored_columns=result.ignored,
        credit_lines=result.credit_lines,
        rejects_file=rejects_dir / f"{name}.csv" if rejected else None,
        latest_event=None if latest is None or pd.isna(latest) else pd.Timestamp(latest),
    )


def _write_rejects(results: dict[str, _Result], rejects_dir: Path) -> None:
    for name in TABLES:
        target = rejects_dir / f"{name}.csv"
        result = results.get(name)
        if result is None or result.rejects is None:
            # A rejects file left by an earlier run would describe data no longer ingested.
            target.unlink(missing_ok=True)
            continue
        rejects_dir.mkdir(parents=True, exist_ok=True)
        result.rejects.to_csv(target, index=False)


def _write_store(
    store_url: str,
    results: dict[str, _Result],
    reports: dict[str, TableReport],
    run_at: datetime,
    data_end: pd.Timestamp | None,
) -> None:
    con = connect(store_url)
    try:
        for name in TABLES:
            if name in results:
                write_table(con, name, results[name].checked.clean)
            else:
                # A table from an earlier run would otherwise pass for part of this input.
                con.drop_table(name, force=True)
        runs = _runs_frame(reports, run_at, data_end)
        if RUNS_TABLE in con.list_tables():
            earlier = con.table(RUNS_TABLE).to_pandas()
            if list(earlier.columns) == list(runs.columns):
                runs = pd.concat([earlier, runs], ignore_index=True)
        write_table(con, RUNS_TABLE, runs)
    finally:
        con.disconnect()


def _runs_frame(
    reports: dict[str, TableReport], run_at: datetime, data_end: pd.Timestamp | None
) -> pd.DataFrame:
    """One row per table of this run (the store keeps the rows of earlier runs too)."""
    tables = list(reports.values())
    return pd.DataFrame(
        {
            "run_at": pd.Series([run_at] * len(tables), dtype=DATE),
            "table_name": pd.Series([t.table for t in tables], dtype=STRING),
            "source": pd.Series([t.source for t in tables], dtype=STRING),
            "read": np.array([t.read for t in tables], dtype=np.int64),
            "kept": np.array([t.kept for t in tables], dtype=np.int64),
            "rejected": np.array([t.rejected for t in tables], dtype=np.int64),
            "latest_event": pd.Series([t.latest_event for t in tables], dtype=DATE),
            "data_end": pd.Series([data_end] * len(tables), dtype=DATE),
        }
    )
