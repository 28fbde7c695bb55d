"""The feature catalog: names, families, and agreement with what the snapshots emit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kam.features.catalog import CATALOG, Feature, available, by_name, families, markdown
from kam.features.contract import TABLES
from kam.features.snapshots import build_snapshots
from tests.features.test_snapshots import AS_OF, WORLD, WORLD_ORDERS, make_store

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = {
    "spend", "rhythm", "breadth", "price", "relationship", "service", "supply", "account",
    "season",
}
ID_AND_LABEL_COLUMNS = {
    "account_id", "as_of", "label_value", "label_prior_value", "label_defection",
    "label_observed",
}


def test_names_unique() -> None:
    names = [f.name for f in CATALOG]
    assert len(names) == len(set(names))


def test_families_known_and_non_empty() -> None:
    assert set(families()) == FAMILIES
    for family in FAMILIES:
        assert any(f.family == family for f in CATALOG), family


@pytest.mark.parametrize("feature", CATALOG, ids=lambda f: f.name)
def test_entry_is_complete(feature: Feature) -> None:
    assert feature.description and feature.description == feature.description.strip()
    assert feature.kind in {"number", "count", "category"}
    assert feature.table is None or feature.table in TABLES
    assert not feature.name.startswith("label_")


def test_by_name() -> None:
    assert by_name("recency_days").family == "rhythm"
    with pytest.raises(KeyError, match="no feature named"):
        by_name("no_such_feature")


@pytest.mark.parametrize(
    ("tables", "families_present"),
    [
        ({"orders"}, {"spend", "rhythm", "breadth", "price", "account", "season"}),
        (set(TABLES), FAMILIES),
        ({"orders", "complaints"}, {"spend", "rhythm", "breadth", "price", "account", "season",
                                    "service"}),
    ],
    ids=["orders-only", "all-tables", "orders-complaints"],
)
def test_available_by_table(tables: set[str], families_present: set[str]) -> None:
    chosen = available(tables)
    assert {f.family for f in chosen} == families_present
    assert chosen == [f for f in CATALOG if f in chosen]  # catalog order kept


@pytest.fixture(scope="module", params=["all-tables", "transactions-only"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tables = WORLD if request.param == "all-tables" else {"orders": WORLD_ORDERS}
    return make_store(tmp_path_factory.mktemp(request.param), tables), set(tables) | {"accounts"}


def test_snapshot_columns_are_the_available_catalog(store: tuple[Any, set[str]]) -> None:
    con, tables = store
    frame = build_snapshots(con, [AS_OF])
    emitted = [c for c in frame.columns if c not in ID_AND_LABEL_COLUMNS]
    assert emitted == [f.name for f in available(tables)]


def test_category_features_are_strings_and_the_rest_numeric(
    store: tuple[Any, set[str]],
) -> None:
    con, tables = store
    frame = build_snapshots(con, [AS_OF])
    for feature in available(tables):
        column = frame[feature.name]
        if feature.kind == "category":
            assert not pd.api.types.is_numeric_dtype(column), feature.name
        else:
            assert pd.api.types.is_numeric_dtype(column), feature.name
        if feature.kind == "count":
            assert pd.api.types.is_integer_dtype(column), feature.name
            assert (column >= 0).all(), feature.name



@pytest.mark.parametrize("feature", CATALOG, ids=lambda f: f.name)
def test_numbers_and_counts_have_a_unit_and_categories_none(feature: Feature) -> None:
    if feature.kind == "category":
        assert feature.unit is None
    else:
        assert feature.unit and feature.unit == feature.unit.strip()
    if feature.name.endswith("_days") and feature.kind != "category":
        assert feature.unit == "days", feature.name


def test_the_committed_feature_page_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "features.md").read_text()
    assert committed == markdown(), (
        "docs/features.md is stale: python -m kam.features.catalog --markdown > docs/features.md"
    )


def test_the_feature_page_lists_every_feature_with_kind_and_unit() -> None:
    page = markdown()
    for feature in CATALOG:
        row = next(line for line in page.splitlines() if line.startswith(f"| `{feature.name}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1:4] == [feature.kind, feature.unit or "", feature.table or "(none)"]


def test_the_page_command_prints_the_page_and_refuses_no_choice() -> None:
    command = [sys.executable, "-m", "kam.features.catalog"]
    done = subprocess.run([*command, "--markdown"], capture_output=True, text=True, check=True)
    assert done.stdout == markdown()
    refused = subprocess.run(command, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "--markdown" in refused.stderr
