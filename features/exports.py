"""Reading an export: find a contract table's file, read it, and map its columns onto the contract.

The only module that sees an export's own file and column names. It finds each table's file
(``<table>.csv``, ``<table>.csv.gz``, ``<table>.parquet``, or the file a mapping names), reads it
with every text value kept as a string, and renames its columns onto the contract, computing
revenue from quantity x unit price and marking credit lines when the mapping asks for it.
Validation of the mapped rows is :mod:`kam.features.validation`'s; ingestion wires both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc
from pandas.api.types import is_numeric_dtype

from kam.features.contract import Table
from kam.features.errors import DataContractError
from kam.features.mapping import TableMapping
from kam.features.validation import STRING, to_number

EXTENSIONS = (".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class Source:
    """Where and how one contract table is read: file, format and mapping."""

    table: Table
    path: Path
    format: str
    mapping: TableMapping



def locate(table: Table, data_dir: Path, mapping: TableMapping) -> Source | None:
    if mapping.file is not None:
        path = data_dir / mapping.file
        if not path.is_file():
            raise DataContractError(
                f"the mapping names {path} for table {table.name}, but there is no such file"
            )
    else:
        found = [data_dir / (table.name + ext) for ext in EXTENSIONS]
        found = [p for p in found if p.is_file()]
        if not found:
            return None
        if len(found) > 1:
            names = " and ".join(p.name for p in found)
            raise DataContractError(
                f"{data_dir} holds both {names} for table {table.name}: keep one"
            )
        path = found[0]
    fmt = mapping.format or _format_of(path)
    if fmt is None:
        raise DataContractError(
            f"cannot tell the format of {path} (table {table.name}) from its name: "
            "give format (csv, parquet or whitespace) in the mapping"
        )
    return Source(table, path, fmt, mapping)


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if re.search(r"\.csv(\.(gz|bz2|zip|xz|zst))?$", name):
        return "csv"
    return None


def read_source(source: Source) -> tuple[pd.DataFrame, dict[str, int]]:
    """The file's rows with its own column names, and the names its header repeats.

    Text formats keep every value as a string; only an empty cell, or a spelling the mapping
    lists under ``missing_values``, is missing. A repeated name keeps its first column only (the
    reader would rename the copies ``name.1``...); ``to_contract`` refuses the file when that
    column is used.
    """
    mapping, path = source.mapping, source.path
    header = 0 if mapping.header else None
    missing = ["", *mapping.missing_values]
    options: dict[str, Any] = {
        "dtype": str,
        "header": header,
        "keep_default_na": False,
        "na_values": missing,
    }
    if mapping.names is not None:
        options["names"] = list(mapping.names)
    if mapping.encoding is not None:
        options["encoding"] = mapping.encoding
    try:
        repeated: dict[str, int] = {}
        if source.format == "parquet":
            frame = pd.read_parquet(path)
            frame = _mask_missing(frame, mapping.missing_values)
        elif source.format == "whitespace":
            frame = pd.read_csv(path, sep=r"\s+", engine="c", **options)
        else:
            # Strings throughout, so ids keep their leading zeros and rejects show what the file
            # holds; the pyarrow reader is several times faster than the C one on large files.
            frame = pd.read_csv(path, sep=mapping.sep or ",", engine="pyarrow", **options)
        if source.format != "parquet" and mapping.header and mapping.names is None:
            repeated = _repeated_names(source)
    except (OSError, ValueError, pyarrow.ArrowException) as err:
        raise DataContractError(f"cannot read {path} (table {source.table.name}): {err}") from err
    frame.columns = [str(c) for c in frame.columns]
    if repeated:
        # The reader renamed the copies; every name the header really holds came first.
        frame = frame[[c for c in frame.columns if c in repeated or c not in _copies(repeated)]]
    return frame.reset_index(drop=True), repeated


def _copies(repeated: dict[str, int]) -> set[str]:
    return {f"{name}.{k}" for name, count in repeated.items() for k in range(1, count)}


def _repeated_names(source: Source) -> dict[str, int]:
    """The names the file's header line holds more than once, with their counts."""
    mapping = source.mapping
    sep = r"\s+" if source.format == "whitespace" else (mapping.sep or ",")
    line = pd.read_csv(
        source.path,
        sep=sep,
        header=None,
        nrows=1,
        dtype=str,
        keep_default_na=False,
        engine="python",
        encoding=mapping.encoding,
    )
    names = [str(v) for v in line.iloc[0].tolist()] if len(line) else []
    counts = pd.Series(names, dtype=object).value_counts()
    return {str(name): int(n) for name, n in counts.items() if n > 1}


def _mask_missing(frame: pd.DataFrame, spellings: tuple[str, ...]) -> pd.DataFrame:
    if not spellings:
        return frame
    text = [c for c in frame.columns if not is_numeric_dtype(frame[c].dtype)]
    frame[text] = frame[text].mask(frame[text].isin(spellings))
    return frame


