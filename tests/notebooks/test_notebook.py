"""The retraining notebook runs top to bottom from its own folder on a demo store, with no
network, and promotes nothing unless its flag cell says so."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient

from kam.features.ingest import ingest
from kam.features.synthetic import simulate
from kam.training.settings import TrainSettings

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "retrain.ipynb"


def _outputs(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )


def test_retrain_notebook_executes_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    workdir = tmp_path / "project" / ".kam"
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    monkeypatch.setenv("KAM_WORKDIR", str(workdir))
    monkeypatch.setenv("KAM_MODEL_NAME", "kam-notebook")
    settings = TrainSettings()
    simulate(400, 5, 5, settings.resolved_data_dir)
    ingest(settings.resolved_data_dir, settings.store_url_for())

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Jupyter's default: the kernel starts in the notebook's own folder
    NotebookClient(
        notebook, timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()

    outputs = _outputs(notebook)
    assert f"working directory: {workdir}" in outputs
    assert "candidate: version 1" in outputs
    images = [
        out
        for cell in notebook.cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert len(images) >= 3  # calibration, gains, importance (and any plot a run adds)
    assert "top driver:" in outputs
    # a first version would become champion at once; the flag cell says not to
    assert "would be promoted (PROMOTE = False, nothing changed)" in outputs
    assert "first champion" in outputs
    # the registry named explicitly: an earlier test may have set another one process-wide
    uri = settings.resolved_tracking_uri
    client = MlflowClient(uri, registry_uri=uri)
    assert client.get_registered_model("kam-notebook").aliases == {}


def test_the_notebook_uses_only_the_facade() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    imports = [line for line in code.splitlines() if line.startswith(("import ", "from "))]
    assert [line for line in imports if "kam" in line] == ["import kam"]
    assert "kam." not in code.replace("kam.open_project", "")
    flags = [cell.source for cell in notebook.cells if cell.source.startswith("PROMOTE =")]
    assert flags and flags[0].startswith("PROMOTE = False")
