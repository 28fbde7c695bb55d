"""Registry settings: where MLflow tracks runs and which registered model they produce.

On top of the store settings, since the embedded tracking store lives in the same working
directory. Environment variables: ``KAM_TRACKING_URI``, ``KAM_EXPERIMENT``, ``KAM_MODEL_NAME``,
``KAM_ARTIFACT_LOCATION``.
"""

from __future__ import annotations

from pydantic import Field

from kam.features.settings import StoreSettings


class RegistrySettings(StoreSettings):
    """MLflow tracking and the registered model's name."""

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default sqlite:///<workdir>/mlflow.db"
    )
    experiment: str = Field("kam", description="MLflow experiment name")
    model_name: str = Field("kam-key-accounts", description="registered model name")
    artifact_location: str | None = Field(
        None,
        description="where a new experiment keeps its artifacts; default <workdir>/mlartifacts "
        "with the embedded tracking store, the tracking server's own choice with a tracking_uri",
    )

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{self.workdir.resolve() / 'mlflow.db'}"

    @property
    def resolved_artifact_location(self) -> str | None:
        if self.artifact_location or self.tracking_uri:
            return self.artifact_location
        return (self.workdir.resolve() / "mlartifacts").as_uri()
