"""Registry names and loading the scoring bundle by alias."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from kam.models.errors import ModelNotLoadedError
from kam.models.metadata import TrainingMetadata
from kam.models.scorer import Scorer

CHAMPION = "champion"


def alias_uri(name: str, alias: str = CHAMPION) -> str:
    """``models:/<name>@<alias>``."""
    return f"models:/{name}@{alias}"


@dataclass(frozen=True)
class LoadedModel:
    """A scorer with what the registry knows about it."""

    scorer: Scorer
    uri: str
    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    metrics: dict[str, float]

    @cached_property
    def metadata(self) -> TrainingMetadata:
        """How the model was trained (read once from the bundle's metadata)."""
        return TrainingMetadata.from_meta(self.scorer.meta)


def load_model(uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """Load the scoring bundle at ``uri`` (``models:/name@alias``, ``models:/name/3``, ``runs:/``).

    Raises
    ------
    ModelNotLoadedError
        When nothing is registered under the name or alias, naming the URI.
    """
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    name = version = alias = run_id = None
    metrics: dict[str, float] = {}
    client = MlflowClient()
    try:
        if uri.startswith("models:/"):
            ref = uri.removeprefix("models:/")
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, number = ref.rsplit("/", 1)
                mv = client.get_model_version(name, number)
            version, run_id = str(mv.version), mv.run_id
            if run_id:
                metrics = dict(client.get_run(run_id).data.metrics)
        pyfunc = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as err:
        raise ModelNotLoadedError(f"cannot load model {uri}: {err}") from err
    bundle: Any = pyfunc.unwrap_python_model()
    loaded = LoadedModel(bundle.scorer, uri, name, version, alias, run_id, metrics)
    try:
        loaded.metadata  # noqa: B018 - read now: a bundle whose metadata is unreadable is refused
    except ValueError as err:
        raise ModelNotLoadedError(f"cannot load model {uri}: {err}") from err
    return loaded
