"""The retraining notebook runs top to bottom on a demo store, with no network."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient

from kam.features.ingest import ingest
from kam.features.synthetic import simulate
from kam.models.registry import CHAMPION
from kam.training.promote import promote
from kam.training.run import train_candidate
from kam.training.settings import TrainSettings, train_request

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "retrain.ipynb"


def test_retrain_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    monkeypatch.setenv("KAM_WORKDIR", str(tmp_path))
    monkeypatch.setenv("KAM_MODEL_NAME", "kam-notebook")
    settings = TrainSettings()
    simulate(400, 5, 5, settings.resolved_data_dir)
    ingest(settings.resolved_data_dir, settings.store_url_for())
    train_candidate(train_request(settings, features=("recency_days", "tenure_days")))
    assert promote(settings.model_name, tracking_uri=settings.resolved_tracking_uri).promoted

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = "\n".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    assert "candidate: version 2" in outputs
    assert "predicts something other than champion 1: features added" in outputs
    images = [
        out
        for cell in notebook.cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert len(images) == 3
    # a full-feature candidate reads other rows than the two-feature champion: not compared as
    # if equal, and not promoted without being told
    assert "not promoted - kept version 1" in outputs and "--new-definition" in outputs
    alias = MlflowClient(settings.resolved_tracking_uri).get_model_version_by_alias(
        settings.model_name, CHAMPION
    )
    assert str(alias.version) == "1"
