"""The OpenAPI schema: FastAPI's, completed with what the routes cannot declare themselves.

- the API key scheme on every `/v1` operation (the key is checked in a plain dependency: a
  FastAPI ``APIKeyHeader`` would add a dependency to every request);
- the feature row of `POST /v1/score` as a typed ``FeatureRow`` (each feature with its
  description, kind, unit, range and levels) from the served model's feature spec and the
  catalog, with an example row that the served model scores;
- every 4xx and 5xx as RFC 9457 problem details (``application/problem+json``), FastAPI's own
  ``HTTPValidationError`` replaced by :class:`~kam.serving.api.problems.Problem`.

The schema depends on the model served, so it is rebuilt when a reload swaps the model.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from kam.models.feature_schema import FeatureField, feature_fields, row_json_schema
from kam.models.feature_spec import FeatureSpec
from kam.serving.api.deps import API_KEY_HEADER
from kam.serving.api.problems import PROBLEM_JSON

SECURITY_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": API_KEY_HEADER,
    "description": "a key from KAM_API_KEYS, KAM_ADMIN_API_KEYS or KAM_API_KEYS_FILE",
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# typical values of a posted row's features, by unit, for the example
_TYPICAL = {
    "currency": 120000.0,
    "days": 45.0,
    "count": 3,
    "share": 0.5,
    "probability": 0.8,
    "change": -0.1,
    "ratio": 1.0,
}


def example_row(spec: FeatureSpec | None) -> dict[str, Any]:
    """A feature row the served model accepts: every feature, a typical value of its unit."""
    row: dict[str, Any] = {}
    for f in feature_fields(spec):
        row[f.name] = _typical(f)
    return row


def _typical(f: FeatureField) -> Any:
    if f.kind == "category":
        return f.categories[0] if f.categories else None
    value = _TYPICAL.get(f.unit or "ratio", 1.0)
    low = f.minimum if f.minimum is not None else value
    high = f.maximum if f.maximum is not None else value
    value = min(max(value, low), high)
    return int(value) if f.kind == "count" else float(value)


def _served(app: FastAPI) -> tuple[FeatureSpec | None, tuple[str | None, ...]]:
    """The served model's feature spec, and what identifies the model (for the cache)."""
    state = getattr(app.state, "serving", None)
    model = getattr(state, "model", None)
    if model is None:
        return None, ()
    return model.scorer.spec, (model.uri, model.version, model.run_id)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI schema for the model it serves now (kept until the model changes)."""
    spec, key = _served(app)
    cached = getattr(app.state, "openapi_for", None)
    if app.openapi_schema is not None and cached == key:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {"APIKeyHeader": SECURITY_SCHEME}
    schemas = components.setdefault("schemas", {})
    schemas["FeatureRow"] = row_json_schema(spec)
    request = schemas.get("FeatureRowRequest")
    if request is not None:
        features = request["properties"]["features"]
        request["properties"]["features"] = {
            "$ref": "#/components/schemas/FeatureRow",
            "description": features.get("description", ""),
        }
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1/"):
                operation["security"] = [{"APIKeyHeader": []}]
            if "requestBody" in operation:
                # a body that is not JSON never reaches validation: FastAPI answers 400
                operation["responses"].setdefault(
                    "400", {"description": "Bad Request: the body is not valid JSON"}
                )
            _problem_responses(operation)
    score = schema["paths"].get("/v1/score", {}).get("post")
    if score is not None:
        example = {"account_id": "A-1042", "features": example_row(spec)}
        content = score["requestBody"]["content"]["application/json"]
        content["examples"] = {"row": {"summary": "a full feature row", "value": example}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = schema
    app.state.openapi_for = key
    return schema


def _problem_responses(operation: dict[str, Any]) -> None:
    """Every error response of an operation as problem details."""
    for status, response in operation.get("responses", {}).items():
        code = int(status) if status.isdigit() else 0
        if code < 400:
            continue
        if code == 503 and "Problem" not in str(response.get("content", "")):
            continue  # /readyz answers 503 with its Readiness body
        response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
