"""The API contract an integrator codes against: problem details for every error, unknown
fields and parameters refused, exact categories, the typed feature row, hostile input answered
with a 422, time zones, currency and horizon, request ids, gzip, and examples that work.

Runs against the real app over HTTP (Starlette's test client) on the shared small world,
scored by the web tests' fixture (one copy of the store per test run).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jsonschema
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from kam.serving.api.app import create_app
from kam.serving.api.docs import ASSETS
from tests.serving.web.test_web import ADMIN_KEY, USER_KEY, WebWorld, scored_world, web_settings
from tests.world import World

USER = {"X-API-Key": USER_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id", "errors"}


@pytest.fixture(scope="module")
def web_world(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return scored_world(small_world, tmp_path_factory)


@pytest.fixture(scope="module")
def client(web_world: WebWorld) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings(web_world, currency="€"))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def full_row(client: TestClient, web_world: WebWorld) -> dict[str, Any]:
    """A real account's features as a CRM would post them (from the page's scored world)."""
    spec = client.app.state.serving.model.scorer.spec  # type: ignore[attr-defined]
    from kam.features.snapshots import build_snapshots, data_end
    from kam.features.store import connect

    con = connect(web_world.store, read_only=True)
    try:
        snapshot = build_snapshots(con, [data_end(con)])
    finally:
        con.disconnect()
    row = snapshot.iloc[0]
    return {
        name: (str(row[name]) if name in spec.categories else float(row[name]))
        for name in spec.names
        if not pd.isna(row[name])
    }


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# ------------------------------------------------------------------------------------------------
# Problem details for every error
# ------------------------------------------------------------------------------------------------
def test_every_error_is_problem_details(client: TestClient) -> None:
    missing_key = assert_problem(client.get("/v1/model"), 401)
    assert missing_key["title"] == "Unauthorized" and missing_key["instance"] == "/v1/model"
    assert assert_problem(client.post("/v1/admin/reload", headers=USER), 403)["errors"] == []
    unknown = assert_problem(client.get("/v1/accounts/NO-SUCH", headers=USER), 404)
    assert "NO-SUCH" in unknown["detail"]
    bad = assert_problem(client.post("/v1/scores", json={"account_ids": []}, headers=USER), 422)
    assert bad["errors"][0]["loc"] == ["body", "account_ids"]
    assert "account_ids" in bad["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/scores", {"account_ids": ["a"], "acount_ids": ["b"]}, "acount_ids"),
        ("/v1/score", {"features": {}, "asof": "2025-12-31"}, "asof"),
    ],
    ids=["scores", "score"],
)
def test_unknown_body_fields_are_refused(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(client.post(path, json=body, headers=USER), 422)
    (error,) = problem["errors"]
    assert error["loc"] == ["body", field] and error["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/at-risk"), ("GET", "/v1/model"), ("GET", "/v1/accounts/x")],
)
def test_unknown_query_parameters_are_refused(client: TestClient, method: str, path: str) -> None:
    problem = assert_problem(
        client.request(method, path, params={"regoin": "East", "limit": 5}, headers=USER)
        if path == "/v1/at-risk"
        else client.request(method, path, params={"regoin": "East"}, headers=USER),
        422,
    )
    (error,) = problem["errors"]
    assert error["loc"] == ["query", "regoin"]
    assert "regoin" in problem["detail"]


def test_the_key_is_checked_before_the_query(client: TestClient) -> None:
    assert_problem(client.get("/v1/at-risk", params={"regoin": "East"}), 401)


# ------------------------------------------------------------------------------------------------
# Categories: exact everywhere
# ------------------------------------------------------------------------------------------------
def test_categories_match_exactly_everywhere(client: TestClient, full_row: dict) -> None:
    region = full_row["region"]
    assert region != region.lower()
    exact = client.post("/v1/score", json={"features": full_row}, headers=USER)
    assert exact.status_code == 200, exact.text
    folded = client.post(
        "/v1/score", json={"features": {**full_row, "region": region.lower()}}, headers=USER
    )
    (error,) = assert_problem(folded, 422)["errors"]
    assert error["loc"] == ["body", "features", "region"]
    assert repr(region) in error["msg"]  # the hint names the level the caller meant
    listed = client.get("/v1/at-risk", params={"region": region}, headers=USER).json()
    assert listed["total"] > 0
    assert {item["region"] for item in listed["items"]} == {region}
    lower = client.get("/v1/at-risk", params={"region": region.lower()}, headers=USER).json()
    assert lower["total"] == 0
    assert_problem(client.get("/v1/at-risk", params={"tier": "a"}, headers=USER), 422)


# ------------------------------------------------------------------------------------------------
# Rows with too few known features
# ------------------------------------------------------------------------------------------------
def test_a_row_with_too_few_features_is_marked_unreliable(
    client: TestClient, full_row: dict[str, Any]
) -> None:
    needed = client.get("/v1/model", headers=USER).json()["min_known_features"]
    spec = client.app.state.serving.model.scorer.spec  # type: ignore[attr-defined]
    assert needed == (len(spec.names) + 1) // 2
    names = list(full_row)
    enough = {n: full_row[n] for n in names[:needed]}
    short = {n: full_row[n] for n in names[: needed - 1]}
    scored = client.post("/v1/score", json={"features": enough}, headers=USER).json()
    assert (scored["known_features"], scored["reliable"]) == (needed, True)
    scored = client.post("/v1/score", json={"features": short}, headers=USER).json()
    assert (scored["known_features"], scored["reliable"]) == (needed - 1, False)
    empty = client.post("/v1/score", json={"features": {}}, headers=USER).json()
    assert (empty["known_features"], empty["reliable"]) == (0, False)
    # a null counts as not known
    nulls = client.post(
        "/v1/score", json={"features": {**enough, names[0]: None}}, headers=USER
    ).json()
    assert (nulls["known_features"], nulls["reliable"]) == (needed - 1, False)


# ------------------------------------------------------------------------------------------------
# Hostile and absurd input: a 422 naming the field, never a 500
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "text", "loc"),
    [
        ("/v1/scores", '{"account_ids": ["\\ud800"]}', ["body", "account_ids", 0]),
        ("/v1/score", '{"account_id": "\\udfff", "features": {}}', ["body", "account_id"]),
        # pydantic reports the key itself as replacement characters: its place is enough
        ("/v1/score", '{"features": {"\\ud800": 1}}', ["body", "features"]),
        ("/v1/score", '{"features": {"region": "\\ud800"}}', ["body", "features", "region"]),
        ("/v1/score", '{"features": {"revenue_365d": Infinity}}', None),
        ("/v1/score", '{"features": {"revenue_365d": -Infinity}}', None),
        ("/v1/score", '{"features": {"revenue_365d": 1e309}}', None),
        ("/v1/score", '{"features": {"revenue_365d": 1e300}}', None),
        ("/v1/score", '{"features": {"recency_days": -5}}', None),
        ("/v1/score", '{"features": {"order_days_90d": 2.5}}', None),
        ("/v1/score", '{"features": {"spend_percentile": 7}}', None),
        ("/v1/score", '{"as_of": "9999-12-31", "features": {}}', ["body", "as_of"]),
        ("/v1/score", '{"as_of": "0001-01-01", "features": {}}', ["body", "as_of"]),
        ("/v1/score", '{"as_of": 0, "features": {}}', ["body", "as_of"]),
    ],
    ids=[
        "surrogate-id", "surrogate-account", "surrogate-name", "surrogate-category", "infinity",
        "minus-infinity", "overflow", "absurd", "negative-days", "fractional-count",
        "share-above-one", "far-future", "far-past", "date-as-number",
    ],
)
def test_hostile_input_is_a_422_naming_the_field(
    client: TestClient, path: str, text: str, loc: list[Any] | None
) -> None:
    response = client.post(
        path, content=text.encode(), headers={**USER, "Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422)
    locs = [error["loc"] for error in problem["errors"]]
    if loc is None:  # the one feature posted is named
        loc = ["body", "features", next(iter(json.loads(text)["features"]))]
    assert any(found[: len(loc)] == loc for found in locs), locs
    response.content.decode("ascii")  # problems are written in ASCII: any input survives


def test_posted_row_in_range_still_scores(client: TestClient, full_row: dict) -> None:
    response = client.post(
        "/v1/score",
        json={"features": {**full_row, "revenue_365d": 0.0}, "as_of": "2025-12-31"},
        headers=USER,
    )
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------------------------------------
# Times with a zone; currency and horizon on every score
# ------------------------------------------------------------------------------------------------
def aware(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() is not None


def test_times_carry_their_zone(client: TestClient, web_world: WebWorld) -> None:
    account_id = str(web_world.expected.index[0])
    body = client.get(f"/v1/accounts/{account_id}", headers=USER).json()
    assert aware(body["scored_at"]), body["scored_at"]
    model = client.get("/v1/model", headers=USER).json()
    assert aware(model["scores"]["scored_at"]) and aware(model["loaded_at"])


def test_every_score_names_its_currency_and_horizon(
    client: TestClient, web_world: WebWorld, full_row: dict
) -> None:
    horizon = client.get("/v1/model", headers=USER).json()["horizon"]
    account_id = str(web_world.expected.index[0])
    scores = [
        client.get(f"/v1/accounts/{account_id}", headers=USER).json(),
        *client.post("/v1/scores", json={"account_ids": [account_id]}, headers=USER)
        .json()["items"],
        *client.get("/v1/at-risk", params={"limit": 3}, headers=USER).json()["items"],
    ]
    # stored scores carry the currency they were scored in (the default), posted ones the
    # service's setting (this service says euro)
    assert {(s["currency"], s["horizon"]) for s in scores} == {("¥", horizon)}
    posted = client.post("/v1/score", json={"features": full_row}, headers=USER).json()
    assert (posted["currency"], posted["horizon"]) == ("€", horizon)


# ------------------------------------------------------------------------------------------------
# Request ids, the access log, gzip
# ------------------------------------------------------------------------------------------------
def test_every_response_has_a_request_id_and_a_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kam.access"):
        made = client.get("/healthz")
        kept = client.get("/healthz", headers={"X-Request-ID": "crm-7f3a.42"})
        forged = client.get("/healthz", headers={"X-Request-ID": "x\" 200 0B evil"})
        refused = client.get("/v1/model")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert kept.headers["x-request-id"] == "crm-7f3a.42"
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    lines = [r.getMessage() for r in caplog.records if r.name == "kam.access"]
    assert any('"GET /healthz" 200' in line and "id=crm-7f3a.42" in line for line in lines)
    assert any('"GET /v1/model" 401' in line for line in lines), lines


def test_large_bodies_are_gzipped(client: TestClient) -> None:
    params = {"limit": 500}
    plain = client.get(
        "/v1/at-risk", params=params, headers={**USER, "Accept-Encoding": "identity"}
    )
    zipped = client.get("/v1/at-risk", params=params, headers={**USER, "Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.json() == plain.json()
    assert len(gzip.compress(plain.content)) < len(plain.content) / 4
    small = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers


# ------------------------------------------------------------------------------------------------
# The OpenAPI schema: typed feature row, problems, examples that work
# ------------------------------------------------------------------------------------------------
def test_the_feature_row_is_typed_from_the_catalog(client: TestClient, schema: dict) -> None:
    spec = client.app.state.serving.model.scorer.spec  # type: ignore[attr-defined]
    row = schema["components"]["schemas"]["FeatureRow"]
    assert row["additionalProperties"] is False
    assert list(row["properties"]) == list(spec.names)
    for name, prop in row["properties"].items():
        assert prop["description"] and prop["x-kind"] in {"number", "count", "category"}, name
        value = prop["anyOf"][0]
        if name in spec.categories:
            assert value["enum"] == list(spec.categories[name]), name
        else:
            assert prop["x-unit"] and "minimum" in value and "maximum" in value, name
    assert row["properties"]["order_days_90d"]["anyOf"][0]["type"] == "integer"
    assert row["properties"]["revenue_365d"]["x-unit"] == "currency"
    request = schema["components"]["schemas"]["FeatureRowRequest"]
    assert request["properties"]["features"]["$ref"] == "#/components/schemas/FeatureRow"
    assert request["additionalProperties"] is False


def test_every_error_response_is_documented_as_a_problem(schema: dict) -> None:
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            statuses = operation["responses"]
            if path.startswith("/v1/"):
                assert {"401", "422"} <= set(statuses), (method, path)
            for status, response in statuses.items():
                if int(status) >= 400 and not (path == "/readyz" and status == "503"):
                    assert response["content"] == {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    }, (method, path, status)


def _examples(schema: dict) -> list[tuple[str, str, Any]]:
    found = []
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            values = [e["value"] for e in content.get("examples", {}).values()]
            ref = content["schema"].get("$ref", "")
            values += components.get(ref.rsplit("/", 1)[-1], {}).get("examples", [])
            found += [(method, path, value) for value in values]
    return found


def test_the_examples_validate_and_succeed(client: TestClient, schema: dict) -> None:
    examples = _examples(schema)
    assert {(m, p) for m, p, _ in examples} == {("post", "/v1/score"), ("post", "/v1/scores")}
    validator = jsonschema.Draft202012Validator(schema["components"]["schemas"]["FeatureRow"])
    for method, path, value in examples:
        if path == "/v1/score":
            validator.validate(value["features"])
        response = client.request(method.upper(), path, json=value, headers=USER)
        assert 200 <= response.status_code < 300, (path, response.text)
        if path == "/v1/score":
            assert response.json()["reliable"] is True


def test_model_shows_the_registered_version(client: TestClient) -> None:
    body = client.get("/v1/model", headers=USER).json()
    assert body["tags"]["horizon"] == body["horizon"]
    assert body["tags"]["decline"] == f"{body['decline']:g}"
    assert "test_as_of" in body["tags"]
    assert body["description"] and body["horizon"] in body["description"]
    assert body["currency"] == "€"
    region = next(f for f in body["features"] if f["name"] == "region")
    assert region["kind"] == "category" and region["unit"] is None
    revenue = next(f for f in body["features"] if f["name"] == "revenue_365d")
    assert (revenue["unit"], revenue["kind"]) == ("currency", "number")
    assert revenue["minimum"] < 0 < revenue["maximum"]


# ------------------------------------------------------------------------------------------------
# Swagger UI and ReDoc from local assets
# ------------------------------------------------------------------------------------------------
def test_docs_pages_use_local_assets(client: TestClient) -> None:
    for page, assets in (
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
        ("/redoc", ["redoc.standalone.js"]),
    ):
        html = client.get(page).text
        assert "cdn" not in html.lower() and "googleapis" not in html, page
        for asset in assets:
            assert f"{ASSETS}/{asset}" in html
            served = client.get(f"{ASSETS}/{asset}")
            assert served.status_code == 200 and len(served.content) > 10_000, asset
