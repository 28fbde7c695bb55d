"""Fixtures shared by the whole suite (simulated worlds, built once per run) and the order the
test files start in."""

from __future__ import annotations

import pytest

from tests.spark_world import SparkWorld, build_spark_world
from tests.world import LARGE_ACCOUNTS, SMALL_ACCOUNTS, World, shared_world

# The files that take longest (each trains, starts servers or a JVM), started first: the test
# workers take whole files in collection order, and one of these last would leave the other
# worker idle while it finishes.
LONGEST_FIRST = (
    "tests/training/test_tracking_server.py",
    "tests/notebooks/test_notebook.py",
    "tests/training/test_training.py",
    "tests/kam/test_project.py",
    "tests/features/test_spark_parity.py",
    "tests/serving/api/test_faults.py",
    "tests/serving/api/test_api.py",
    "tests/serving/scoring/test_spark.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))


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
