"""The HTTP API for CRM systems: scores by account, posted feature rows, the at-risk list.

``create_app`` builds the app; its lifespan loads the model (registry alias) and the latest
scores onto ``app.state.serving``, and routes reach them through typed dependencies. Lookups of
known accounts answer from JSON bodies prepared at load time; posted feature rows are scored on
the event loop, those posted together in one batch (:mod:`serving.microbatch`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from kam.models.errors import FeatureRowError
from kam.models.registry import LoadedModel
from kam.serving.api.auth import ApiKeys, Role, load_keys
from kam.serving.api.observability import Metrics, MetricsMiddleware
from kam.serving.api.schemas import (
    DEFAULT_PAGE,
    MAX_PAGE,
    AccountScore,
    AccountScores,
    AtRiskFilters,
    AtRiskPage,
    FeatureInfo,
    FeatureRowRequest,
    FeatureRowScore,
    Health,
    ModelInfo,
    Problem,
    Readiness,
    ReloadResult,
    ScoreRequest,
    ScoresInfo,
    Tier,
)
from kam.serving.api.workers import (
    SETTINGS_ENV,
    announce_reload,
    follow_reloads,
    read_token,
    signal_path,
)
from kam.serving.decisions.playbook import Playbook, PlaybookError
from kam.serving.scoring.batch import score_matrix
from kam.serving.scoring.microbatch import RowBatcher
from kam.serving.settings import ServeSettings
from kam.serving.state import ScoreTable, ServingState, load_state
from kam.serving.web import routes as web

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
NO_MODEL = "no model loaded: run `kam train` and `kam promote`, then POST /v1/admin/reload"
NO_SCORES = "no scores loaded: run `kam score`, then POST /v1/admin/reload"
MISSING_KEY = f"missing API key: send one in the {API_KEY_HEADER} header"
WRONG_KEY = "invalid API key"
NOT_ADMIN = "this route needs an admin API key"
UNAUTHORIZED = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
JSON = "application/json"

SECURITY_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": API_KEY_HEADER,
    "description": "a key from KAM_API_KEYS, KAM_ADMIN_API_KEYS or KAM_API_KEYS_FILE",
}


# ------------------------------------------------------------------------------------------------
# Dependencies. All are `async def` and read only memory: a sync dependency would cost a hop to
# the thread pool, and each dependency costs FastAPI tens of microseconds to solve, so they stay
# few and flat (the cached account lookup is a few hundred microseconds in all).
# ------------------------------------------------------------------------------------------------
async def get_state(request: Request) -> ServingState:
    """The state loaded by the lifespan or the last reload (one snapshot per request)."""
    return request.app.state.serving


StateDep = Annotated[ServingState, Depends(get_state)]


async def get_scorer(state: StateDep) -> LoadedModel:
    """The loaded model, or 503 saying how to get one."""
    if state.model is None:
        raise HTTPException(503, NO_MODEL)
    return state.model


async def get_scores(request: Request) -> ScoreTable:
    """The loaded scores, or 503 saying how to get them."""
    scores = request.app.state.serving.scores
    if scores is None:
        raise HTTPException(503, NO_SCORES)
    return scores


ScorerDep = Annotated[LoadedModel, Depends(get_scorer)]
ScoresDep = Annotated[ScoreTable, Depends(get_scores)]


async def caller_role(request: Request) -> Role:
    """The role of the caller's key; 401 without a valid one (open when no keys are set)."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.configured:  # loopback-only mode: server.run refuses any other address
        return Role.ADMIN
    key = request.headers.get(API_KEY_HEADER)
    role = keys.role_of(key)
    if role is None:
        raise HTTPException(401, MISSING_KEY if not key else WRONG_KEY, headers=UNAUTHORIZED)
    return role


RoleDep = Annotated[Role, Depends(caller_role)]


