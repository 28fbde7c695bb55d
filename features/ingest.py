"""Validated ingestion: input files in, clean contract tables in the store, bad rows set aside.

For each contract table, ``ingest`` finds its file in the data folder (``<table>.csv``,
``<table>.csv.gz`` or ``<table>.parquet``, or the file a mapping names), renames an export's
columns onto the contract (computing revenue from quantity x unit price and marking credit lines
when the mapping asks for it), validates every row (``features.validation``), writes the kept
rows to the store and the rejected rows, with their reasons, to ``<rejects_dir>/<table>.csv``.
Nothing is lost: for every table, kept + rejected == read.

Rows dated after today are rejected (the ``now`` setting; a promised delivery may be later), and
so are amounts and quantities beyond sane magnitudes (``features.contract``). An ingest that
would leave a stored table empty, drop it, or shrink it by more than ``max_shrink`` is refused
unless forced: a truncated or header-only export is far likelier than a book that lost half its
orders overnight. The store's tables are replaced in one transaction and the rejects files by
renames, so a failed run leaves the previous run's tables and rejects as they were.

Only ``orders`` is required. Without an accounts file the account master is derived from the
orders (one row per account, ``created_at`` = first order date); with one, child rows whose
account it does not list are rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kam.features.atomic import atomic_path
from kam.features.contract import ACCOUNTS, EVENT_DATE, ORDERS, REQUIRED_TABLES, TABLES
from kam.features.errors import DataContractError, ShrinkRefused
from kam.features.exports import EXTENSIONS, Source, locate, read_source, to_contract
from kam.features.mapping import TableMapping, load_mapping
from kam.features.settings import latest_today
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
    """Columns of the file that no contract column is read from."""
    repeated_columns: dict[str, int] = field(default_factory=dict)
    """Names the file's header holds more than once (only the first column of each is read)."""
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
        ``"channel: fax, telex (3)"`` (at most three examples per column); ignored columns
        list the file's unused columns, a repeated name with its count (``"note (x2)"``).
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
                    "ignored columns": _ignored_text(report),
                }
            )
        return rows


def _ignored_text(report: TableReport) -> str:
    repeated = report.repeated_columns
    return ", ".join(
        f"{c} (x{repeated[c]})" if c in repeated else c for c in report.ignored_columns
    )


@dataclass
class _Result:
    source: Source | None
    read: int
    checked: Checked
    ignored: tuple[str, ...]
    rejects: pd.DataFrame | None
    """Rejected rows as the file holds them, plus generated ids and the reason."""
    credit_lines: int = 0
    repeated: dict[str, int] = field(default_factory=dict)


