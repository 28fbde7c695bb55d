"""MLflow plumbing: the experiment, the data fingerprint and what each run logs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from kam.features.contract import EVENT_DATE, TABLES
from kam.features.store import input_tables
from kam.models.bundle import BundleFactory, ScoringBundle, log_bundle
from kam.models.scorer import Scorer


def use_tracking(tracking_uri: str, experiment: str, artifact_location: str | None) -> str:
    """Point MLflow at ``tracking_uri`` and return the experiment id (created when missing)."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(experiment, artifact_location=artifact_location)


def data_fingerprint(con: Any) -> dict[str, dict[str, Any]]:
    """Row count, event-date range and a content hash of each input table in the store."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(input_tables(con)):
        table = con.table(name)
        facts: dict[str, Any] = {"rows": int(table.count().execute())}
        date_col = EVENT_DATE.get(name)
        if date_col and facts["rows"]:
            bounds = table.aggregate(lo=table[date_col].min(), hi=table[date_col].max()).execute()
            facts["start"] = str(bounds["lo"].iloc[0].date())
            facts["end"] = str(bounds["hi"].iloc[0].date())
        columns = [c for c in TABLES[name].names if c in table.columns]
        # an order-independent hash of every row: equal content, equal fingerprint
        facts["hash"] = _hash_arrow(table.select(*columns).to_pyarrow())
        out[name] = facts
    return out


def _hash_arrow(table: Any) -> str:
    rows = pd.util.hash_pandas_object(table.to_pandas(), index=False).to_numpy()
    return hashlib.sha256(np.sort(rows).tobytes()).hexdigest()[:16]


def log_json(obj: Any, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(obj, indent=1, default=str), artifact_file)


def log_scoring_bundle(
    scorer: Scorer,
    example: pd.DataFrame,
    *,
    registered_name: str | None,
    bundle: BundleFactory = ScoringBundle,
) -> Any:
    """Log the deployed scorer in the active run as the pyfunc class ``bundle``, registering it
    under ``registered_name`` (unless None); see :func:`kam.models.bundle.log_bundle`.

    The class is handed in, not imported: the product's (:class:`kam.pyfunc.ProductBundle`)
    lives above serving, which training must not import.
    """
    return log_bundle(scorer, example, registered_name=registered_name, bundle=bundle)
