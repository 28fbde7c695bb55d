"""Probes and metrics, without an API key: `/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from kam.serving.api.deps import StateDep
from kam.serving.api.schemas import Health, Readiness

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["service"])
async def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get(
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


@router.get("/metrics", tags=["service"], response_class=Response)
def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics: requests by route and status, latency, model version, scores."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
