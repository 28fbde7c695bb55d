"""The mapping file: how to read a CRM or ERP export whose files and columns have their own names.

A mapping is a YAML file with one entry per contract table, for example::

    orders:
      file: CDNOW_master.txt      # relative to the data folder
      format: whitespace          # csv | parquet | whitespace
      header: false               # the file has no header line...
      names: [customer, date, cds, dollars]   # ...so these name its columns
      columns:                    # source name -> contract name
        customer: account_id
        date: order_date
        cds: quantity
        dollars: revenue
      date_format: "%Y%m%d"       # or {order_date: "%Y%m%d"} per column
      id_from_row: order_id       # the log has no order id: number the rows
      missing_values: [NULL, "-"] # spellings of a missing value in every column

An empty cell is missing. Spellings such as ``NA`` or ``NULL`` are missing in number and date
columns, where they can mean nothing else, but stay text in ids, names and categories (a region
``NA`` is North America) unless ``missing_values`` lists them.

Two more keys are for ``orders`` only, to read an ERP's order lines as they are exported::

      revenue_from: {quantity: Quantity, unit_price: UnitPrice}   # revenue = quantity x price
      credit_notes: {id_prefix: [C, CN-], column: InvoiceNo}      # and/or negative_quantity: true

``revenue_from`` computes revenue at ingestion (``quantity`` names a source column or a contract
column, ``unit_price`` a source column); a row whose quantity or price is not a number is
rejected. ``credit_notes`` marks credit notes and cancelled lines, by the prefix of an id
(``column``, a source or contract column, defaults to the column read as ``order_id``) and/or by a
negative quantity; marked lines are kept with negative revenue (-abs(revenue)), as the data
contract has it, and counted in the ingest report. ``features/mappings/erp_lines.yaml`` is a worked
example.

Every key is optional; tables the mapping leaves out are found by their contract names. Column
names are normalised here, once, at the boundary; nothing deeper sees an export's own names.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kam.features.contract import TABLES, Table
from kam.features.errors import DataContractError

FORMATS = ("csv", "parquet", "whitespace")
KEYS = (
    "file",
    "format",
    "header",
    "names",
    "columns",
    "date_format",
    "id_from_row",
    "sep",
    "encoding",
    "missing_values",
    "revenue_from",
    "credit_notes",
)
ORDERS_ONLY = ("revenue_from", "credit_notes")
REVENUE_FROM_KEYS = ("quantity", "unit_price")
CREDIT_NOTES_KEYS = ("id_prefix", "column", "negative_quantity")

BUILTIN_MAPPINGS = Path(__file__).with_name("mappings")
"""Folder of the mappings shipped with the package (e.g. ``cdnow.yaml``)."""


class MappingError(DataContractError):
    """The mapping file is missing, not YAML, or names a key, table or column it should not."""


@dataclass(frozen=True)
class TableMapping:
    """How to read one contract table from an export.

    ``columns`` maps source column names onto contract names; ``date_format`` maps contract date
    columns onto ``strptime`` formats; ``id_from_row`` names an id column to generate from the
    1-based row number. ``revenue_from`` holds the ``quantity`` and ``unit_price`` columns revenue
    is computed from; ``credit_prefixes`` (matched against ``credit_column``, or the column read as
    ``order_id`` when None) and ``credit_negative_quantity`` mark the lines kept as credits.
    """

    table: str
    file: str | None = None
    format: str | None = None
    header: bool = True
    names: tuple[str, ...] | None = None
    columns: dict[str, str] = field(default_factory=dict)
    date_format: dict[str, str] = field(default_factory=dict)
    id_from_row: str | None = None
    sep: str | None = None
    encoding: str | None = None
    missing_values: tuple[str, ...] = ()
    revenue_from: dict[str, str] | None = None
    credit_prefixes: tuple[str, ...] = ()
    credit_column: str | None = None
    credit_negative_quantity: bool = False

    @property
    def marks_credits(self) -> bool:
        """Whether the mapping marks some lines as credits."""
        return bool(self.credit_prefixes) or self.credit_negative_quantity


def load_mapping(path: Path) -> dict[str, TableMapping]:
    """Read and check a mapping file.

    Parameters
    ----------
    path
        YAML file with one entry per contract table (see the module docstring).

    Returns
    -------
    dict[str, TableMapping]
        The mapping of each table the file mentions, by table name.

    Raises
    ------
    MappingError
        When the file is missing or not YAML, or an entry names an unknown table, key or contract
        column, or a value has the wrong type; the message names the table and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"mapping file {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise MappingError(f"mapping {path} is not valid YAML: {err}") from err
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise MappingError(
            f"mapping {path}: expected one entry per table ({', '.join(TABLES)}), "
            f"got a {type(document).__name__}"
        )
    return {str(name): _table_mapping(path, str(name), entry) for name, entry in document.items()}


