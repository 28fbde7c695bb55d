"""Validation of one input table against the data contract, with a reason for every bad row.

Two steps, both vectorised:

1. ``coerce`` turns raw values (text from CSV, or typed Parquet columns) into the contract's
   dtypes: ids, text and categories as strings, dates as ``datetime64[us]``, numbers as
   ``float64``. A value that is present but does not parse becomes null and is recorded as a
   parse failure. Unknown category values become ``other`` and are counted.
2. ``contract_schema`` builds a pandera ``DataFrameSchema`` from ``features.contract`` (required
   values, duplicate ids, value ranges, categories, known accounts, date order); it validates the
   coerced frame lazily and its failure cases say which rows fail and why.

Coercion is done here rather than by pandera's ``coerce=True`` because pandera stops checking a
column whose coercion failed and reports the failure per column, while every row needs its own
reason; pyarrow parses a 5-million-row number column in a fraction of a second.

Reasons read ``"<column>: <problem> '<value>'"`` for a bad value, or a phrase such as
``"duplicate order_id"`` for a row-level problem; a row's reasons are joined with ``"; "``. The
reason *kind* is the reason without the quoted value, so rejects can be counted by kind.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import date
from typing import Final

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pandas.api.types import (
    is_bool_dtype,
    is_datetime64_any_dtype,
    is_float_dtype,
    is_numeric_dtype,
)
from pandas.tseries.api import guess_datetime_format

from kam.features.contract import Column, Table
from kam.features.errors import DataContractError

STRING = pd.StringDtype(na_value=np.nan)
DATE: Final = "datetime64[us]"
NUMBER: Final = "float64"
DTYPES = {"id": STRING, "text": STRING, "category": STRING, "date": DATE, "number": NUMBER}

# Pairs (earlier, later) of date columns whose order the contract implies.
DATE_ORDER: dict[str, tuple[tuple[str, str], ...]] = {
    "complaints": (("opened_at", "resolved_at"),),
}

# A plain decimal number: what an export writes for an amount (no thousands separators, no
# currency signs, no inf or nan spelled out).
_NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_SHOWN_CHARS = 60
_DATE_SAMPLE = 1000
EARLIEST_DATE = pd.Timestamp("1900-01-01")
"""Dates before it are typos or placeholders (0001-01-01, 1899-12-30), not events."""
# How exports spell a missing value. In a number or date column these can mean nothing else, so
# they read as missing; in ids and text they stay text (a region NA is North America, an
# account may be called NULL) unless a mapping lists them under missing_values.
NA_SPELLINGS = frozenset(
    {"NA", "N/A", "n/a", "#N/A", "#NA", "<NA>", "NULL", "null", "Null", "None", "none",
     "nan", "NaN", "NAN", "-nan", "-NaN"}
)


@dataclass(frozen=True)
class Checked:
    """The outcome of validating one table.

    ``clean`` holds the kept rows (canonical columns in contract order, contract dtypes, a fresh
    index); ``reasons`` holds the reason text of each rejected row, indexed by the row's position
    in the input; ``reason_counts`` counts rejected rows per reason kind (a row with two kinds
    counts under both); ``other_mapped`` counts, per category column, the values mapped to
    ``other``.
    """

    clean: pd.DataFrame
    reasons: pd.Series
    reason_counts: dict[str, int] = field(default_factory=dict)
    other_mapped: dict[str, dict[str, int]] = field(default_factory=dict)


def contract_schema(
    table: Table, known_accounts: pd.Index | None = None, today: date | None = None
) -> pa.DataFrameSchema:
    """The pandera schema of a contract table, for frames already coerced to contract dtypes.

    Parameters
    ----------
    table
        The contract table.
    known_accounts
        Account ids of the accounts table; when given, a child table's ``account_id`` must be
        one of them.
    today
        When given, a date after it fails (but for columns that may hold future dates, such as
        a promised delivery date).

    Returns
    -------
    pandera.pandas.DataFrameSchema
        Columns with their dtype, nullability (required columns), uniqueness of the id column
        (later duplicates fail, the first passes), ranges, categories and known accounts, plus
        the table's date-order checks. Each check's error text is the reason kind it reports.
    """
    columns = {}
    for col in table.columns:
        checks = _column_checks(col, today)
        if col.name == "account_id" and table.child_of_accounts and known_accounts is not None:
            checks.append(
                pa.Check(
                    lambda s, known=known_accounts: s.isin(known),
                    error="unknown account_id (not in accounts)",
                )
            )
        columns[col.name] = pa.Column(
            DTYPES[col.kind],
            checks,
            nullable=not col.required,
            unique=col.name == table.id_column,
            report_duplicates="exclude_first",
        )
    frame_checks = [
        pa.Check(
            lambda df, a=earlier, b=later: ~(df[b] < df[a]),
            error=f"{later} before {earlier}",
        )
        for earlier, later in DATE_ORDER.get(table.name, ())
    ]
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=True, name=table.name)


def _column_checks(col: Column, today: date | None) -> list[pa.Check]:
    # Value-level kinds start with "<column>: " so that the offending value is shown with them.
    if col.kind == "date":
        checks = [pa.Check.ge(EARLIEST_DATE, error=f"{col.name}: before {EARLIEST_DATE.year}")]
        if today is not None and not col.may_be_future:
            tomorrow = pd.Timestamp(today) + pd.Timedelta(days=1)
            checks.append(pa.Check.lt(tomorrow, error=f"{col.name}: after today ({today})"))
        return checks
    if col.kind == "category":
        return [pa.Check.isin(col.categories, error=f"{col.name}: unknown category")]
    checks = []
    if col.magnitude is not None:
        bound = col.magnitude
        checks.append(
            pa.Check(lambda s: s.abs() <= bound, error=f"{col.name}: beyond +-{bound:g}")
        )
    lo, hi = col.min_value, col.max_value
    if lo is not None and hi is not None:
        checks.append(pa.Check.in_range(lo, hi, error=f"{col.name}: outside [{lo:g}, {hi:g}]"))
    elif lo is not None:
        checks.append(pa.Check.ge(lo, error=f"{col.name}: below {lo:g}"))
    elif hi is not None:
        checks.append(pa.Check.le(hi, error=f"{col.name}: above {hi:g}"))
    return checks


def check_table(
    frame: pd.DataFrame,
    table: Table,
    *,
    date_formats: dict[str, str] | None = None,
    known_accounts: pd.Index | None = None,
    unparsed: dict[str, str] | None = None,
    today: date | None = None,
) -> Checked:
    """Coerce and validate one table, splitting kept rows from rejected rows with reasons.

    Parameters
    ----------
    frame
        Raw values under contract column names (every contract column present; absent optional
        columns as all-null), one row per input row, in input order.
    table
        The contract table.
    date_formats
        ``strptime`` format per date column; columns without one are read as ISO 8601, or in the
        format guessed from their values when those are not ISO 8601.
    known_accounts
        Account ids a child table's rows must belong to, or None to skip that check.
    unparsed
        Per column, the problem to report for a value that does not parse, in place of
        ``"not a number"`` or ``"unparseable date"`` (for a column computed from others).
    today
        When given, rows dated after it are rejected (``"order_date: after today (...)"``),
        except in columns that may hold future dates.

    Returns
    -------
    Checked
        Kept rows, reasons of rejected rows, reject counts by reason kind, ``other`` counts.

    Raises
    ------
    DataContractError
        When a date column's values read equally well in two formats that give different dates
        (``01/02/2024``: day or month first) and ``date_formats`` names none for it.
    """
    frame = frame.reset_index(drop=True)
    typed, parse_failures, other_mapped = coerce(frame, table, date_formats or {})
    schema = contract_schema(table, known_accounts, today)
    try:
        schema.validate(typed, lazy=True)
        failures = pd.DataFrame(columns=["column", "check", "index"])
    except pa.errors.SchemaErrors as err:
        failures = err.failure_cases

    entries = _parse_entries(frame, table, parse_failures, unparsed or {})
    entries.append(_schema_entries(frame, table, failures, parse_failures))
    reasons, counts = _assemble(entries, table)
    keep = np.ones(len(frame), dtype=bool)
    keep[reasons.index.to_numpy()] = False
    clean = typed.loc[keep].reset_index(drop=True)
    return Checked(clean=clean, reasons=reasons, reason_counts=counts, other_mapped=other_mapped)


def coerce(
    frame: pd.DataFrame, table: Table, date_formats: dict[str, str]
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """Convert raw columns to contract dtypes.

    Parameters
    ----------
    frame
        Raw values under contract column names.
    table
        The contract table.
    date_formats
        ``strptime`` format per date column (others are inferred).

    Raises
    ------
    DataContractError
        When a date column's format is ambiguous (see :func:`check_table`).

    Returns
    -------
    tuple
        The typed frame (contract columns in contract order); per date or number column, a
        boolean mask of rows whose value was present but did not parse; per category column,
        the counts of values mapped to ``other``.
    """
    typed: dict[str, pd.Series] = {}
    failures: dict[str, np.ndarray] = {}
    other: dict[str, dict[str, int]] = {}
    for col in table.columns:
        raw = frame[col.name]
        if col.kind == "date":
            typed[col.name], bad = _to_date(raw, date_formats.get(col.name), col.name)
        elif col.kind == "number":
            typed[col.name], bad = to_number(raw)
        elif col.kind == "category":
            typed[col.name], counts = _to_category(raw, col.categories)
            if counts:
                other[col.name] = counts
            continue
        else:
            typed[col.name] = _to_text(raw)
            continue
        if bad.any():
            failures[col.name] = bad
    return pd.DataFrame(typed, index=frame.index), failures, other


def _to_text(raw: pd.Series) -> pd.Series:
    if is_float_dtype(raw.dtype):
        # A Parquet id column with nulls arrives as float (1001.0); the id is "1001".
        values = raw.to_numpy(dtype=float, na_value=np.nan)
        finite = values[np.isfinite(values)]
        if np.array_equal(finite, np.round(finite)):
            raw = raw.astype("Int64")
    text = raw.astype(STRING).str.strip()
    return text.mask(text == "")


def to_number(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Raw values as ``float64`` (null where absent or not a plain number), and the mask of rows
    whose value was present but not a number."""
    if is_numeric_dtype(raw.dtype) and not is_bool_dtype(raw.dtype):
        values = raw.astype(NUMBER)
        present = values.notna().to_numpy()
    else:
        text = _without_na_spellings(_to_text(raw))
        present = text.notna().to_numpy()
        strings = pyarrow.array(text)
        try:
            # Fast path: a clean column casts whole; "inf" and "nan" are caught as non-finite.
            parsed = pc.cast(strings, pyarrow.float64())
        except pyarrow.ArrowInvalid:
            valid = pc.fill_null(pc.match_substring_regex(strings, _NUMBER_PATTERN), False)
            parsed = pc.cast(pc.if_else(valid, strings, None), pyarrow.float64())
        values = pd.Series(parsed.to_numpy(zero_copy_only=False), index=raw.index, dtype=NUMBER)
    finite = np.isfinite(values.to_numpy())
    bad = present & ~finite
    return values.where(finite), bad


