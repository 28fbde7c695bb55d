"""Simulated, ingested and trained worlds for tests, each built once per test run.

``tests/conftest.py`` offers the shared sizes as fixtures (``small_world``, ``large_world``);
call :func:`shared_world` for another size. A world is a simulated key-account history (with
its ground truth), ingested into a DuckDB store, and a model trained on it into a temporary
MLflow store; modules that need a world of their own (another size, seed or model name) call
:func:`build_world`.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kam.features.ingest import ingest
from kam.features.store import connect
from kam.features.synthetic import simulate
from kam.models.registry import LoadedModel, load_model
from kam.training.run import TrainOutcome, TrainRequest, train_candidate

SMALL_ACCOUNTS = 600
LARGE_ACCOUNTS = 3000
YEARS = 5
SEED = 11


@dataclass
class World:
    """One simulated world: its data folder, store, tracking store and trained model."""

    root: Path
    data: Path
    store: str
    tracking: str
    model_name: str
    accounts: int
    request: TrainRequest
    outcome: TrainOutcome
    _model: LoadedModel | None = field(default=None, repr=False)

    def connect(self) -> Any:
        """Read-only connection to the world's store."""
        return connect(self.store, read_only=True)

    @property
    def store_file(self) -> Path:
        return Path(self.store.removeprefix("duckdb:///"))

    def model(self) -> LoadedModel:
        """The trained model (version 1), loaded once."""
        if self._model is None:
            self._model = load_model(f"models:/{self.model_name}/1", self.tracking)
        return self._model

    def truth(self, name: str) -> pd.DataFrame:
        """A ground-truth table written by the simulator (e.g. ``defections``)."""
        return pd.read_parquet(self.data / "truth" / f"{name}.parquet")


def with_gaps(values: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A copy of ``values`` with about ``share`` of them blanked out (NaN: missing figures)."""
    values = np.asarray(values, dtype=float)
    return np.where(np.random.default_rng(seed).random(values.shape) < share, np.nan, values)


_WORLDS: dict[tuple[int, int, int], World] = {}


def build_world(
    root: Path,
    accounts: int,
    *,
    years: int = YEARS,
    seed: int = SEED,
    model_name: str | None = None,
    experiment: str = "serving-tests",
) -> World:
    """Simulate, ingest and train a world under ``root`` (model version 1, not promoted)."""
    data = root / "data"
    simulate(accounts, years, seed, data)
    store = f"duckdb:///{data / 'kam.duckdb'}"
    ingest(data, store)
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    name = model_name or f"kam-serving-{accounts}"
    request = TrainRequest(
        store_url=store,
        tracking_uri=tracking,
        experiment=experiment,
        model_name=name,
        artifact_location=(root / "artifacts").as_uri(),
    )
    outcome = train_candidate(request)
    return World(root, data, store, tracking, name, accounts, request, outcome)


def shared_world(
    factory: pytest.TempPathFactory, accounts: int, *, years: int = YEARS, seed: int = SEED
) -> World:
    """The world of this size and seed, built on first use and reused for the whole run."""
    key = (accounts, years, seed)
    if key not in _WORLDS:
        _WORLDS[key] = build_world(factory.mktemp(f"world{accounts}"), accounts, years=years,
                                   seed=seed)
    return _WORLDS[key]


def copy_world(world: World, root: Path) -> World:
    """A private copy of ``world`` under ``root`` (store, MLflow database and artifacts), for
    tests that register, promote or damage what they were given; no retraining."""
    shutil.copytree(world.root / "artifacts", root / "artifacts")
    shutil.copy(world.root / "mlflow.db", root / "mlflow.db")
    _relocate(root / "mlflow.db", str(world.root), str(root))
    data = root / "data"
    data.mkdir()
    shutil.copy(world.store_file, data / "kam.duckdb")
    store = f"duckdb:///{data / 'kam.duckdb'}"
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    request = replace(world.request, store_url=store, tracking_uri=tracking,
                      artifact_location=(root / "artifacts").as_uri())
    return World(root, data, store, tracking, world.model_name, world.accounts, request,
                 world.outcome)


def _relocate(database: Path, old: str, new: str) -> None:
    """Point every path an MLflow database holds under ``old`` to ``new`` (a copied root)."""
    con = sqlite3.connect(database)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                if column[2].upper().startswith(("VARCHAR", "TEXT")):
                    con.execute(
                        f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?) '
                        f'WHERE "{column[1]}" LIKE ?',
                        (old, new, f"%{old}%"),
                    )
        con.commit()
    finally:
        con.close()
