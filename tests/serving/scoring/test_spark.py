"""Batch scoring on Spark gives local scoring's records: figures within 1e-9, words identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kam.features.snapshots import data_end
from kam.serving.record import RECORD
from kam.serving.scoring.batch import score_accounts
from kam.serving.scoring.spark import read_scores, record_schema, score_on_spark
from tests.spark_world import SparkWorld
from tests.world import World

SCORED_AT = pd.Timestamp("2025-01-02 03:04:05")


@pytest.fixture(scope="module")
def both(spark_world: SparkWorld, small_world: World, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    # the small world's model scores the tiny world's accounts: parity needs a model, not a
    # good one
    model = small_world.model()
    duck = spark_world.duckdb()
    end = data_end(duck)
    local = score_accounts(duck, model, as_of=end, scored_at=SCORED_AT.to_pydatetime())
    duck.disconnect()
    out = tmp_path_factory.mktemp("spark-scores")
    done = score_on_spark(
        spark_world.spark(), model, out, as_of=end, scored_at=SCORED_AT.to_pydatetime()
    )
    assert done.path == out / f"as_of={end.date().isoformat()}"
    assert done.accounts == len(local)
    return local, read_scores(done.path), out


def test_spark_scores_equal_local_scores(both: tuple[pd.DataFrame, pd.DataFrame, Path]) -> None:
    local, spark, _ = both
    assert len(local) > 50
    assert list(spark.columns) == list(RECORD.names)
    assert (spark["account_id"] == local["account_id"].astype(str)).all()
    for name, kind in RECORD.store_schema.items():
        a, b = local[name], spark[name]
        if kind == "DOUBLE":
            close = np.isclose(b.to_numpy(float), a.to_numpy(float), rtol=1e-9, atol=0,
                               equal_nan=True)
            assert close.all(), f"{name}: {int((~close).sum())} accounts differ beyond 1e-9"
        elif kind in {"DATE", "TIMESTAMP"}:
            assert (pd.to_datetime(b).fillna(pd.Timestamp(0))
                    == pd.to_datetime(a).fillna(pd.Timestamp(0))).all(), name
        else:
            assert (b.astype(object).fillna("") == a.astype(object).fillna("")).all(), name
    # not vacuous: drivers and actions are there to compare
    assert local["top_driver"].notna().sum() > 10
    assert local["first_action"].notna().sum() > 10
    assert local["tier"].nunique() == 3


def test_spark_scores_are_parquet_with_the_store_schema(
    both: tuple[pd.DataFrame, pd.DataFrame, Path],
) -> None:
    _, _, out = both
    files = list(out.rglob("*.parquet"))
    assert files
    assert "defection_probability" in record_schema() and "drivers" in record_schema()
