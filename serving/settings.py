"""Settings of scoring and the HTTP service: the registry's plus binding, keys, model, tiers.

Environment variables use the same ``KAM_`` prefix as every other stage, e.g. ``KAM_HOST``,
``KAM_PORT``, ``KAM_API_KEYS`` (comma-separated), ``KAM_ADMIN_API_KEYS``, ``KAM_API_KEYS_FILE``,
``KAM_MODEL_URI``, ``KAM_MODEL_ALIAS`` and ``KAM_TIER_THRESHOLDS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from kam.models.registry import CHAMPION, alias_uri
from kam.models.settings import RegistrySettings
from kam.serving.decisions.stages import DEFAULT_TIER_THRESHOLDS

MIN_KEY_LENGTH = 16


def _split_keys(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServeSettings(RegistrySettings):
    """What ``kam score`` and ``kam serve`` need on top of the registry's settings."""

    host: str = Field("127.0.0.1", description="address to bind; loopback unless keys are set")
    port: int = Field(8000, ge=1, le=65535)
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="keys for callers (comma-separated in the environment)"
    )
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="keys that may also call the admin routes"
    )
    api_keys_file: Path | None = Field(
        None, description="file of keys, one a line: `key` or `admin:key`; `#` starts a comment"
    )
    model_uri: str | None = Field(
        None, description="explicit model URI (models:/name/3, runs:/...); default the alias"
    )
    model_alias: str = Field(CHAMPION, description="registry alias served by default")
    playbook_path: Path | None = Field(
        None, description="retention playbook YAML; default the one shipped with the package"
    )
    tier_thresholds: tuple[float, float] = Field(
        DEFAULT_TIER_THRESHOLDS,
        description="cumulative shares of predicted value closing tiers A and B (Pareto rule)",
    )
    currency: str = Field("¥", description="currency symbol on the web page, e.g. ¥, US$, €")
    language: str = Field(
        "en", description="language of the page and texts when the browser asks for none: "
        "zh-CN or en",
    )
    access_log: bool = Field(False, description="uvicorn access log (metrics count every call)")
    log_level: str = Field("info", description="uvicorn log level")
    workers: int = Field(
        1,
        ge=1,
        le=32,
        description=(
            "uvicorn worker processes: scoring posted rows is Python work, one core per "
            "process; each worker loads the model and scores, reloads reach all of them"
        ),
    )

    @field_validator("api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_keys(value)

    @field_validator("tier_thresholds")
    @classmethod
    def _check_tiers(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] < value[1] < 1:
            raise ValueError("tier thresholds must satisfy 0 < A < B < 1, e.g. [0.7, 0.9]")
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _check_keys_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"KAM_API_KEYS_FILE names {value}, which is not a file")
        return value

    @model_validator(mode="after")
    def _check_short_keys(self) -> ServeSettings:
        keys = (*self.api_keys, *self.admin_api_keys)
        short = [k for k in keys if len(k) < MIN_KEY_LENGTH]
        if short:
            raise ValueError(
                f"{len(short)} API key(s) shorter than {MIN_KEY_LENGTH} characters: "
                "use long random keys, e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self

    @property
    def resolved_model_uri(self) -> str:
        """The model to serve: the explicit URI, else ``models:/<model_name>@<alias>``."""
        return self.model_uri or alias_uri(self.model_name, self.model_alias)
