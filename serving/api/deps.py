"""What the API's routes depend on: the loaded state, model and scores, and the caller's role.

All dependencies are `async def` and read only memory: a sync dependency would cost a hop to
the thread pool, and each dependency costs FastAPI tens of microseconds to solve, so they stay
few and flat (the cached account lookup is a few hundred microseconds in all).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute

from kam.models.registry import LoadedModel
from kam.serving.api.auth import ApiKeys, Role
from kam.serving.api.problems import ApiProblem, FieldError, Problem
from kam.serving.state import ScoreTable, ServingState

API_KEY_HEADER = "X-API-Key"
NO_MODEL = "no model loaded: run `kam train` and `kam promote`, then POST /v1/admin/reload"
NO_SCORES = "no scores loaded: run `kam score`, then POST /v1/admin/reload"
MISSING_KEY = f"missing API key: send one in the {API_KEY_HEADER} header"
WRONG_KEY = "invalid API key"
NOT_ADMIN = "this route needs an admin API key"
UNAUTHORIZED = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
JSON = "application/json"


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


async def require_admin(role: RoleDep) -> Role:
    """403 unless the caller's key is an admin key."""
    if role is not Role.ADMIN:
        raise HTTPException(403, NOT_ADMIN)
    return role


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> list[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = [p.alias for p in dependant.query_params]
    for sub in dependant.dependencies:
        names += _query_names(sub)
    return names


async def known_query(request: Request) -> None:
    """422 naming each query parameter the route does not take (``?regoin=East``)."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = frozenset(_query_names(route.dependant))
        _QUERY_NAMES[id(route)] = names
    unknown = [k for k in dict.fromkeys(request.query_params.keys()) if k not in names]
    if unknown:
        taken = ", ".join(sorted(names)) or "none"
        raise ApiProblem(
            422,
            "bad query parameters",
            [
                FieldError(
                    loc=["query", k],
                    msg=f"unknown query parameter; this route takes: {taken}",
                    type="extra_forbidden",
                )
                for k in unknown
            ],
        )


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid API key"},
    422: {"model": Problem, "description": "a bad request: each bad field named in errors"},
    503: {"model": Problem, "description": "no model or no scores loaded"},
}


def v1_router() -> APIRouter:
    """A router for `/v1` routes: a valid API key on every call, unknown query parameters
    refused, and the errors documented.

    Each resource module has its own; the app includes them in order. The prefix stays on the
    router (not on an enclosing one) so a route's own path is its full template, the label of
    its request metrics.
    """
    return APIRouter(
        prefix="/v1",
        dependencies=[Depends(caller_role), Depends(known_query)],
        responses=AUTH_ERRORS,
    )


def json_response(body: bytes, status_code: int = 200) -> Response:
    """A response of JSON already encoded."""
    return Response(content=body, status_code=status_code, media_type=JSON)
