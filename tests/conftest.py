"""Fixtures shared by the whole suite: simulated worlds, built once per run."""

from __future__ import annotations

import pytest

from tests.spark_world import SparkWorld, build_spark_world
from tests.world import LARGE_ACCOUNTS, SMALL_ACCOUNTS, World, shared_world


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """600 accounts over five years: enough for a model that beats its baselines."""
    return shared_world(tmp_path_factory, SMALL_ACCOUNTS)


@pytest.fixture(scope="session")
def large_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """3,000 accounts over five years, for the ground-truth checks (slow to build)."""
    return shared_world(tmp_path_factory, LARGE_ACCOUNTS)


@pytest.fixture(scope="session")
def spark_world(tmp_path_factory: pytest.TempPathFactory) -> SparkWorld:
    """150 accounts over three years, in a DuckDB store and as Parquet for the Spark engine."""
    return build_spark_world(tmp_path_factory)
