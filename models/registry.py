"""Registry names and loading the scoring bundle by alias."""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from kam.models.errors import ModelNotLoadedError
from kam.models.integrity import BundleIntegrityError, check_bundle
from kam.models.metadata import TrainingMetadata
from kam.models.scorer import Scorer

CHAMPION = "champion"

logger = logging.getLogger(__name__)


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


class TrackingStoreMissingError(ModelNotLoadedError):
    """The MLflow database the settings name does not exist."""


# the identity (device, inode) of each SQLite tracking database when it was last opened
_DATABASES: dict[str, tuple[int, int]] = {}


def sqlite_path(tracking_uri: str | None) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI; None for any other kind of store."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///")
    return None if path in {"", ":memory:"} else Path(path.split("?", 1)[0])


def check_tracking_store(tracking_uri: str | None) -> None:
    """Refuse a SQLite tracking database that is not there; reconnect to one that was replaced.

    MLflow would create an empty database in place of a missing one, and then every model
    would look unregistered. And it keeps its connections to a database file open, so a file
    replaced while the service runs would otherwise be read as it was before (or not at all).

    Raises
    ------
    TrackingStoreMissingError
        Naming the file and the setting.
    """
    path = sqlite_path(tracking_uri)
    if path is None or tracking_uri is None:
        return
    try:
        found = path.stat()
    except OSError:
        raise TrackingStoreMissingError(
            f"no MLflow database at {path} (KAM_TRACKING_URI={tracking_uri}); serving will not "
            "create an empty one: point KAM_TRACKING_URI at the database `kam train` wrote"
        ) from None
    identity = (found.st_dev, found.st_ino)
    if _DATABASES.get(tracking_uri, identity) != identity:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

        for store in (Registry, Tracking):
            engine = store._engine_map.get(tracking_uri)
            if engine is not None:
                engine.dispose()  # pooled connections still read the replaced file
        logger.info("the MLflow database %s was replaced: reconnected", path)
    _DATABASES[tracking_uri] = identity


def _load_checked(uri: str) -> Any:
    """Download the bundle once, check its files, then load the pyfunc from that copy.

    Loading the checked copy (not the URI again) means what LightGBM parses is what was
    checked, even if the registry's files change meanwhile.
    """
    with tempfile.TemporaryDirectory(prefix="kam-bundle-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        how = check_bundle(local)
        logger.debug("bundle %s checked by %s", uri, how)
        path_before = list(sys.path)
        try:
            pyfunc = mlflow.pyfunc.load_model(str(local))
        finally:
            # MLflow puts the bundle's code folder first on sys.path at every load; kam is
            # imported already, so it is not needed and would pile up one entry per reload
            sys.path[:] = [p for p in sys.path if p in path_before or not p.startswith(tmp)]
        return pyfunc.unwrap_python_model()


def load_model(uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """Load the scoring bundle at ``uri`` (``models:/name@alias``, ``models:/name/3``, ``runs:/``).

    Raises
    ------
    ModelNotLoadedError
        When nothing is registered under the name or alias, naming the URI, or when the
        bundle's files fail their check (:mod:`kam.models.integrity`).
    TrackingStoreMissingError
        When the SQLite tracking database is not there.
    """
    check_tracking_store(tracking_uri)
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
        bundle = _load_checked(uri)
    except (MlflowException, OSError, BundleIntegrityError) as err:
        raise ModelNotLoadedError(f"cannot load model {uri}: {err}") from err
    loaded = LoadedModel(bundle.scorer, uri, name, version, alias, run_id, metrics)
    try:
        loaded.metadata  # noqa: B018 - read now: a bundle whose metadata is unreadable is refused
    except ValueError as err:
        raise ModelNotLoadedError(f"cannot load model {uri}: {err}") from err
    return loaded
