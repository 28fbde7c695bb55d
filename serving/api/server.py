"""Running the service under uvicorn: where it may bind, and what it warns about."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

from kam.serving.api.app import create_app
from kam.serving.api.auth import hashed, load_keys
from kam.serving.api.workers import METRICS_ENV, SETTINGS_ENV, SIGNAL_ENV
from kam.serving.settings import ServeSettings

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


class UnsafeBindError(ValueError):
    """Refusing to expose an API without keys on a non-loopback address."""


def is_loopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or the name localhost."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(settings: ServeSettings) -> None:
    """Refuse a non-loopback host when no API keys are configured; warn when keys are absent.

    Raises
    ------
    UnsafeBindError
        Naming the host and the settings that would allow it.
    """
    if load_keys(settings).configured:
        return
    if not is_loopback(settings.host):
        raise UnsafeBindError(
            f"refusing to serve on {settings.host} without API keys: set KAM_API_KEYS "
            "(and KAM_ADMIN_API_KEYS) or KAM_API_KEYS_FILE, or bind to 127.0.0.1"
        )
    logger.warning(
        "no API keys configured: every route is open, so the service binds to %s only",
        settings.host,
    )


def for_workers(settings: ServeSettings) -> ServeSettings:
    """The settings the workers get: keys as their hashes, and one session secret for all.

    The workers' settings travel in their environment (:data:`SETTINGS_ENV`), which should not
    hold a key; a hash is all a worker needs to check one. The session secret must be the same
    in every worker, or a browser signed in by one would be refused by the next.
    """
    return settings.model_copy(update={
        "api_keys": [hashed(k) for k in settings.api_keys],
        "admin_api_keys": [hashed(k) for k in settings.admin_api_keys],
        "session_secret": settings.session_secret or secrets.token_urlsafe(32),
    })


def run(settings: ServeSettings | None = None) -> None:
    """Serve the API with uvicorn until interrupted (``settings.workers`` processes).

    Parameters
    ----------
    settings
        Service settings; read from the environment and config file when None.

    Raises
    ------
    UnsafeBindError
        When asked to bind a non-loopback address without API keys.
    """
    settings = settings if settings is not None else ServeSettings()
    check_binding(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        # CRM clients send batches over one connection; keep it open between calls
        "timeout_keep_alive": 30,
        # refuses oversized request heads before they are collected (serving.api.protocol)
        "http": "kam.serving.api.protocol:BoundedHttpToolsProtocol",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
    settings = for_workers(settings)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), workers=1, **options)
        return
    # Workers are fresh processes that build the app themselves: hand them the settings, a
    # reload signal file and a metrics folder, all scoped to this server (serving.workers).
    shared = Path(tempfile.mkdtemp(prefix="kam-serve-"))
    (shared / "metrics").mkdir()
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    os.environ[SIGNAL_ENV] = str(shared / "reload")
    os.environ[METRICS_ENV] = str(shared / "metrics")
    try:
        uvicorn.run(
            "kam.serving.api.app:app_from_environment",
            factory=True,
            workers=settings.workers,
            **options,
        )
    finally:
        for name in (SETTINGS_ENV, SIGNAL_ENV, METRICS_ENV):
            os.environ.pop(name, None)
        shutil.rmtree(shared, ignore_errors=True)
