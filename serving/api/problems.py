"""Errors as RFC 9457 problem details: one JSON shape for every 4xx and 5xx the API answers.

Every refusal (a bad key, an unknown account, a bad field, an unknown query parameter) is a
:class:`Problem` served as ``application/problem+json``: ``status``, ``title`` and a ``detail``
sentence, the ``instance`` path and the ``request_id`` to quote, and for bad input one
:class:`FieldError` per bad field. The handlers installed by :func:`install_problem_handlers`
turn FastAPI's and Starlette's exceptions, and :class:`ApiProblem`, into that shape.

Problem bodies are written with ASCII escapes and without echoing inputs: a lone surrogate or
an infinite number in a request can then never make the error response itself fail.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from kam.serving.api.middleware import request_id_of

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger(__name__)


class FieldError(BaseModel):
    """One bad part of a request."""

    loc: list[str | int] = Field(
        description="where: 'body', 'query', 'path' or 'header', then the field's path"
    )
    msg: str = Field(description="what is wrong, and what is expected")
    type: str = Field(description="a stable code, e.g. 'missing', 'extra_forbidden'")


class Problem(BaseModel):
    """Why a request was refused or could not be answered (RFC 9457 problem details)."""

    type: str = Field("about:blank", description="a URI naming the problem type")
    title: str = Field(description="the HTTP status phrase, e.g. 'Not Found'")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong in this request, in one sentence")
    instance: str | None = Field(None, description="the path of the request")
    request_id: str | None = Field(None, description="the X-Request-ID of the response")
    errors: list[FieldError] = Field(
        default_factory=list, description="each bad field (for 422), else empty"
    )


class ApiProblem(Exception):
    """Raise in a route or dependency to answer with a problem.

    Parameters
    ----------
    status
        The HTTP status.
    detail
        One sentence saying what is wrong.
    errors
        The bad fields, for a 422.
    headers
        Extra response headers (e.g. ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries documenting problems of the given statuses on a route."""
    return {status: {"model": Problem, "description": _title(status)} for status in statuses}


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _safe(value: Any) -> Any:
    """JSON-safe text: non-finite numbers as text (JSON has none); lists and dicts recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def problem_response(
    request: Request,
    status: int,
    detail: str,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem details response for ``request``."""
    body = problem_body(request.scope, status, detail, errors)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def problem_body(
    scope: MutableMapping[str, Any], status: int, detail: str, errors: Sequence[FieldError] = ()
) -> bytes:
    """The JSON of a problem details answer to the request of ``scope`` (an ASGI scope), for
    answers made before FastAPI sees the request (:mod:`kam.serving.api.guard`) and after."""
    problem = Problem(
        title=_title(status),
        status=status,
        detail=detail,
        instance=str(scope.get("path", "")),
        request_id=request_id_of(scope),
        errors=list(errors),
    )
    # ensure_ascii: a lone surrogate from the request is written as an escape, never fails
    return json.dumps(_safe(problem.model_dump()), ensure_ascii=True, allow_nan=False).encode()


def _field_errors(errors: Sequence[Any]) -> list[FieldError]:
    out = []
    for error in errors:
        loc = [p if isinstance(p, int) else str(p) for p in error.get("loc", ())]
        out.append(FieldError(loc=loc, msg=str(error.get("msg", "")), type=str(error.get("type"))))
    return out


def summary(errors: Sequence[FieldError]) -> str:
    """One sentence naming each bad field: ``features.region: unknown category ...``."""
    parts = []
    for error in errors[:10]:
        where = ".".join(str(p) for p in error.loc[1:]) or str(error.loc[0] if error.loc else "")
        parts.append(f"{where}: {error.msg}")
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return "; ".join(parts) + more


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    return problem_response(request, exc.status_code, detail, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc.errors())
    return problem_response(request, 422, summary(errors), errors)


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    detail = exc.detail if not exc.errors else f"{exc.detail}: {summary(exc.errors)}"
    return problem_response(request, exc.status, detail, exc.errors, exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logger.error(
        "unhandled error on %s %s (request %s)",
        request.method,
        request.url.path,
        request_id_of(request.scope),
        exc_info=exc,
    )
    return problem_response(request, 500, "internal error; quote the request id when reporting")


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with a :class:`Problem`."""
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ApiProblem, _on_problem)
    app.add_exception_handler(Exception, _on_unexpected)
