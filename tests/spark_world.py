"""A tiny simulated world on both engines: its DuckDB store and the same tables as Parquet.

Spark on two local cores pays seconds of overhead per query whatever the data, so the parity
tests use a world a few times smaller than the small one; one Spark session serves the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kam.features.engines.parquet import export_tables
from kam.features.ingest import ingest
from kam.features.store import connect
from kam.features.synthetic import simulate

ACCOUNTS = 150
YEARS = 3
SEED = 13


@dataclass
class SparkWorld:
    """The world's data folder, DuckDB store URL, Parquet folder and Spark store URL."""

    data: Path
    store: str
    parquet: Path

    @property
    def spark_store(self) -> str:
        return f"spark:///{self.parquet}"

    def duckdb(self) -> Any:
        return connect(self.store, read_only=True)

    def spark(self) -> Any:
        return connect(self.spark_store, master="local[2]")


def build_spark_world(factory: pytest.TempPathFactory) -> SparkWorld:
    root = factory.mktemp("spark-world")
    data = root / "data"
    simulate(ACCOUNTS, YEARS, SEED, data)
    store = f"duckdb:///{data / 'kam.duckdb'}"
    ingest(data, store)
    con = connect(store, read_only=True)
    export_tables(con, root / "tables")
    con.disconnect()
    return SparkWorld(data, store, root / "tables")