def _table_mapping(path: Path, name: str, entry: Any) -> TableMapping:
    if name not in TABLES:
        raise MappingError(
            f"mapping {path}: '{name}' is not a table of the data contract "
            f"(tables: {', '.join(TABLES)})"
        )
    table = TABLES[name]

    def fail(key: str, problem: str) -> MappingError:
        return MappingError(f"mapping {path}: table '{name}', key '{key}': {problem}")

    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        raise MappingError(
            f"mapping {path}: table '{name}' must be a set of keys ({', '.join(KEYS)}), "
            f"got {entry!r}"
        )
    for key in entry:
        if key not in KEYS:
            raise fail(str(key), f"not a mapping key (keys: {', '.join(KEYS)})")

    file = _optional_str(entry, "file", fail)
    fmt = _optional_str(entry, "format", fail)
    if fmt is not None and fmt not in FORMATS:
        raise fail("format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    header = entry.get("header", True)
    if not isinstance(header, bool):
        raise fail("header", f"expected true or false, got {header!r}")
    names = _names(entry.get("names"), fail)
    if fmt == "parquet" and (names is not None or "header" in entry):
        raise fail("names" if names is not None else "header", "does not apply to parquet files")
    if not header and names is None:
        raise fail("header", "a file without a header needs 'names' for its columns")

    columns = _columns(entry.get("columns"), table, fail)
    date_format = _date_format(entry.get("date_format"), table, fail)
    id_from_row = _optional_str(entry, "id_from_row", fail)
    if id_from_row is not None:
        ids = [c.name for c in table.columns if c.kind == "id"]
        if id_from_row not in ids:
            raise fail(
                "id_from_row",
                f"expected an id column of {name} ({', '.join(ids)}), got {id_from_row!r}",
            )
        if id_from_row in columns.values():
            raise fail("id_from_row", f"{id_from_row} is also mapped from a column under 'columns'")

    sep = _optional_str(entry, "sep", fail)
    if sep is not None and fmt in ("parquet", "whitespace"):
        raise fail("sep", f"does not apply to {fmt} files")
    encoding = _optional_str(entry, "encoding", fail)
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError as err:
            raise fail("encoding", f"unknown encoding {encoding!r}") from err

    missing_values = _missing_values(entry.get("missing_values"), fail)

    for key in ORDERS_ONLY:
        if key in entry and name != "orders":
            raise fail(key, "applies to the orders table only")
    revenue_from = _revenue_from(entry.get("revenue_from"), fail)
    if revenue_from is not None and "revenue" in columns.values():
        raise fail("revenue_from", "revenue is also mapped from a column under 'columns'")
    prefixes, credit_column, negative_quantity = _credit_notes(entry.get("credit_notes"), fail)
    if prefixes and credit_column is None and id_from_row == "order_id":
        raise fail(
            "credit_notes",
            "order_id is numbered from the rows, so 'id_prefix' needs 'column': the column "
            "holding the invoice or credit note id",
        )
    return TableMapping(
        table=name,
        file=file,
        format=fmt,
        header=header,
        names=names,
        columns=columns,
        date_format=date_format,
        id_from_row=id_from_row,
        sep=sep,
        encoding=encoding,
        missing_values=missing_values,
        revenue_from=revenue_from,
        credit_prefixes=prefixes,
        credit_column=credit_column,
        credit_negative_quantity=negative_quantity,
    )


def _optional_str(entry: dict[Any, Any], key: str, fail: Any) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise fail(key, f"expected a non-empty string, got {value!r}")
    return value


def _names(value: Any, fail: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise fail("names", f"expected a list of column names, got {value!r}")
    names = tuple(str(v) for v in value)
    if len(set(names)) != len(names):
        raise fail("names", f"column names repeat: {list(names)}")
    return names


def _missing_values(value: Any, fail: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail("missing_values", f"expected a spelling or a list of spellings, got {value!r}")
    return tuple(value)


def _columns(value: Any, table: Table, fail: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("columns", f"expected source name: contract name pairs, got {value!r}")
    columns = {str(source): str(target) for source, target in value.items()}
    for source, target in columns.items():
        if target not in table.names:
            raise fail(
                "columns",
                f"'{source}' maps to '{target}', which is not a column of {table.name} "
                f"(columns: {', '.join(table.names)})",
            )
    targets = list(columns.values())
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise fail("columns", f"several source columns map to {', '.join(repeated)}")
    return columns


def _date_format(value: Any, table: Table, fail: Any) -> dict[str, str]:
    dates = [c.name for c in table.columns if c.kind == "date"]
    if value is None:
        return {}
    if isinstance(value, str) and value:
        return dict.fromkeys(dates, value)
    if isinstance(value, dict):
        formats = {str(k): v for k, v in value.items()}
        for column, fmt in formats.items():
            if column not in dates:
                raise fail(
                    "date_format",
                    f"'{column}' is not a date column of {table.name} "
                    f"(date columns: {', '.join(dates)})",
                )
            if not isinstance(fmt, str) or not fmt:
                raise fail(
                    "date_format", f"expected a format such as '%Y%m%d' for {column}, got {fmt!r}"
                )
        return formats
    raise fail(
        "date_format", f"expected a format such as '%Y%m%d' (or one per date column), got {value!r}"
    )


def _revenue_from(value: Any, fail: Any) -> dict[str, str] | None:
    if value is None:
        return None
    expected = "{quantity: <column>, unit_price: <column>}"
    if not isinstance(value, dict):
        raise fail("revenue_from", f"expected {expected}, got {value!r}")
    for key in value:
        if key not in REVENUE_FROM_KEYS:
            raise fail("revenue_from", f"'{key}' is not one of {', '.join(REVENUE_FROM_KEYS)}")
    for key in REVENUE_FROM_KEYS:
        if key not in value:
            raise fail("revenue_from", f"'{key}' is missing: expected {expected}")
        column = value[key]
        if not isinstance(column, str) or not column:
            raise fail("revenue_from", f"'{key}': expected a column name, got {column!r}")
    return {key: value[key] for key in REVENUE_FROM_KEYS}


def _credit_notes(value: Any, fail: Any) -> tuple[tuple[str, ...], str | None, bool]:
    if value is None:
        return (), None, False
    expected = "{id_prefix: <prefix or list>, column: <column>, negative_quantity: true}"
    if not isinstance(value, dict) or not value:
        raise fail("credit_notes", f"expected {expected}, got {value!r}")
    for key in value:
        if key not in CREDIT_NOTES_KEYS:
            raise fail("credit_notes", f"'{key}' is not one of {', '.join(CREDIT_NOTES_KEYS)}")
    prefixes = value.get("id_prefix", [])
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    if (
        not isinstance(prefixes, list)
        or ("id_prefix" in value and not prefixes)
        or not all(isinstance(p, str) and p for p in prefixes)
    ):
        raise fail(
            "credit_notes",
            f"'id_prefix': expected a prefix or a list of prefixes, got {value['id_prefix']!r}",
        )
    column = value.get("column")
    if column is not None and (not isinstance(column, str) or not column):
        raise fail("credit_notes", f"'column': expected a column name, got {column!r}")
    if column is not None and not prefixes:
        raise fail("credit_notes", "'column' names where to match 'id_prefix', which is missing")
    negative = value.get("negative_quantity", False)
    if not isinstance(negative, bool):
        raise fail("credit_notes", f"'negative_quantity': expected true or false, got {negative!r}")
    return tuple(prefixes), column, negative
