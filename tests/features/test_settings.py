from pathlib import Path

import pytest
from pydantic import ValidationError

from kam.features.settings import Settings


def test_defaults_place_the_store_under_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    settings = Settings(workdir=Path("/w"))
    assert settings.resolved_data_dir == Path("/w/data")
    assert settings.store_url_for() == "duckdb:////w/data/kam.duckdb"
    assert settings.store_url_for(Path("/elsewhere")) == "duckdb:////elsewhere/kam.duckdb"


def test_environment_overrides_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kam.toml"
    config.write_text('horizon = "26w"\ndecline = 1.0\n')
    monkeypatch.setenv("KAM_CONFIG", str(config))
    monkeypatch.setenv("KAM_DECLINE", "0.3")
    settings = Settings()
    assert settings.horizon == "26w"
    assert settings.decline == 0.3


def test_yaml_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kam.yaml"
    config.write_text("activity_window: ever\nworkdir: /srv/kam\n")
    monkeypatch.setenv("KAM_CONFIG", str(config))
    settings = Settings()
    assert settings.activity_window == "ever"
    assert settings.resolved_data_dir == Path("/srv/kam/data")


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAM_CONFIG", "/no/such/kam.toml")
    with pytest.raises(FileNotFoundError, match=r"/no/such/kam\.toml"):
        Settings()


@pytest.mark.parametrize(
    ("field", "value"),
    [("horizon", "soon"), ("activity_window", "lately"), ("decline", "1.5")],
)
def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch, field: str, value: str) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    monkeypatch.setenv(f"KAM_{field.upper()}", value)
    with pytest.raises(ValidationError, match=field):
        Settings()