def _without_na_spellings(text: pd.Series) -> pd.Series:
    return text.mask(text.isin(NA_SPELLINGS))


def _to_date(raw: pd.Series, fmt: str | None, column: str) -> tuple[pd.Series, np.ndarray]:
    if is_datetime64_any_dtype(raw.dtype):
        values = raw
        present = values.notna().to_numpy()
    else:
        text = _without_na_spellings(_to_text(raw))
        present = text.notna().to_numpy()
        values = _parse_dates(text, fmt or _guess_date_format(text, column))
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    values = values.astype(DATE)
    bad = present & values.isna().to_numpy()
    return values, bad


def _parse_dates(text: pd.Series, fmt: str) -> pd.Series:
    try:
        return pd.to_datetime(text, format=fmt, errors="coerce")
    except ValueError:
        # Mixed UTC offsets in one column cannot share a naive dtype: read them all as UTC.
        return pd.to_datetime(text, format=fmt, errors="coerce", utc=True)


def _guess_date_format(text: pd.Series, column: str) -> str:
    """ISO 8601 unless a sample of the values reads better in another (guessed) format.

    When two formats read the values equally well but give different dates (day or month
    first), the whole column decides; if it cannot either, guessing would be a coin toss that
    moves events by months, so the column's format must be named.
    """
    sample = text.dropna().head(_DATE_SAMPLE)
    if sample.empty:
        return "ISO8601"

    def share(fmt: str) -> float:
        try:
            return float(_parse_dates(sample, fmt).notna().mean())
        except ValueError:
            return 0.0

    best, best_share = "ISO8601", share("ISO8601")
    if best_share == 1.0:
        return best
    candidates: list[str] = []
    with warnings.catch_warnings():
        # pandas warns when a guess contradicts dayfirst; trying both orders is the point here.
        warnings.simplefilter("ignore", UserWarning)
        for value in sample.head(20):
            for dayfirst in (False, True):
                guessed = guess_datetime_format(value, dayfirst=dayfirst)
                if guessed and guessed not in candidates:
                    candidates.append(guessed)
    shares = {fmt: share(fmt) for fmt in candidates}
    top = max(shares.values(), default=0.0)
    if top <= best_share:
        return best
    leaders = [fmt for fmt, fmt_share in shares.items() if fmt_share == top]
    if len(leaders) > 1 and _disagree(sample, leaders) is not None:
        values = text.dropna()
        full = {fmt: float(_parse_dates(values, fmt).notna().mean()) for fmt in leaders}
        leaders = [fmt for fmt in leaders if full[fmt] == max(full.values())]
        clash = _disagree(values, leaders) if len(leaders) > 1 else None
        if clash is not None:
            example, first, second = clash
            raise DataContractError(
                f"{column}: dates such as '{example}' read as '{first}' and as '{second}', "
                "which give different dates: name the format in the mapping "
                f"(date_format: {{{column}: '{first}'}})"
            )
    return leaders[0]


