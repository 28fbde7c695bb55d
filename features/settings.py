"""Settings for every stage, in one place.

Values come, highest priority first, from: keyword arguments, ``KAM_*`` environment variables,
a config file (TOML or YAML; ``KAM_CONFIG`` names it, else ``kam.toml`` in the current directory
is used when present), then the embedded defaults below. Nothing here touches the disk on import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from kam.features.periods import Period


def _config_file() -> Path | None:
    named = os.environ.get("KAM_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"KAM_CONFIG names {path}, which is not a file")
        return path
    local = Path("kam.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Paths, URIs, horizons and thresholds shared by every ``kam`` stage."""

    model_config = SettingsConfigDict(env_prefix="KAM_", extra="ignore")

    workdir: Path = Field(Path(".kam"), description="embedded working directory (git-ignored)")
    data_dir: Path | None = Field(None, description="data directory; default <workdir>/data")
    store_url: str | None = Field(
        None, description="feature store URL; default duckdb:///<data_dir>/kam.duckdb"
    )
    horizon: str = Field("365d", description="label horizon, e.g. 365d, 26w, 6mo")
    activity_window: str = Field(
        "365d",
        description="population: accounts with an order in this window before as_of, or 'ever'",
    )
    decline: float = Field(0.5, gt=0, le=1, description="defection = value < (1 - decline) x prior")
    snapshot_every: str = Field(
        "auto",
        description="spacing of training snapshots, e.g. 1w or 1mo; auto: weekly for histories "
        "under two years, monthly otherwise",
    )
    seed: int = 7
    tier_thresholds: tuple[float, float] = Field(
        (0.7, 0.9),
        description="cumulative shares of predicted value closing tiers A and B (Pareto rule)",
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default sqlite:///<workdir>/mlflow.db"
    )
    experiment: str = Field("kam", description="MLflow experiment name")
    model_name: str = Field("kam-key-accounts", description="registered model name")
    demo_accounts: int = Field(2000, gt=0)
    demo_years: int = Field(5, gt=0)

    @field_validator("horizon")
    @classmethod
    def _check_horizon(cls, value: str) -> str:
        Period.parse(value)
        return value

    @field_validator("tier_thresholds")
    @classmethod
    def _check_tiers(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] < value[1] < 1:
            raise ValueError("tier thresholds must satisfy 0 < A < B < 1, e.g. [0.7, 0.9]")
        return value

    @field_validator("snapshot_every")
    @classmethod
    def _check_every(cls, value: str) -> str:
        if value != "auto":
            Period.parse(value)
        return value

    @field_validator("activity_window")
    @classmethod
    def _check_activity(cls, value: str) -> str:
        if value != "ever":
            Period.parse(value)
        return value

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.workdir / "data"

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{self.workdir.resolve() / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return (self.workdir.resolve() / "mlartifacts").as_uri()

    def store_url_for(self, data_dir: Path | None = None) -> str:
        """The store URL, placing the default DuckDB file under ``data_dir``."""
        if self.store_url and data_dir is None:
            return self.store_url
        base = data_dir if data_dir is not None else self.resolved_data_dir
        return f"duckdb:///{Path(base) / 'kam.duckdb'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[Any] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            if path.suffix in {".yaml", ".yml"}:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
            else:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