@dataclass(frozen=True)
class _RowContext:
    """What a posted row's scores depend on besides its features: one batch group."""

    model: LoadedModel
    playbook: Playbook | None
    as_of: dt.date | None
    cutoffs: tuple[float, float] | None

    @property
    def group(self) -> tuple[int, int, dt.date | None, tuple[float, float] | None]:
        return (id(self.model), id(self.playbook), self.as_of, self.cutoffs)


def _score_rows(context: _RowContext, x: Any) -> list[dict[str, Any]]:
    return score_matrix(
        context.model,
        x,
        playbook=context.playbook,
        as_of=context.as_of,
        tier_cutoffs=context.cutoffs,
    )


async def require_admin(role: RoleDep) -> Role:
    """403 unless the caller's key is an admin key."""
    if role is not Role.ADMIN:
        raise HTTPException(403, NOT_ADMIN)
    return role


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid API key"},
    503: {"model": Problem, "description": "no model or no scores loaded"},
}


def _version() -> str:
    try:
        return metadata.version("kam")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _json(body: bytes, status_code: int = 200) -> Response:
    return Response(content=body, status_code=status_code, media_type=JSON)


# ------------------------------------------------------------------------------------------------
# Routes
# ------------------------------------------------------------------------------------------------
v1 = APIRouter(prefix="/v1", dependencies=[Depends(caller_role)], responses=AUTH_ERRORS)
probes = APIRouter()


@v1.get(
    "/accounts/{account_id}",
    response_model=AccountScore,
    responses={404: {"model": Problem, "description": "unknown account"}},
    tags=["scores"],
)
async def get_account(
    scores: ScoresDep, account_id: Annotated[str, Path(min_length=1, max_length=200)]
) -> Response:
    """Latest score of one account: risk, value interval, tier, stage, drivers and actions."""
    # a dict lookup of a prepared body: cheaper inline than a hop to the thread pool
    body = scores.body(account_id)
    if body is None:
        raise HTTPException(404, f"unknown account {account_id!r}")
    return _json(body)


@v1.post("/scores", response_model=AccountScores, tags=["scores"])
async def get_accounts(scores: ScoresDep, request_body: ScoreRequest) -> Response:
    """Latest scores of up to 1,000 accounts (request order, duplicates once) and unknown ids."""
    wanted = list(dict.fromkeys(request_body.account_ids))
    found = [scores.position[i] for i in wanted if i in scores.position]
    unknown = [i for i in wanted if i not in scores.position]
    body = (
        b'{"items": '
        + scores.json_list(found)
        + b', "unknown": '
        + json.dumps(unknown, ensure_ascii=False).encode()
        + b"}"
    )
    return _json(body)


@v1.post(
    "/score",
    response_model=FeatureRowScore,
    responses={422: {"description": "a bad feature row: each bad field named"}},
    tags=["scores"],
)
async def score_row(
    payload: FeatureRowRequest, model: ScorerDep, state: StateDep, request: Request
) -> Response:
    """Score one posted feature row (features the caller computed); missing features allowed.

    Rows posted at the same time are scored together (:mod:`serving.microbatch`).
    """
    try:
        (x,) = model.scorer.spec.record_matrix([payload.features])
    except FeatureRowError as err:
        raise HTTPException(
            422,
            [
                {
                    "type": "feature_row",
                    "loc": ["body", "features", name],
                    "msg": message,
                    "input": payload.features.get(name),
                }
                for name, message in err.errors.items()
            ],
        ) from None
    cutoffs = state.scores.tier_cutoffs if state.scores is not None else None
    context = _RowContext(model, state.playbook, payload.as_of, cutoffs)
    batcher: RowBatcher = request.app.state.row_batcher
    row = await batcher.submit(context.group, context, x)
    stake = row.get("value_at_stake")
    at_risk = row.get("value_at_risk")
    result = FeatureRowScore(
        account_id=payload.account_id,
        as_of=payload.as_of,
        defection_probability=row["defection_probability"],
        value=row["value"],
        value_low=row["value_low"],
        value_high=row["value_high"],
        value_at_stake=stake if stake is not None and stake == stake else None,
        value_at_risk=at_risk if at_risk is not None and at_risk == at_risk else None,
        tier=row.get("tier"),
        relationship_stage=row.get("relationship_stage"),
        drivers=row.get("drivers", []),
        actions=row.get("actions", []),
        missing_features=[n for n in model.scorer.spec.names if payload.features.get(n) is None],
        model_name=row.get("model_name"),
        model_version=row.get("model_version"),
        playbook_version=row.get("playbook_version"),
    )
    return _json(result.model_dump_json().encode())


