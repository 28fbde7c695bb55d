"""Settings: where every layer's settings come from, and the store's own.

Each layer declares the settings it uses on top of the one below (store here; registry in
``kam.models.settings``; training in ``kam.training.settings``; the service in
``kam.serving.settings``); they all read the same sources, declared once in
:class:`KamSettings`. Values come, highest priority first, from: keyword arguments, ``KAM_*``
environment variables, a config file (TOML or YAML; ``KAM_CONFIG`` names it, else ``kam.toml``
in the current directory is used when present), then the embedded defaults. One config file
serves every layer: each ignores the keys of the others. Nothing here touches the disk on
import.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)


def _config_file() -> Path | None:
    named = os.environ.get("KAM_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"KAM_CONFIG names {path}, which is not a file")
        return path
    local = Path("kam.toml")
    return local if local.is_file() else None


class KamSettings(BaseSettings):
    """The sources and ``KAM_`` prefix every settings class of the product reads."""

    model_config = SettingsConfigDict(env_prefix="KAM_", extra="ignore")

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

    def override(self, **values: Any) -> Self:
        """These settings with ``values`` in place (None: kept), validated like any source.

        For command-line options: ``--horizon soon`` is refused with the message that
        ``KAM_HORIZON=soon`` gets.
        """
        given = {name: value for name, value in values.items() if value is not None}
        unknown = sorted(set(given) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no setting {', '.join(unknown)}")
        if not given:
            return self
        # validated from the current values, so the sources are not read a second time
        return type(self).model_validate({**self.model_dump(), **given})


def latest_today() -> date:
    """Today's date where it is latest on Earth (UTC+14)."""
    return (datetime.now(UTC) + timedelta(hours=14)).date()


class StoreSettings(KamSettings):
    """The working directory, the data directory and the feature store."""

    workdir: Path = Field(Path(".kam"), description="embedded working directory (git-ignored)")
    data_dir: Path | None = Field(None, description="data directory; default <workdir>/data")
    store_url: str | None = Field(
        None, description="feature store URL; default duckdb:///<data_dir>/kam.duckdb"
    )
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="what runs the features and batch scoring: the embedded DuckDB file, or "
        "Spark over the Parquet tables in the data directory (spark:///<data_dir>)",
    )
    spark_master: str = Field(
        "local[2]", description="Spark master URL with engine spark (local[N], yarn, k8s://...)"
    )

    now: date | None = Field(
        None,
        description="today, for refusing dates in the future; default today where it is "
        "latest (UTC+14), so that no time zone's today counts as future",
    )
    ingest_max_shrink: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="largest share of a stored table's rows an ingest may drop without "
        "--allow-shrink (an empty or missing table is always refused)",
    )

    @property
    def today(self) -> date:
        """The date after which an event is in the future (``now``, else today at UTC+14)."""
        return self.now if self.now is not None else latest_today()

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.workdir / "data"

    def store_url_for(self, data_dir: Path | None = None) -> str:
        """The store URL, placing the default DuckDB file under ``data_dir``."""
        if self.store_url and data_dir is None:
            return self.store_url
        base = data_dir if data_dir is not None else self.resolved_data_dir
        if self.engine == "spark":
            return f"spark:///{Path(base).resolve()}"
        return f"duckdb:///{Path(base) / 'kam.duckdb'}"

    def for_data(self, data: Path | None) -> Self:
        """These settings for the data directory ``data`` (the ``--data`` option), if given.

        The input files and the store are both in it: ``data/kam.duckdb``, whatever
        ``store_url`` says, as with :meth:`store_url_for`.
        """
        if data is None:
            return self
        return self.model_copy(update={"data_dir": Path(data), "store_url": None})
