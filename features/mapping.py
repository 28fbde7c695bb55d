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
)

BUILTIN_MAPPINGS = Path(__file__).with_name("mappings")
"""Folder of the mappings shipped with the package (e.g. ``cdnow.yaml``)."""


class MappingError(DataContractError):
    """The mapping file is missing, not YAML, or names a key, table or column it should not."""


@dataclass(frozen=True)
class TableMapping:
    """How to read one contract table from an export.

    ``columns`` maps source column names onto contract names; ``date_format`` maps contract date
    columns onto ``strptime`` formats; ``id_from_row`` names an id column to generate from the
    1-based row number.
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
    )


def _optional_str(entry: dict, key: str, fail: Any) -> str | None:
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
