"""Arrow building blocks for the simulator: fast string ids, contract schemas, appending sinks.

Tables are written chunk by chunk through one open writer per file, so memory stays bounded by
the size of a chunk of accounts whatever the size of the world.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kam.features.contract import TABLES, Table

# Day precision is enough; microseconds match what pandas produces when it parses dates.
TIMESTAMP = pa.timestamp("us")
_KIND_TYPES = {
    "id": pa.string(),
    "date": TIMESTAMP,
    "number": pa.float64(),
    "category": pa.string(),
    "text": pa.string(),
}


def contract_schema(table: Table) -> pa.Schema:
    """The Arrow schema of a data-contract table, in the contract's column order."""
    return pa.schema([pa.field(col.name, _KIND_TYPES[col.kind]) for col in table.columns])


def fixed_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """String ids ``<prefix><number zero-padded to width>`` built without a Python loop."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.size and (numbers.min() < 0 or numbers.max() >= 10**width):
        raise ValueError(f"ids with prefix {prefix!r} do not fit in {width} digits")
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    row = head.size + width
    buf = np.empty((numbers.size, row), dtype=np.uint8)
    buf[:, : head.size] = head
    rest = numbers.copy()
    for k in range(row - 1, head.size - 1, -1):
        buf[:, k] = rest % 10 + ord("0")
        rest //= 10
    offsets = np.arange(numbers.size + 1, dtype=np.int32) * row
    return pa.StringArray.from_buffers(
        numbers.size, pa.py_buffer(offsets), pa.py_buffer(buf.tobytes())
    )


def lookup_strings(codes: np.ndarray, labels: Sequence[str], valid: np.ndarray | None = None
                   ) -> pa.Array:
    """Plain string column from integer codes into ``labels`` (null where ``valid`` is False)."""
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    indices = pa.array(np.asarray(codes, dtype=np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(labels), pa.string())).cast(
        pa.string()
    )


def day_timestamps(days: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Timestamps from days since 1970-01-01 (null where ``valid`` is False)."""
    values = np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[us]")
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    return pa.array(values, type=TIMESTAMP, mask=mask)


class TableSink:
    """One output file, written in appended pieces (Parquet row groups or CSV batches).

    Parameters
    ----------
    path : Path
        File to write; its parent must exist.
    schema : pa.Schema
        Schema of every piece.
    file_format : str
        ``parquet`` or ``csv``; CSV files hold dates as ``YYYY-MM-DD``.
    """

    def __init__(self, path: Path, schema: pa.Schema, file_format: str = "parquet") -> None:
        self.path = path
        self.schema = schema
        self.file_format = file_format
        self.rows = 0
        if file_format == "parquet":
            self._writer: pq.ParquetWriter | pacsv.CSVWriter = pq.ParquetWriter(
                path, schema, compression="zstd"
            )
            self._out_schema = schema
        else:
            self._out_schema = pa.schema([
                pa.field(f.name, pa.date32()) if f.type == TIMESTAMP else f for f in schema
            ])
            self._writer = pacsv.CSVWriter(path, self._out_schema)

    def write(self, table: pa.Table) -> None:
        """Append ``table`` (columns in the sink's schema order)."""
        table = table.select(self.schema.names).cast(self.schema)
        if self.file_format == "csv":
            table = table.cast(self._out_schema)
        if table.num_rows:
            self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        """Finish the file (an empty table still gets its header or schema)."""
        self._writer.close()


def contract_sink(out: Path, name: str, file_format: str) -> TableSink:
    """A sink for data-contract table ``name`` at ``out/<name>.<format>``."""
    schema = contract_schema(TABLES[name])
    return TableSink(out / f"{name}.{file_format}", schema, file_format)
