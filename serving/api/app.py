"""The HTTP API for CRM systems: scores by account, posted feature rows, the at-risk list.

``create_app`` builds the app; its lifespan loads the model (registry alias) and the latest
scores onto ``app.state.serving``, and routes reach them through typed dependencies
(:mod:`~kam.serving.api.deps`). Lookups of known accounts answer from JSON bodies prepared at
load time; posted feature rows are scored on the event loop, those posted together in one batch
(:mod:`serving.microbatch`). The routes live in :mod:`~kam.serving.api.routes`, one module per
resource; reloads in :mod:`~kam.serving.api.reload`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from kam.serving.api.auth import load_keys
from kam.serving.api.deps import API_KEY_HEADER
from kam.serving.api.docs import add_docs
from kam.serving.api.guard import FailureLimiter, RequestGuard
from kam.serving.api.middleware import (
    GZIP_LEVEL,
    GZIP_MINIMUM_SIZE,
    RequestIdMiddleware,
    enable_access_log,
)
from kam.serving.api.observability import Metrics, MetricsMiddleware
from kam.serving.api.openapi import build_openapi
from kam.serving.api.problems import install_problem_handlers
from kam.serving.api.reload import load_on_loader, reload_state, settle_heap
from kam.serving.api.routes import probes, v1
from kam.serving.api.routes.scores import score_rows
from kam.serving.api.workers import SETTINGS_ENV, follow_reloads, read_token, signal_path
from kam.serving.scoring.microbatch import RowBatcher
from kam.serving.settings import ServeSettings
from kam.serving.web import routes as web
from kam.serving.web.cookies import SessionSigner

logger = logging.getLogger(__name__)

def _version() -> str:
    try:
        return metadata.version("kam")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """Build the service (the model and scores load when it starts, in its lifespan).

    Parameters
    ----------
    settings
        Service settings; read from the environment and config file when None.

    Returns
    -------
    fastapi.FastAPI
    """
    settings = settings if settings is not None else ServeSettings()
    keys = load_keys(settings)
    metrics = Metrics()
    if not keys.configured:
        logger.warning(
            "no API keys configured (KAM_API_KEYS, KAM_ADMIN_API_KEYS or KAM_API_KEYS_FILE): "
            "every route is open; serve on loopback only"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        state = load_on_loader(settings)
        app.state.serving = state
        metrics.observe_state(state)
        settled = settle_heap()
        logger.info(
            "serving model %s with %s scored accounts (loaded in %.1f s, heap settled in %.2f s)",
            state.model.version if state.model else None,
            len(state.scores) if state.scores else 0,
            time.perf_counter() - started,
            settled,
        )
        del state  # app.state.serving owns it: a reload must be able to let it go
        signal = signal_path()
        follower = None
        if signal is not None:  # one of several workers: follow the others' reloads
            app.state.reload_token = read_token(signal)

            def follow(token: str) -> None:
                app.state.reload_token = token
                reload_state(app)

            follower = asyncio.create_task(
                follow_reloads(signal, lambda: app.state.reload_token, follow)
            )
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
            metrics.worker_exiting()

    app = FastAPI(
        title="kam: key-account defection risk and value",
        version=_version(),
        description=(
            "Defection probability, next-horizon value with interval, value at risk, tier, "
            "drivers in business words and recommended retention actions for key accounts. "
            f"Send an API key in the `{API_KEY_HEADER}` header on every `/v1` route. Errors are "
            "RFC 9457 problem details; every response carries an `X-Request-ID`."
        ),
        lifespan=lifespan,
        docs_url=None,  # served from local assets by add_docs
        redoc_url=None,
        # operation ids are the route functions' names: a generated client's method names
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.settings = settings
    app.state.api_keys = keys
    app.state.metrics = metrics
    app.state.reload_lock = threading.Lock()
    app.state.row_batcher = RowBatcher(score_rows, observe=metrics.score_batch_rows.observe)
    app.state.sessions = SessionSigner(keys, settings.session_secret)
    app.state.auth_limiter = FailureLimiter(settings.auth_failures_per_minute)
    # size and key checks before anything reads a body; metrics outside them count refusals
    app.add_middleware(RequestGuard, keys=keys, limiter=app.state.auth_limiter,
                       max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_SIZE, compresslevel=GZIP_LEVEL)
    app.add_middleware(RequestIdMiddleware)  # outermost: every response gets its id
    enable_access_log()
    install_problem_handlers(app)
    for router in v1:
        app.include_router(router)
    app.include_router(probes)
    app.include_router(web.router)
    add_docs(app)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


def app_from_environment() -> FastAPI:
    """The app of one of several uvicorn workers: settings from :data:`SETTINGS_ENV` as JSON
    (set by :func:`kam.serving.api.server.run`), else from the environment and config file."""
    text = os.environ.get(SETTINGS_ENV)
    return create_app(ServeSettings.model_validate_json(text) if text else None)