def _disagree(values: pd.Series, formats: list[str]) -> tuple[str, str, str] | None:
    """A value two of ``formats`` read as different dates, and those formats; None if all
    formats read every value alike."""
    first = _parse_dates(values, formats[0])
    for fmt in formats[1:]:
        other = _parse_dates(values, fmt)
        if other.dtype != first.dtype:
            continue  # one reads UTC offsets, the other not: not a day-month question
        differ = (first != other) & first.notna() & other.notna()
        if differ.any():
            return str(values[differ].iloc[0]), formats[0], fmt
    return None


def _to_category(raw: pd.Series, categories: tuple[str, ...]) -> tuple[pd.Series, dict[str, int]]:
    text = _to_text(raw).str.lower()
    unknown = text.notna() & ~text.isin(categories)
    if not unknown.any():
        return text, {}
    return text.mask(unknown, "other"), _by_count(text[unknown])


def _shown(values: pd.Series) -> pd.Series:
    text = values.astype(STRING).fillna("")
    long = text.str.len() > _SHOWN_CHARS
    text = text.mask(long, text.str.slice(0, _SHOWN_CHARS - 3) + "...")
    return " '" + text + "'"


def _parse_entries(
    frame: pd.DataFrame,
    table: Table,
    parse_failures: dict[str, np.ndarray],
    unparsed: dict[str, str],
) -> list[pd.DataFrame]:
    entries = []
    for name, bad in parse_failures.items():
        rows = np.flatnonzero(bad)
        problem = "unparseable date" if table.column(name).kind == "date" else "not a number"
        problem = unparsed.get(name, problem)
        kind = f"{name}: {problem}"
        entries.append(_entry(rows, kind, name, table, frame[name].iloc[rows]))
    return entries


