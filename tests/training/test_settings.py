"""Training settings and the one recipe from settings to a training request."""

from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from kam.features.periods import Period
from kam.training.fit import FitOptions
from kam.training.run import TrainRequest
from kam.training.settings import TrainSettings, train_request


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONFIG", "HORIZON", "ACTIVITY_WINDOW", "DECLINE", "SNAPSHOT_EVERY", "STORE_URL",
                 "DATA_DIR", "TRACKING_URI", "EXPERIMENT", "MODEL_NAME", "ARTIFACT_LOCATION"):
        monkeypatch.delenv(f"KAM_{name}", raising=False)


def test_the_values_are_typed() -> None:
    settings = TrainSettings()
    assert settings.horizon == Period(365, "day")
    assert settings.activity_window == Period(365, "day")
    assert settings.snapshot_every is None  # auto
    assert settings.decline == 0.5


def test_environment_overrides_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kam.toml"
    config.write_text('horizon = "26w"\ndecline = 1.0\nsnapshot_every = "1w"\n')
    monkeypatch.setenv("KAM_CONFIG", str(config))
    monkeypatch.setenv("KAM_DECLINE", "0.3")
    monkeypatch.setenv("KAM_ACTIVITY_WINDOW", "ever")
    settings = TrainSettings()
    assert settings.horizon == Period(26, "week")
    assert settings.decline == 0.3
    assert settings.activity_window is None
    assert settings.snapshot_every == Period(1, "week")
    # written back as the text it was read from
    assert settings.model_dump(include={"horizon", "activity_window", "snapshot_every"}) == {
        "horizon": "26w", "activity_window": "ever", "snapshot_every": "1w",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [("horizon", "soon"), ("activity_window", "lately"), ("decline", "1.5"),
     ("snapshot_every", "sometimes")],
)
def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch, field: str, value: str) -> None:
    monkeypatch.setenv(f"KAM_{field.upper()}", value)
    with pytest.raises(ValidationError, match=field):
        TrainSettings()
    monkeypatch.delenv(f"KAM_{field.upper()}")
    with pytest.raises(ValidationError, match=field):
        TrainSettings().override(**{field: value})


def test_a_request_from_the_defaults(tmp_path: Path) -> None:
    request = train_request(TrainSettings(workdir=tmp_path))
    assert request == TrainRequest(
        store_url=f"duckdb:///{tmp_path / 'data' / 'kam.duckdb'}",
        tracking_uri=f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}",
        experiment="kam",
        model_name="kam-key-accounts",
        artifact_location=(tmp_path.resolve() / "mlartifacts").as_uri(),
        horizon=Period(365, "day"),
        decline=0.5,
        activity_window=Period(365, "day"),
        test_as_of=None,
        every=None,
        register=True,
        features=None,
        options=FitOptions(),
    )


def test_a_request_with_the_command_lines_overrides(tmp_path: Path) -> None:
    settings = TrainSettings(workdir=tmp_path, store_url="duckdb:///srv/shared.duckdb",
                             tracking_uri="http://mlflow:5000", model_name="book")
    request = train_request(
        settings,
        data=tmp_path / "cut",
        test_as_of="2024-12-31",
        register=False,
        features=["recency_days"],
        horizon="26w",
        activity_window="ever",
        decline=1.0,
        snapshot_every="1w",
    )
    assert request.store_url == f"duckdb:///{tmp_path / 'cut' / 'kam.duckdb'}"
    assert request.tracking_uri == "http://mlflow:5000"
    assert request.artifact_location is None  # a tracking server places artifacts itself
    assert request.model_name == "book"
    assert (request.horizon, request.activity_window, request.decline, request.every) == (
        Period(26, "week"), None, 1.0, Period(1, "week")
    )
    assert request.test_as_of == pd.Timestamp("2024-12-31")
    assert request.register is False
    assert request.features == ("recency_days",)
    # None keeps the setting
    assert train_request(settings, horizon=None).horizon == Period(365, "day")
