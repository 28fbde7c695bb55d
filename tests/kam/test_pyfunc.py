"""The registered pyfunc is the product: MLflow's own loader gives what ``kam score`` gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from kam.features.snapshots import build_snapshots, data_end
from kam.models.bundle import log_bundle
from kam.models.errors import FeatureRowError
from kam.models.registry import load_model
from kam.pyfunc import ProductBundle, score_rows
from kam.serving.record import RECORD
from kam.serving.scoring.batch import score_frame
from tests.world import World

NAME = "kam-product"


@pytest.fixture(scope="module")
def product(small_world: World) -> dict:
    """The small world's scorer registered as the product bundle, and its book at data end."""
    model = small_world.model()
    con = small_world.connect()
    day = data_end(con)
    book = build_snapshots(con, [day])
    con.disconnect()
    # kam score's scoring of the same feature rows (a second snapshot may differ in the last
    # digits: DuckDB adds in parallel), without the action history the pyfunc cannot see
    scores = score_frame(book, model, as_of=day)
    mlflow.set_tracking_uri(small_world.tracking)
    mlflow.set_registry_uri(small_world.tracking)
    mlflow.set_experiment("serving-tests")  # the world's: its artifacts stay in its folder
    with mlflow.start_run():
        info = log_bundle(model.scorer, book, registered_name=NAME, bundle=ProductBundle)
    uri = f"models:/{NAME}/{info.registered_model_version}"
    return {"uri": uri, "book": book, "scores": scores, "day": day, "world": small_world,
            "pyfunc": mlflow.pyfunc.load_model(uri), "features": list(model.scorer.spec.names)}


def _rows(product: dict, n: int) -> pd.DataFrame:
    book = product["book"].head(n)
    numeric = [c for c in product["features"] if c not in ("industry", "region", "spend_tier")]
    rows = book[["account_id", "as_of", *product["features"]]].copy()
    return rows.astype(dict.fromkeys(numeric, "float64"))


def test_mlflow_loader_returns_the_score_record_of_kam_score(product: dict) -> None:
    rows = _rows(product, 40)
    out = product["pyfunc"].predict(rows)
    assert list(out.columns) == list(RECORD.names)
    assert out["account_id"].tolist() == rows["account_id"].astype(str).tolist()
    expected = product["scores"].set_index("account_id").loc[out["account_id"]]
    for column in ("defection_probability", "value", "value_low", "value_high", "value_at_risk"):
        np.testing.assert_allclose(out[column], expected[column], rtol=1e-6, err_msg=column)
    for column in ("tier", "relationship_stage", "top_driver", "first_action"):
        assert out[column].tolist() == expected[column].tolist(), column
    drivers = [json.loads(text) for text in out["drivers"]]
    assert drivers == [json.loads(text) for text in expected["drivers"]]
    assert sum(bool(d) for d in drivers) > 30
    actions = [json.loads(text) for text in out["actions"]]
    assert actions == [json.loads(text) for text in expected["actions"]]
    assert sum(bool(a) for a in actions) > 30
    assert {"action_id", "title", "owner", "due_date"} <= set(next(a for a in actions if a)[0])
    assert len(set(out["tier"])) > 1
    assert sorted(out["rank"]) == list(range(1, 41))
    assert (out["as_of"] == product["day"]).all()


def test_a_sparse_row_with_nan_scores(product: dict) -> None:
    sparse = pd.DataFrame(
        {"recency_days": [12.0, np.nan], "orders_365d": [np.nan, 3.0], "region": ["East", None]}
    )
    out = product["pyfunc"].predict(sparse)
    assert len(out) == 2
    assert out["defection_probability"].between(0, 1).all()
    assert (out["value_low"] <= out["value_high"]).all()
    assert out["account_id"].isna().all()
    assert all(isinstance(json.loads(text), list) for text in out["actions"])


def test_a_category_the_api_refuses_is_refused_naming_the_field(product: dict) -> None:
    with pytest.raises(FeatureRowError, match="region: unknown category 'Atlantis'"):
        product["pyfunc"].predict(pd.DataFrame({"region": ["Atlantis"], "recency_days": [3.0]}))


def test_the_schema_declares_every_feature_optional(product: dict) -> None:
    schema = product["pyfunc"].metadata.get_input_schema()
    specs = {c.name: c for c in schema.inputs}
    assert set(product["features"]) | {"account_id", "as_of"} == set(specs)
    assert not any(c.required for c in specs.values())
    assert {specs[n].type.name for n in product["features"]} == {"double", "string"}
    output = product["pyfunc"].metadata.get_output_schema().input_names()
    assert output == list(RECORD.names)


def test_the_service_and_kam_score_still_load_the_scorer(product: dict) -> None:
    loaded = load_model(product["uri"], product["world"].tracking)
    assert loaded.version is not None
    assert loaded.scorer.spec.names == tuple(product["features"])


def test_score_rows_names_columns_that_are_not_features(product: dict) -> None:
    model = product["world"].model()
    with pytest.raises(FeatureRowError, match="recency_dyas: unknown feature"):
        score_rows(model, pd.DataFrame({"recency_dyas": [3.0]}))
    with pytest.raises(MlflowException):
        # MLflow itself refuses what it cannot convert safely, naming the column
        product["pyfunc"].predict(pd.DataFrame({"recency_days": ["soon"]}))


def test_the_bundle_loads_where_kam_is_not_installed(product: dict, tmp_path: Path) -> None:
    folder = mlflow.artifacts.download_artifacts(product["uri"], dst_path=str(tmp_path / "m"))
    rows = tmp_path / "rows.parquet"
    _rows(product, 3).to_parquet(rows)
    probe = (
        "import sys, mlflow, pandas as pd\n"
        # the development install's finder is what makes kam importable: drop it
        "sys.meta_path = [f for f in sys.meta_path\n"
        "                 if not getattr(f, '__module__', '').startswith('__editable__')]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('kam') is None, 'kam is importable'\n"
        f"m = mlflow.pyfunc.load_model({folder!r})\n"
        f"out = m.predict(pd.read_parquet({str(rows)!r}))\n"
        "import kam.pyfunc\n"
        "print(len(out), out['tier'].notna().all(), kam.pyfunc.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count, tiers, origin = done.stdout.split()
    assert (count, tiers) == ("3", "True") and origin.startswith(folder)