@v1.get("/at-risk", response_model=AtRiskPage, tags=["scores"])
def at_risk(
    scores: ScoresDep,
    tier: Annotated[list[Tier] | None, Query(description="repeat for several tiers")] = None,
    region: Annotated[str | None, Query(min_length=1, description="ignoring case")] = None,
    account_manager: Annotated[str | None, Query(min_length=1, description="ignoring case")] = None,
    min_value_at_risk: Annotated[float | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The ranked at-risk list (value at risk, largest first), filtered and paged."""
    matched = scores.select(
        tiers=tier,
        region=region,
        account_manager=account_manager,
        min_value_at_risk=min_value_at_risk,
    )
    filters = AtRiskFilters(
        tier=tier,
        region=region,
        account_manager=account_manager,
        min_value_at_risk=min_value_at_risk,
    )
    body = (
        f'{{"total": {len(matched)}, "limit": {limit}, "offset": {offset}, "filters": '.encode()
        + filters.model_dump_json().encode()
        + b', "items": '
        + scores.json_list(matched[offset : offset + limit])
        + b"}"
    )
    return _json(body)


@v1.get("/model", response_model=ModelInfo, tags=["service"])
async def model_info(model: ScorerDep, state: StateDep) -> ModelInfo:
    """The model being served: registry version and alias, training window, metrics, features."""
    meta = model.scorer.meta
    spec = model.scorer.spec
    scores = state.scores
    return ModelInfo(
        name=model.name or meta.get("model_name"),
        version=model.version,
        alias=model.alias,
        uri=model.uri,
        run_id=model.run_id,
        horizon=meta.get("horizon"),
        train_as_of=meta.get("train_as_of"),
        backtest_train_as_of=meta.get("backtest_train_as_of"),
        test_as_of=meta.get("test_as_of"),
        evaluation=meta.get("evaluation"),
        data_end=meta.get("data_end"),
        metrics={k: v for k, v in sorted(model.metrics.items()) if k.startswith("test_")},
        features=[
            FeatureInfo(
                name=name,
                family=spec.families.get(name, "other"),
                categories=list(spec.categories[name]) if name in spec.categories else None,
            )
            for name in spec.names
        ],
        scores=None
        if scores is None
        else ScoresInfo(
            accounts=len(scores),
            as_of=scores.as_of,
            scored_at=scores.scored_at,
            model_version=scores.model_version,
            playbook_version=scores.playbook_version,
        ),
        loaded_at=state.loaded_at,
    )


@v1.post(
    "/admin/reload",
    response_model=ReloadResult,
    dependencies=[Depends(require_admin)],
    responses={403: {"model": Problem, "description": "not an admin key"}},
    tags=["admin"],
)
def reload(request: Request) -> ReloadResult:
    """Load the current champion and the latest scores, then swap them in at once.

    With several workers (``KAM_WORKERS``), this one reloads now and the others within a
    second or so.
    """
    app = request.app
    try:
        previous_version, new = _reload_state(app)
    except ReloadError as err:
        raise HTTPException(503, str(err)) from None
    signal = signal_path()
    if signal is not None:
        app.state.reload_token = announce_reload(signal)
    return ReloadResult(
        model_version=new.model.version if new.model else None,
        previous_model_version=previous_version,
        scores_accounts=len(new.scores) if new.scores else 0,
        scores_as_of=new.scores.as_of if new.scores else None,
        seconds=round(new.seconds, 3),
        missing=dict(new.missing),
    )


class ReloadError(RuntimeError):
    """A reload failed; the previous state is still served."""


def settle_heap() -> float:
    """Collect what is garbage, then exempt every live object from the cyclic collector.

    A loaded worker holds a few hundred thousand long-lived objects (libraries, model,
    scores). The collector's occasional full pass over them took 0.35 s for 100,000 scored
    accounts on 2 cores, stalling every request in the meantime. Frozen (``gc.freeze``), they
    are never scanned again; reference counting still frees them once dropped. Called after
    start-up and after each reload; returns the seconds it took.
    """
    began = time.perf_counter()
    gc.unfreeze()  # what a reload replaced can be collected again
    gc.collect()
    gc.freeze()
    return time.perf_counter() - began


def _reload_state(app: FastAPI) -> tuple[str | None, ServingState]:
    """Load model, scores and playbook afresh and swap them in.

    Returns the replaced model's version and the new state: not the old state, which is let
    go (requests still in flight hold it until they finish).
    """
    metrics: Metrics = app.state.metrics
    # one reload at a time; requests keep being answered from the old state meanwhile
    with app.state.reload_lock:
        old: ServingState = app.state.serving
        try:
            new = load_state(app.state.settings)
        except PlaybookError as err:
            metrics.reloads.labels("failed").inc()
            raise ReloadError(f"reload failed, still serving the previous state: {err}") from None
        lost = {k: v for k, v in new.missing.items() if k not in old.missing}
        if lost:
            metrics.reloads.labels("failed").inc()
            reasons = "; ".join(f"{k}: {v}" for k, v in lost.items())
            raise ReloadError(f"reload failed, still serving the previous state: {reasons}")
        app.state.serving = new  # the swap: one reference assignment
        metrics.observe_state(new)
        metrics.reloads.labels("ok").inc()
        previous = old.model.version if old.model else None
        del old
        settled = settle_heap()
    logger.info(
        "reloaded model %s (was %s), %s accounts in %.1f s (heap settled in %.2f s)",
        new.model.version if new.model else None,
        previous,
        len(new.scores) if new.scores else 0,
        new.seconds,
        settled,
    )
    return previous, new


@probes.get("/healthz", response_model=Health, tags=["service"])
async def healthz() -> Health:
    """The process is up."""
    return Health()


@probes.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "model or scores missing"}},
    tags=["service"],
)
async def readyz(state: StateDep) -> JSONResponse:
    """200 when a model and scores are loaded, else 503 naming what is missing."""
    readiness = Readiness(
        ready=state.ready,
        model_version=state.model.version if state.model else None,
        scores_accounts=len(state.scores) if state.scores else 0,
        missing=dict(state.missing),
    )
    return JSONResponse(readiness.model_dump(mode="json"), status_code=200 if state.ready else 503)


@probes.get("/metrics", tags=["service"], response_class=Response)
def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics: requests by route and status, latency, model version, scores."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


# ------------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------------
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
        state = load_state(settings)
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
                _reload_state(app)

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
            f"Send an API key in the `{API_KEY_HEADER}` header on every `/v1` route."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = keys
    app.state.metrics = metrics
    app.state.reload_lock = threading.Lock()
    app.state.row_batcher = RowBatcher(_score_rows, observe=metrics.score_batch_rows.observe)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(v1)
    app.include_router(probes)
    app.include_router(web.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_environment() -> FastAPI:
    """The app of one of several uvicorn workers: settings from :data:`SETTINGS_ENV` as JSON
    (set by :func:`kam.serving.api.server.run`), else from the environment and config file."""
    text = os.environ.get(SETTINGS_ENV)
    return create_app(ServeSettings.model_validate_json(text) if text else None)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema, with the API key scheme on every `/v1` operation.

    The key is checked in a plain dependency rather than FastAPI's ``APIKeyHeader``, which would
    add a dependency to every request; the scheme is declared here instead.
    """
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schema.setdefault("components", {})["securitySchemes"] = {"APIKeyHeader": SECURITY_SCHEME}
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{"APIKeyHeader": []}]
        app.openapi_schema = schema
    return app.openapi_schema
