"""The embedded store: clean input tables (and later scores) in a DuckDB file, read through Ibis.

The store is addressed by a URL (``duckdb:///path/kam.duckdb``, or ``spark:///folder`` for the
Spark engine over Parquet tables) so that another Ibis backend can stand in for DuckDB without
touching the feature code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ibis
import pandas as pd

from kam.features.contract import TABLES
from kam.features.errors import DataContractError


def connect(url: str, *, read_only: bool = False, **engine: Any) -> Any:
    """Open the store at ``url`` (an Ibis backend connection).

    ``spark:///folder`` opens the Spark engine over the Parquet tables in that folder
    (:mod:`kam.features.engines.spark`; ``engine`` takes its ``master`` and Spark settings).
    """
    if url.startswith("spark:///"):
        from kam.features.engines import spark

        return spark.connect(url, **engine)
    if url.startswith("duckdb:///"):
        path = Path(url.removeprefix("duckdb:///"))
        if read_only and not path.exists():
            raise DataContractError(
                f"no store at {path}: run `kam ingest --data {path.parent}` first"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return ibis.duckdb.connect(str(path), read_only=read_only)
    return ibis.connect(url)


def one_thread(con: Any) -> None:
    """Have DuckDB add floating-point sums in one order, the same every run.

    In parallel, the threads' partial sums meet in whichever order they finish, so the last
    digits of sums such as revenue_365d differ run to run; trees' split points and early
    stopping follow them, and the same data and seed gave ROC-AUC 0.7477 and 0.7489. One thread
    costs little where snapshots are a small part of the work (training, benchmarks). Other
    engines are left as they are.
    """
    if getattr(con, "name", None) == "duckdb":
        con.raw_sql("SET threads = 1")


def write_table(con: Any, name: str, frame: pd.DataFrame) -> None:
    """Replace table ``name`` in the store with ``frame``."""
    con.create_table(name, frame, overwrite=True)


def input_tables(con: Any) -> set[str]:
    """Names of the data-contract tables present in the store."""
    present = set(con.list_tables())
    return {name for name in TABLES if name in present}


def require_orders(con: Any, url: str) -> None:
    """Stop with a clear message when the store has no orders table."""
    if "orders" not in input_tables(con):
        raise DataContractError(f"the store {url} has no orders table: run `kam ingest` first")
