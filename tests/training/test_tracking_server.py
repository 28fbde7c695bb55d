"""MLflow on a tracking server with a PostgreSQL backend: train, promote, serve, reload.

The test starts its own PostgreSQL (Debian's binaries, temp data directory, free port) and
``mlflow server`` on it with a local artifact root, then runs the product against the server's
URI only, as ``KAM_TRACKING_URI=http://...`` would: the service reads the champion from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from kam.features.store import connect
from kam.models.registry import CHAMPION, alias_uri, load_model
from kam.serving.api.app import create_app
from kam.serving.scoring.batch import score_accounts
from kam.serving.settings import ServeSettings
from kam.serving.store import write_scores
from kam.training.promote import promote
from kam.training.run import TrainRequest, train_candidate
from tests.services import mlflow_server, postgres, postgres_bin
from tests.world import World

NAME = "kam-on-server"
ADMIN_KEY = "admin-key-0123456789abcdef"

pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="no PostgreSQL binaries (tests/services_setup.sh installs them)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("tracking-server")
    with postgres() as database, mlflow_server(database, root / "artifacts") as uri:
        yield {"uri": uri, "database": database, "root": str(root)}


def test_train_promote_serve_reload_against_a_tracking_server(
    server: dict[str, str], small_world: World, tmp_path: Path
) -> None:
    uri = server["uri"]
    # the world's own store, copied so that the scores written here stay out of it
    store_file = tmp_path / "kam.duckdb"
    store_file.write_bytes(small_world.store_file.read_bytes())
    store = f"duckdb:///{store_file}"
    request = TrainRequest(store_url=store, tracking_uri=uri, experiment="server", model_name=NAME)
    outcome = train_candidate(request)
    assert outcome.model_version == "1"

    # the runs, the registry and the champion alias live in PostgreSQL
    assert promote(NAME, tracking_uri=uri).promoted
    engine = sqlalchemy.create_engine(server["database"])
    with engine.connect() as db:
        runs = db.execute(sqlalchemy.text("SELECT count(*) FROM runs")).scalar_one()
        aliases = db.execute(
            sqlalchemy.text("SELECT alias, version FROM registered_model_aliases WHERE name = :n"),
            {"n": NAME},
        ).all()
    engine.dispose()
    assert runs >= 1
    assert [(a, str(v)) for a, v in aliases] == [(CHAMPION, "1")]
    # and the artifacts in the local artifact root
    assert any((Path(server["root"]) / "artifacts").rglob("MLmodel"))

    champion = load_model(alias_uri(NAME), uri)
    assert champion.version == "1"
    con = connect(store)
    write_scores(con, score_accounts(con, champion))
    con.disconnect()

    settings = ServeSettings(
        workdir=tmp_path, tracking_uri=uri, store_url=store, model_name=NAME,
        admin_api_keys=[ADMIN_KEY],
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["model_version"] == "1"
        model = client.get("/v1/model", headers={"X-API-Key": ADMIN_KEY}).json()
        assert model["version"] == "1"

        # a second version on the server (the same run's bundle, registered again), promoted
        # over the first; the running service swaps to it on reload
        mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
        first = mlflow.get_model_version(NAME, "1")
        # MLflow 3 sources are logged models (models:/m-...): the version names its model_id
        second = mlflow.create_model_version(
            NAME, first.source, run_id=first.run_id, tags=first.tags,
            description=first.description,
            model_id=first.model_id or first.source.removeprefix("models:/"),
        )
        assert second.version == "2"
        assert promote(NAME, tracking_uri=uri, version="2", force=True).promoted
        reloaded = client.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY})
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["model_version"] == "2"
        assert client.get("/readyz").json()["model_version"] == "2"