def _schema_entries(
    frame: pd.DataFrame,
    table: Table,
    failures: pd.DataFrame,
    parse_failures: dict[str, np.ndarray],
) -> pd.DataFrame:
    if failures.empty:
        return _entry(np.array([], dtype=int), "", None, table, None)
    if failures["index"].isna().any():
        # Coercion guarantees dtypes and columns, so a failure without a row is a bug here.
        broken = failures[failures["index"].isna()]
        raise RuntimeError(f"{table.name}: schema failures not tied to rows:\n{broken}")
    parts = []
    for (name, check), group in failures.groupby(["column", "check"], sort=False):
        column = str(name)
        rows = np.unique(group["index"].to_numpy(dtype=np.int64))
        if check == "not_nullable":
            if column in parse_failures:
                # An unparseable required value already has its reason.
                rows = rows[~parse_failures[column][rows]]
            parts.append(_entry(rows, f"missing required value {column}", column, table, None))
        elif check == "field_uniqueness":
            parts.append(_entry(rows, f"duplicate {column}", column, table, None))
        else:
            # Frame-wide checks (date order) come once per column involved; _assemble keeps one.
            kind = str(check)
            shown = frame[column].iloc[rows] if kind.startswith(f"{column}: ") else None
            parts.append(_entry(rows, kind, column, table, shown))
    return pd.concat(parts, ignore_index=True)


def _entry(
    rows: np.ndarray, kind: str, column: str | None, table: Table, values: pd.Series | None
) -> pd.DataFrame:
    order = table.names.index(column) if column in table.names else len(table.names)
    text = kind if values is None else kind + _shown(values).to_numpy(dtype=object)
    return pd.DataFrame({"row": rows, "order": order, "kind": kind, "text": text})


def _assemble(entries: list[pd.DataFrame], table: Table) -> tuple[pd.Series, dict[str, int]]:
    nonempty = [e for e in entries if not e.empty]
    if not nonempty:
        return pd.Series([], index=pd.Index([], dtype=np.int64), dtype=STRING), {}
    long = (
        pd.concat(nonempty, ignore_index=True)
        .drop_duplicates(["row", "kind"])
        .sort_values(["row", "order"], kind="stable")
    )
    reasons = long.groupby("row", sort=True)["text"].agg("; ".join).astype(STRING)
    reasons.index = reasons.index.astype(np.int64)
    reasons.name = "reason"
    return reasons, _by_count(long["kind"])


def _by_count(values: pd.Series) -> dict[str, int]:
    """Counts of each value, largest first, ties by name, so reports are stable."""
    counts = values.value_counts()
    return dict(
        sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    )