def ingest(
    data_dir: Path,
    store_url: str,
    *,
    mapping: Path | None = None,
    rejects_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    today: date | None = None,
    max_shrink: float = 0.5,
    force: bool = False,
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
    today
        Rows dated after this day are rejected (``"order_date: after today (...)"``), except
        promised delivery dates; default today where it is latest (UTC+14).
    max_shrink
        Largest share of a stored table's rows this run may drop (0.5: half).
    force
        Replace the store's tables even when a table would be emptied, dropped, or shrunk by
        more than ``max_shrink``.

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
        When the orders file is missing, a file cannot be read, a required column is missing
        or repeated, a date column's format is ambiguous (``01/02/2024``), or the mapping is
        malformed; the message names the file and the column.
    ShrinkRefused
        When, without ``force``, a stored table would be left empty, dropped, or shrunk by more
        than ``max_shrink``; nothing is written.
    OSError
        When the store or a rejects file cannot be written; the store and rejects of the
        previous run stay as they were.
    """
    started = time.perf_counter()
    run_at = datetime.now(UTC).replace(tzinfo=None)
    say = progress or (lambda _message: None)
    today = today if today is not None else latest_today()
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
        result = _ingest_table(source, known_accounts, today)
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
    # Rejects are written aside first and renamed into place once the store has committed, so
    # the rejects always describe the run the store holds.
    with _staged_rejects(results, rejects_dir):
        _write_store(
            store_url, results, reports, run_at, data_end, None if force else max_shrink
        )
    return IngestReport(
        tables=reports,
        store_url=store_url,
        rejects_dir=rejects_dir,
        run_at=run_at,
        data_end=data_end,
        seconds=time.perf_counter() - started,
    )


def _ingest_table(source: Source, known_accounts: pd.Index | None, today: date) -> _Result:
    raw, repeated = read_source(source)
    frame, generated, ignored, credits = to_contract(raw, source, repeated)
    unparsed = {}
    if source.mapping.revenue_from is not None:
        unparsed["revenue"] = "quantity x unit price not a number"
    try:
        checked = check_table(
            frame,
            source.table,
            date_formats=source.mapping.date_format,
            known_accounts=known_accounts if source.table.child_of_accounts else None,
            unparsed=unparsed,
            today=today,
        )
    except DataContractError as err:
        raise DataContractError(f"{source.path} (table {source.table.name}): {err}") from err
    # Only the rejected rows of the raw file are kept, so memory holds one full copy at a time.
    rejects = _rejects_frame(raw, generated, checked.reasons) if len(checked.reasons) else None
    credits[checked.reasons.index.to_numpy()] = False
    return _Result(source, len(raw), checked, ignored, rejects, int(credits.sum()), repeated)


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
    if result.ignored:
        say(f"{name}: columns not in the data contract, not read: {', '.join(result.ignored)}")
    for column, count in result.repeated.items():
        say(f"{name}: the header names '{column}' {count} times; only the first is kept")
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
        repeated_columns=result.repeated,
        credit_lines=result.credit_lines,
        rejects_file=rejects_dir / f"{name}.csv" if rejected else None,
        latest_event=None if latest is None or pd.isna(latest) else pd.Timestamp(latest),
    )


@contextmanager
def _staged_rejects(results: dict[str, _Result], rejects_dir: Path) -> Iterator[None]:
    """Write every rejects file aside; they replace the old files when the block succeeds
    (stale ones are removed then), and are discarded when it raises."""
    stale = []
    with ExitStack() as stack:
        for name in TABLES:
            target = rejects_dir / f"{name}.csv"
            result = results.get(name)
            if result is None or result.rejects is None:
                # A rejects file left by an earlier run would describe data no longer ingested.
                stale.append(target)
                continue
            path = stack.enter_context(atomic_path(target))
            result.rejects.to_csv(path, index=False)
        yield
    for target in stale:
        target.unlink(missing_ok=True)


def _write_store(
    store_url: str,
    results: dict[str, _Result],
    reports: dict[str, TableReport],
    run_at: datetime,
    data_end: pd.Timestamp | None,
    max_shrink: float | None,
) -> None:
    con = connect(store_url)
    try:
        if max_shrink is not None:
            _refuse_shrink(con, reports, max_shrink)
        with _transaction(con):
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


@contextmanager
def _transaction(con: Any) -> Iterator[None]:
    """All the tables of a run, or none: a failure half-way leaves the previous run's."""
    if getattr(con, "name", "") != "duckdb":
        yield
        return
    con.raw_sql("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.raw_sql("ROLLBACK")
        raise
    con.raw_sql("COMMIT")


def _refuse_shrink(con: Any, reports: dict[str, TableReport], max_shrink: float) -> None:
    """Stop before writing when a stored table would be emptied, dropped or shrunk too far."""
    present = set(con.list_tables())
    problems = []
    for name in TABLES:
        if name not in present:
            continue
        stored = int(con.table(name).count().execute())
        if stored == 0:
            continue
        report = reports.get(name)
        if report is None:
            problems.append(f"{name}: {stored:,} rows in the store, no {name} file in this input")
            continue
        if report.kept > 0 and report.kept >= (1.0 - max_shrink) * stored:
            continue
        why = f"; rejected: {_reasons_text(report)}" if report.rejected else ""
        problems.append(
            f"{name}: {stored:,} rows in the store, {report.kept:,} kept of {report.read:,} "
            f"read from {Path(report.source).name}{why}"
        )
    if problems:
        raise ShrinkRefused(
            "refused to replace the store's tables: "
            + " | ".join(problems)
            + f" (an ingest may drop at most {max_shrink:.0%} of a table's rows, and never "
            "empty or drop one: check the export, or ingest with --allow-shrink to replace "
            "them)"
        )


def _reasons_text(report: TableReport) -> str:
    shown = list(report.reasons.items())[:3]
    more = ", ..." if len(report.reasons) > 3 else ""
    return ", ".join(f"{kind} ({n:,})" for kind, n in shown) + more


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
