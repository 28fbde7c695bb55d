"""Settings of scoring and the HTTP service: the registry's plus binding, keys, model, tiers.

Environment variables use the same ``KAM_`` prefix as every other stage, e.g. ``KAM_HOST``,
``KAM_PORT``, ``KAM_API_KEYS`` (comma-separated), ``KAM_ADMIN_API_KEYS``, ``KAM_API_KEYS_FILE``,
``KAM_MODEL_URI``, ``KAM_MODEL_ALIAS`` and ``KAM_TIER_THRESHOLDS``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from kam.models.registry import CHAMPION, alias_uri
from kam.models.settings import RegistrySettings
from kam.serving.decisions.stages import DEFAULT_TIER_THRESHOLDS

MIN_KEY_LENGTH = 16
_KEY_HASH = re.compile(r"sha256:[0-9a-fA-F]{64}")


def is_key_hash(key: str) -> bool:
    """True for a key given as its hash: ``sha256:`` and 64 hex digits."""
    return _KEY_HASH.fullmatch(key) is not None


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

    session_secret: str | None = Field(
        None,
        min_length=32,
        description=(
            "secret signing the page's sign-in cookies (32+ characters); default a random one "
            "per server start, which signs every browser out at a restart"
        ),
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1024, description="largest request body accepted (413 beyond it)"
    )
    max_header_bytes: int = Field(
        64 << 10, ge=4096, description="largest request line and headers accepted (431 beyond)"
    )
    auth_failures_per_minute: int = Field(
        10,
        ge=1,
        description=(
            "failed key checks and sign-ins allowed per client address and per key in a "
            "minute (in each worker); beyond it they are answered 429 until the minute is over"
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

    @field_validator("api_keys", "admin_api_keys")
    @classmethod
    def _check_short_keys(cls, value: list[str]) -> list[str]:
        short = [k for k in value if not is_key_hash(k) and len(k) < MIN_KEY_LENGTH]
        if short:
            raise ValueError(
                f"{len(short)} key(s) shorter than {MIN_KEY_LENGTH} characters: use long "
                "random keys, e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, "
                "or give a key's hash as sha256:<64 hex digits>"
            )
        return value

    @property
    def resolved_model_uri(self) -> str:
        """The model to serve: the explicit URI, else ``models:/<model_name>@<alias>``."""
        return self.model_uri or alias_uri(self.model_name, self.model_alias)