def _normalise(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().lower()


def to_contract(
    raw: pd.DataFrame, source: Source, repeated: dict[str, int] | None = None
) -> tuple[pd.DataFrame, dict[str, pd.Series], tuple[str, ...], np.ndarray]:
    """Raw values under contract names, generated id columns, the columns left unused, and the
    mask of credit lines (``credit_notes``).

    ``repeated`` holds the names the header repeats (from :func:`read_source`); a file that
    repeats a column it is read from is refused, since which copy holds the data is a guess.
    """
    table, mapping, path = source.table, source.mapping, source.path
    found = ", ".join(raw.columns) or "none"
    absent = [s for s in mapping.columns if s not in raw.columns]
    if absent:
        raise DataContractError(
            f"{path}: the mapping renames column {', '.join(absent)} for table {table.name}, "
            f"but the file has no such column (columns found: {found})"
        )
    chosen: dict[str, str] = {}  # contract name -> source column
    for source_name, target in mapping.columns.items():
        chosen[target] = source_name
    for column in raw.columns:
        if column in mapping.columns:
            continue
        target = _normalise(column)
        if target not in table.names or target in mapping.columns.values():
            continue
        if target in chosen:
            raise DataContractError(
                f"{path}: columns '{chosen[target]}' and '{column}' both read as "
                f"{table.name}.{target}: rename or drop one"
            )
        chosen[target] = column

    generated: dict[str, pd.Series] = {}
    if mapping.id_from_row is not None:
        target = mapping.id_from_row
        if target in chosen:
            raise DataContractError(
                f"{path}: the mapping generates {target} from the row number, but column "
                f"'{chosen[target]}' already gives it"
            )
        numbers = pyarrow.array(np.arange(1, len(raw) + 1, dtype=np.int64))
        generated[target] = pd.Series(
            pc.cast(numbers, pyarrow.large_string()).to_pandas(), index=raw.index, dtype=STRING
        )

    if mapping.revenue_from is not None and "revenue" in chosen:
        raise DataContractError(
            f"{path}: the mapping computes revenue from quantity and unit price, but column "
            f"'{chosen['revenue']}' already gives it"
        )
    computed = {"revenue"} if mapping.revenue_from is not None else set()
    missing = [
        c for c in table.required if c not in chosen and c not in generated and c not in computed
    ]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise DataContractError(
            f"{path} lacks required column{plural} {', '.join(missing)} of table {table.name} "
            f"(columns found: {found}); a mapping file can rename an export's columns"
        )
    columns = {}
    for name in table.names:
        if name in chosen:
            columns[name] = raw[chosen[name]]
        elif name in generated:
            columns[name] = generated[name]
        else:
            columns[name] = pd.Series(np.nan, index=raw.index, dtype=STRING)
    used = set(chosen.values())
    credits = np.zeros(len(raw), dtype=bool)
    if mapping.revenue_from is not None or mapping.marks_credits:
        columns["revenue"], credits, inputs = _revenue(raw, columns, chosen, source)
        used |= inputs
    for name, count in (repeated or {}).items():
        if name in used:
            raise DataContractError(
                f"{path}: the header names column '{name}' {count} times, and table "
                f"{table.name} reads it: keep one"
            )
    ignored = tuple(c for c in raw.columns if c not in used)
    return pd.DataFrame(columns, index=raw.index), generated, ignored, credits


def _revenue(
    raw: pd.DataFrame, columns: dict[str, pd.Series], chosen: dict[str, str], source: Source
) -> tuple[pd.Series, np.ndarray, set[str]]:
    """Revenue computed from quantity x unit price and/or negated on credit lines.

    Returns the revenue column (numbers, with the raw inputs as text where they are not numbers,
    so that validation rejects those rows), the mask of credit lines, and the source columns read.
    """
    mapping, path = source.mapping, source.path
    inputs: set[str] = set()

    def read(name: str, key: str) -> pd.Series:
        # A source column of the file, or else a contract column already read from one.
        if name in raw.columns:
            inputs.add(name)
            return raw[name]
        if name in chosen:
            return raw[chosen[name]]
        raise DataContractError(
            f"{path}: the mapping's {key} names column '{name}', but the file has no such column "
            f"and none is read as {source.table.name}.{name} "
            f"(columns found: {', '.join(raw.columns) or 'none'})"
        )

    if mapping.revenue_from is not None:
        quantity_raw = read(mapping.revenue_from["quantity"], "revenue_from.quantity")
        price_raw = read(mapping.revenue_from["unit_price"], "revenue_from.unit_price")
        quantity, quantity_bad = to_number(quantity_raw)
        price, price_bad = to_number(price_raw)
        amount = quantity * price
        bad = quantity_bad | price_bad
        shown = _as_text(quantity_raw) + " x " + _as_text(price_raw)
    else:
        quantity = to_number(columns["quantity"])[0]
        amount, bad = to_number(columns["revenue"])
        shown = columns["revenue"]

    credits = np.zeros(len(raw), dtype=bool)
    if mapping.credit_prefixes:
        ids = _as_text(read(mapping.credit_column or "order_id", "credit_notes.column"))
        credits |= ids.str.startswith(mapping.credit_prefixes).fillna(False).to_numpy(dtype=bool)
    if mapping.credit_negative_quantity:
        credits |= (quantity < 0).to_numpy(dtype=bool)
    amount = amount.mask(credits, -amount.abs())
    if not bad.any():
        return amount, credits, inputs
    revenue = amount.astype(object)
    revenue[bad] = shown[bad]
    return revenue, credits, inputs


def _as_text(values: pd.Series) -> pd.Series:
    return values.astype(STRING).str.strip().fillna("")
