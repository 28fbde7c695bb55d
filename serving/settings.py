"""Settings of the HTTP service: the shared settings plus binding, keys, model and limits.

Environment variables use the same ``KAM_`` prefix as every other stage, e.g. ``KAM_HOST``,
``KAM_PORT``, ``KAM_API_KEYS`` (comma-separated), ``KAM_ADMIN_API_KEYS``, ``KAM_API_KEYS_FILE``,
``KAM_MODEL_URI`` and ``KAM_MODEL_ALIAS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from kam.features.settings import Settings
from kam.models.registry import CHAMPION, alias_uri

MIN_KEY_LENGTH = 16


def _split_keys(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServeSettings(Settings):
    """What ``kam serve`` needs on top of the shared settings."""

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
    currency: str = Field("¥", description="currency symbol on the web page, e.g. ¥, US$, €")
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
