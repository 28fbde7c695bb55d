from pathlib import Path

import pytest

from kam.features.settings import StoreSettings


def test_defaults_place_the_store_under_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    settings = StoreSettings(workdir=Path("/w"))
    assert settings.resolved_data_dir == Path("/w/data")
    assert settings.store_url_for() == "duckdb:////w/data/kam.duckdb"
    assert settings.store_url_for(Path("/elsewhere")) == "duckdb:////elsewhere/kam.duckdb"


def test_a_data_directory_holds_the_store_whatever_the_store_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    monkeypatch.setenv("KAM_STORE_URL", "duckdb:///srv/shared.duckdb")
    settings = StoreSettings(workdir=Path("/w"))
    assert settings.store_url_for() == "duckdb:///srv/shared.duckdb"
    moved = settings.for_data(Path("/elsewhere"))
    assert moved.resolved_data_dir == Path("/elsewhere")
    assert moved.store_url_for() == "duckdb:////elsewhere/kam.duckdb"
    assert settings.for_data(None) is settings


def test_one_config_file_serves_every_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kam.toml"
    config.write_text('workdir = "/srv/kam"\nhorizon = "26w"\nport = 9000\n')
    monkeypatch.setenv("KAM_CONFIG", str(config))
    settings = StoreSettings()  # the keys of the other layers are theirs, not errors here
    assert settings.resolved_data_dir == Path("/srv/kam/data")


def test_yaml_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kam.yaml"
    config.write_text("workdir: /srv/kam\n")
    monkeypatch.setenv("KAM_CONFIG", str(config))
    assert StoreSettings().resolved_data_dir == Path("/srv/kam/data")


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAM_CONFIG", "/no/such/kam.toml")
    with pytest.raises(FileNotFoundError, match=r"/no/such/kam\.toml"):
        StoreSettings()


def test_an_override_of_a_setting_that_does_not_exist_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    settings = StoreSettings()
    assert settings.override(workdir=None) is settings
    with pytest.raises(TypeError, match="no setting horizon"):
        settings.override(horizon="26w")


def test_the_spark_engine_reads_the_data_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAM_CONFIG", raising=False)
    monkeypatch.setenv("KAM_ENGINE", "spark")
    monkeypatch.setenv("KAM_SPARK_MASTER", "local[4]")
    settings = StoreSettings(workdir=Path("/w"))
    assert settings.store_url_for() == "spark:////w/data"
    assert settings.for_data(Path("/lake")).store_url_for() == "spark:////lake"
    assert settings.spark_master == "local[4]"
    monkeypatch.setenv("KAM_ENGINE", "hadoop")
    with pytest.raises(ValueError, match="engine"):
        StoreSettings()
