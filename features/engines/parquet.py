"""The store's input tables as Parquet folders, the form the Spark engine reads.

A table is ``<dir>/<table>.parquet`` or ``<dir>/<table>/``: one file or a folder of files,
Hive-partitioned (``year=2024/``) or not. :func:`export_tables` writes a DuckDB store's clean
tables in that form, with the order lines partitioned by year, as a warehouse would hold them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kam.features.contract import TABLES
from kam.features.store import input_tables

# the partition column a user's order lines most often carry; read back as a plain column
PARTITION_COLUMN = "year"


def table_path(root: Path, name: str) -> Path | None:
    """Where table ``name`` lies under ``root`` (a Parquet file or folder), if anywhere."""
    for candidate in (root / f"{name}.parquet", root / name):
        if candidate.is_file() or (candidate.is_dir() and any(candidate.rglob("*.parquet"))):
            return candidate
    return None


def export_tables(con: Any, out: Path, *, partition_orders: bool = True) -> list[str]:
    """Write every contract table of a DuckDB store as a Parquet folder under ``out``.

    Parameters
    ----------
    con
        Ibis DuckDB connection to the store.
    out
        Target folder; each table goes to ``out/<table>/``, replacing what was there.
    partition_orders
        Partition the order lines by the year of ``order_date`` (``out/orders/year=YYYY/``).

    Returns
    -------
    list of str
        The tables written.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(input_tables(con)):
        target = out / name
        if target.exists():
            _remove(target)
        if name == "orders" and partition_orders:
            con.raw_sql(
                f"COPY (SELECT *, year(order_date) AS {PARTITION_COLUMN} FROM orders) "
                f"TO '{target}' (FORMAT parquet, PARTITION_BY ({PARTITION_COLUMN}))"
            )
        else:
            target.mkdir(parents=True)
            con.raw_sql(f"COPY {name} TO '{target / 'part-0.parquet'}' (FORMAT parquet)")
        written.append(name)
    return written


def _remove(path: Path) -> None:
    if path.is_file():
        path.unlink()
        return
    for child in sorted(path.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    path.rmdir()


__all__ = ["PARTITION_COLUMN", "TABLES", "export_tables", "table_path"]
