"""The engines the store can run on: embedded DuckDB (default) and Spark.

The feature code is Ibis expressions and does not know which engine runs it; an engine only
decides how the store's tables are found and where results are written.
"""

from __future__ import annotations

from typing import Literal

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[Engine, ...] = ("duckdb", "spark")
