"""The same snapshots on Spark as on DuckDB: every feature within 1e-9, every label identical.

The Spark side reads the world's tables as Parquet folders (order lines partitioned by year)
through the Spark engine, ``connect("spark:///...")``, and runs the unchanged feature code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kam.features.engines.parquet import PARTITION_COLUMN
from kam.features.errors import DataContractError
from kam.features.snapshots import as_of_range, build_snapshots, data_end
from kam.features.store import connect
from tests.spark_world import SparkWorld


@pytest.fixture(scope="module")
def engines(spark_world: SparkWorld) -> Iterator[tuple[Any, Any]]:
    duck = spark_world.duckdb()
    yield duck, spark_world.spark()
    duck.disconnect()


def assert_same_snapshots(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    assert list(spark.columns) == list(duck.columns)
    assert len(spark) == len(duck) > 0
    assert (spark["account_id"] == duck["account_id"]).all()
    assert (spark["as_of"] == duck["as_of"]).all()
    for name in duck.columns:
        if name in {"label_defection", "label_observed"}:
            pd.testing.assert_series_equal(spark[name], duck[name], check_names=True)
            continue
        assert spark[name].dtype == duck[name].dtype, name
        if duck[name].dtype.kind == "f":
            a, b = duck[name].to_numpy(), spark[name].to_numpy()
            assert (np.isnan(a) == np.isnan(b)).all(), f"{name}: nulls differ"
            # relative 1e-9; near zero, 1e-12 of the column's scale: engines add in their own
            # order, and a feature that subtracts two close means (the trends) turns last-bit
            # differences of the means into large relative ones of a tiny result
            scale = float(np.nanmax(np.abs(a))) if np.isfinite(a).any() else 0.0
            close = np.isclose(b, a, rtol=1e-9, atol=1e-12 * scale, equal_nan=True)
            worst = float(np.nanmax(np.abs(b - a))) if np.isfinite(a).any() else 0.0
            assert close.all(), (
                f"{name}: {int((~close).sum())} rows differ beyond 1e-9 (largest {worst:g}, "
                f"column scale {scale:g})"
            )
        else:
            pd.testing.assert_series_equal(spark[name], duck[name], check_names=True)


@pytest.mark.parametrize(
    ("horizon", "population", "decline", "every"),
    [("365d", "365d", 0.5, "1y"), ("26w", "ever", 1.0, "9mo")],
)
def test_spark_snapshots_equal_duckdb(
    engines: tuple[Any, Any], horizon: str, population: str, decline: float, every: str
) -> None:
    duck, spark = engines
    end = data_end(duck)
    assert data_end(spark) == end
    # a few as_of dates, some with labels observed and some without
    dates = sorted({*as_of_range(end - pd.DateOffset(years=2), end, every), end})
    window = None if population == "ever" else population
    built = [
        build_snapshots(con, dates, horizon=horizon, activity_window=window, decline=decline)
        for con in (duck, spark)
    ]
    assert built[0]["label_observed"].any() and not built[0]["label_observed"].all()
    assert built[0]["label_defection"].sum() > 0
    assert_same_snapshots(*built)


def test_spark_reads_the_tables_where_they_lie(spark_world: SparkWorld) -> None:
    years = sorted(p.name for p in (spark_world.parquet / "orders").iterdir() if p.is_dir())
    assert len(years) >= 3 and all(y.startswith(f"{PARTITION_COLUMN}=") for y in years)
    spark = spark_world.spark()
    assert {"orders", "accounts", "interactions"} <= set(spark.list_tables())


def test_spark_store_names_what_breaks_the_contract(tmp_path: Any) -> None:
    # each check fails before a view is replaced, so the session's views stay the world's
    with pytest.raises(DataContractError, match="no orders under"):
        connect(f"spark:///{tmp_path}")
    broken = tmp_path / "broken"
    (broken / "orders").mkdir(parents=True)
    pd.DataFrame({"order_id": ["o1"], "account_id": ["a1"], "revenue": [1.0]}).to_parquet(
        broken / "orders" / "part-0.parquet"
    )
    with pytest.raises(DataContractError, match=r"lacks the required column.*order_date"):
        connect(f"spark:///{broken}")
    pd.DataFrame(
        {"order_id": ["o1"], "account_id": ["a1"], "order_date": ["2024-01-01"], "revenue": [1.0]}
    ).to_parquet(broken / "orders" / "part-0.parquet")
    with pytest.raises(DataContractError, match=r"order_date of table orders.*is string"):
        connect(f"spark:///{broken}")
