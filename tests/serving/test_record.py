"""The score record: declared once, and what the service serves is what it declares.

The scores table, the API's models, the page's rows and the CSV export are derived from
:data:`RECORD`; real responses of the real app, served over HTTP on a loopback port from a
small scored world, are validated against the record's models: every field there, no other,
each of the declared type.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import duckdb
import httpx
import pandas as pd
import pyarrow as pa
import pytest
import uvicorn
from pydantic import BaseModel

from kam.features.snapshots import build_snapshots
from kam.serving.api.schemas import (
    MAX_PAGE,
    POSTED_EXTRAS,
    AccountScore,
    AtRiskPage,
    FeatureRowScore,
)
from kam.serving.record import (
    DAY,
    DRIVERS,
    INTEGER,
    MOMENT,
    NUMBER,
    RECORD,
    TEXT,
    ActionRecommendation,
    Driver,
    RecordError,
    ScoreField,
    ScoreRecord,
)
from kam.serving.scoring.batch import label_settings
from kam.serving.state import BODY_COLUMNS, account_json
from kam.serving.store import MASTER_COLUMNS, SCORE_COLUMNS, SCORES_SCHEMA
from kam.serving.web.export import EXPORT_COLUMNS
from kam.serving.web.pages import ROW_COLUMNS
from tests.serving.web.test_web import USER_KEY, WebWorld, make_app, scored_world, web_settings
from tests.world import World

POSTED_ACCOUNTS = 6


# ------------------------------------------------------------------------------------------------
# Checking a body against the record
# ------------------------------------------------------------------------------------------------
def _matches_kind(value: Any, f: ScoreField) -> bool:
    """Whether a JSON value has the field's declared type (null only where nullable)."""
    if value is None:
        return f.nullable
    if f.kind.is_list:
        return isinstance(value, list)
    if f.kind is NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if f.kind is INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if f.kind is DAY:
        return isinstance(value, str) and dt.date.fromisoformat(value).isoformat() == value
    if f.kind is MOMENT:
        return isinstance(value, str) and isinstance(dt.datetime.fromisoformat(value), dt.datetime)
    return isinstance(value, str)


def check_body(
    raw: bytes | str | Mapping[str, Any],
    model: type[BaseModel],
    fields: tuple[ScoreField, ...],
    extra: tuple[str, ...] = (),
    nullable: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Validate a score body: the record's fields in body order (then ``extra``), nothing else,
    each of its kind, its list items exactly the item models' keys; and the model accepts it in
    strict mode."""
    text = raw if isinstance(raw, bytes | str) else json.dumps(raw)
    body = json.loads(text)
    assert list(body) == [f.name for f in fields] + list(extra)
    for f in fields:
        declared = replace(f, nullable=True) if f.name in nullable else f
        assert _matches_kind(body[f.name], declared), (f.name, body[f.name])
        if f.kind.is_list:
            item = f.kind.item
            assert item is not None
            for entry in body[f.name]:
                assert list(entry) == list(item.model_fields), (f.name, entry)
    model.model_validate_json(text, strict=True)
    return body


# ------------------------------------------------------------------------------------------------
# Everything derives from the record
# ------------------------------------------------------------------------------------------------
def test_the_table_the_api_the_page_and_the_export_come_from_the_record() -> None:
    assert {f.name: f.kind.store for f in RECORD} == SCORES_SCHEMA
    assert tuple(f.name for f in RECORD) == SCORE_COLUMNS
    assert MASTER_COLUMNS == ("name", "industry", "region", "account_manager")
    body = [f.name for f in sorted((f for f in RECORD if f.body), key=lambda f: f.body or 0)]
    assert list(BODY_COLUMNS) == body
    assert list(AccountScore.model_fields) == body
    posted = [name for name in body if RECORD[name].posted]
    assert list(FeatureRowScore.model_fields) == [*posted, *POSTED_EXTRAS]
    for name, info in AccountScore.model_fields.items():
        assert info.is_required() and info.description == RECORD[name].description
    exported = sorted((f for f in RECORD if f.csv), key=lambda f: f.csv or 0)
    assert tuple(f.header or f.name for f in exported) == EXPORT_COLUMNS
    assert tuple(f.name for f in RECORD if f.page) == ROW_COLUMNS


def _one_row(record: ScoreRecord) -> pd.DataFrame:
    """A scores row of ``record`` with a value of each field's kind."""
    values = {
        TEXT: "text", NUMBER: 0.25, INTEGER: 7, DAY: pd.Timestamp("2025-12-31"),
        MOMENT: pd.Timestamp("2026-01-02 03:04:05.5"),
    }
    row = {f.name: "[]" if f.kind.is_list else values[f.kind] for f in record}
    return pd.DataFrame([row])


def test_a_new_field_reaches_the_table_the_api_the_page_and_the_export() -> None:
    added = ScoreField(
        "loyalty_score", NUMBER, body=len(RECORD.body) + 1, csv=len(RECORD.exported) + 1,
        page=True, posted="scored",
        description="how loyal the account has been",
    )
    record = ScoreRecord((*RECORD.fields, added))

    assert record.store_schema == {**RECORD.store_schema, "loyalty_score": "DOUBLE"}
    model = record.response_model("AccountScore", "doc", module=__name__)
    assert list(model.model_fields)[-1] == "loyalty_score"
    assert model.model_fields["loyalty_score"].description == "how loyal the account has been"
    posted = record.response_model("FeatureRowScore", "doc", module=__name__, posted=True)
    assert "loyalty_score" in posted.model_fields
    assert record.export_headers == (*RECORD.export_headers, "loyalty_score")
    assert "loyalty_score" in record.page_columns
    assert record.export_values({"loyalty_score": 0.25})[-1] == 0.25

    # the table made from the schema, and the body written from it, hold the new field
    con = duckdb.connect()
    columns = ", ".join(f'"{c}" {t}' for c, t in record.store_schema.items())
    con.execute(f"CREATE TABLE scores ({columns})")
    con.register("frame", pa.Table.from_pandas(_one_row(record)))
    typed = ", ".join(f'CAST("{c}" AS {t})' for c, t in record.store_schema.items())
    con.execute(f"INSERT INTO scores SELECT {typed} FROM frame")
    assert [r[0] for r in con.execute("DESCRIBE scores").fetchall()] == list(record.names)
    pieces = [
        con.execute(f"SELECT CAST({part.sql} AS VARCHAR) FROM scores").fetchone()[0][1:-1]
        if part.sql
        else f'"{part.list_field}":[]'
        for part in record.body_parts
    ]
    body = "{" + ",".join(pieces) + "}"
    check_body(body, model, record.body)
    assert json.loads(body)["loyalty_score"] == 0.25


def _fields(**changes: Any) -> tuple[ScoreField, ...]:
    """The record's fields with those named changed (None drops a field)."""
    out = []
    for f in RECORD:
        change = changes.get(f.name, {})
        if change is not None:
            out.append(replace(f, **change))
    return tuple(out)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((*RECORD.fields, RECORD["tier"]), "fields declared twice: ['tier']"),
        (_fields(tier={"body": 30}), "the body positions"),
        (_fields(tier={"csv": 1}), "the csv positions"),
        (_fields(rank={"header": "tier"}), "export headers declared twice"),
        (_fields(top_driver={"first_of": ("tier", "phrase")}), "not a list field"),
        (_fields(top_driver={"first_of": ("drivers", "title")}), "drivers items do not have"),
        (_fields(drivers={"nullable": True}), "drivers is a list, never null"),
        (
            (*RECORD.fields, ScoreField("note", TEXT, csv=len(RECORD.exported) + 1)),
            "note is exported, so it must be in the body",
        ),
        (_fields(top_driver={"posted": "echoed"}), "top_driver is echoed"),
    ],
    ids=[
        "twice", "body-gap", "csv-twice", "header-twice", "not-a-list", "no-such-key",
        "nullable-list", "export-needs-body", "echo-needs-body",
    ],
)
def test_an_inconsistent_record_is_refused(fields: tuple[ScoreField, ...], message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        ScoreRecord(fields)


def test_the_summary_columns_repeat_the_first_items() -> None:
    body = {
        "account_id": "A1",
        "drivers": [{"phrase": "late deliveries", "cause": "unmet_needs"}, {"phrase": "x"}],
        "actions": [],
    }
    values = dict(zip(RECORD.export_headers, RECORD.export_values(body), strict=True))
    assert values["top_driver"] == "late deliveries"
    assert values["top_driver_cause"] == "unmet_needs"
    assert values["first_action"] is None and values["first_action_due"] is None
    assert values["account_id"] == "A1" and values["rank"] is None


def test_list_kinds_name_their_items() -> None:
    assert DRIVERS.item is Driver
    assert RECORD["actions"].kind.item is ActionRecommendation


# ------------------------------------------------------------------------------------------------
# What the real app serves over HTTP
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def web_world(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return scored_world(small_world, tmp_path_factory)


@pytest.fixture(scope="module")
def http(web_world: WebWorld) -> Iterator[httpx.Client]:
    """An HTTP client of the service under uvicorn in a thread, on a free loopback port."""
    app = make_app(web_settings(web_world))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": USER_KEY}, timeout=60
        ) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def _sample(web_world: WebWorld) -> list[str]:
    """Accounts of every kind: the most at risk, each tier, and any without drivers or actions."""
    frame = web_world.expected.sort_values("value_at_risk", ascending=False)
    chosen = list(frame["account_id"].head(5))
    for tier in ("A", "B", "C"):
        chosen += list(frame.loc[frame["tier"] == tier, "account_id"].tail(2))
    for column in ("drivers", "actions"):
        chosen += list(frame.loc[frame[column] == "[]", "account_id"].head(2))
    return list(dict.fromkeys(str(a) for a in chosen))


def test_get_account_bodies_are_the_record(http: httpx.Client, web_world: WebWorld) -> None:
    for account_id in _sample(web_world):
        response = http.get(f"/v1/accounts/{account_id}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = check_body(response.content, AccountScore, RECORD.body)
        stored = web_world.expected.loc[account_id]
        assert body["account_id"] == account_id
        assert body["value_at_risk"] == pytest.approx(stored["value_at_risk"])
        assert body["drivers"] == json.loads(stored["drivers"])
        assert body["actions"] == json.loads(stored["actions"])


def test_at_risk_pages_are_the_record(http: httpx.Client, web_world: WebWorld) -> None:
    seen = 0
    for params in ({"limit": MAX_PAGE}, {"tier": "C", "limit": 20, "offset": 5}):
        response = http.get("/v1/at-risk", params=params)
        assert response.status_code == 200, response.text
        page = AtRiskPage.model_validate_json(response.content, strict=True)
        assert list(response.json()) == list(AtRiskPage.model_fields)
        for item in response.json()["items"]:
            check_body(item, AccountScore, RECORD.body)
        seen += len(page.items)
    assert seen > 0


@pytest.fixture(scope="module")
def posted_rows(small_world: World, web_world: WebWorld) -> list[dict[str, Any]]:
    """Feature rows of a few accounts at the latest as_of, as a CRM would post them."""
    model = small_world.model()
    horizon, window, decline = label_settings(model.metadata)
    con = small_world.connect()
    try:
        day = web_world.as_of[-1]
        snapshot = build_snapshots(
            con, [day], horizon=horizon, activity_window=window, decline=decline
        )
    finally:
        con.disconnect()
    spec = model.scorer.spec
    rows = []
    for _, row in snapshot.head(POSTED_ACCOUNTS).iterrows():
        features = {
            name: str(row[name]) if name in spec.categories else float(row[name])
            for name in spec.names
            if not pd.isna(row[name])
        }
        rows.append({"account_id": str(row["account_id"]), "as_of": str(day.date()),
                     "features": features})
    return rows


def test_post_score_bodies_are_the_record(
    http: httpx.Client, posted_rows: list[dict[str, Any]]
) -> None:
    fields = tuple(f for f in RECORD.body if f.posted)
    echoed = tuple(f.name for f in fields if f.posted == "echoed")
    bare = {"features": {}}  # no id, no as_of, no figures: the nullable fields are null
    for payload in [*posted_rows, bare]:
        response = http.post("/v1/score", json=payload)
        assert response.status_code == 200, response.text
        body = check_body(
            response.content, FeatureRowScore, fields, extra=POSTED_EXTRAS,
            nullable=echoed,
        )
        assert body["account_id"] == payload.get("account_id")
        assert body["as_of"] == payload.get("as_of")
        assert isinstance(body["missing_features"], list)
    assert body["value_at_stake"] is None and body["value_at_risk"] is None


def test_the_stored_table_and_the_export_are_the_record(
    http: httpx.Client, web_world: WebWorld
) -> None:
    con = duckdb.connect(str(web_world.store_file), read_only=True)
    try:
        described = con.execute("DESCRIBE scores").fetchall()
    finally:
        con.close()
    assert {name: kind for name, kind, *_ in described} == RECORD.store_schema

    response = http.get("/export.csv", params={"tier": "A"})
    assert response.status_code == 200, response.text
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert tuple(rows[0]) == RECORD.export_headers
    items = http.get("/v1/at-risk", params={"tier": "A", "limit": MAX_PAGE}).json()["items"]
    assert len(rows) - 1 == len(items) > 0
    for row, item in zip(rows[1:], items, strict=True):
        cells = dict(zip(rows[0], row, strict=True))
        assert cells["account_id"] == item["account_id"]
        drivers = item["drivers"]
        assert cells["top_driver"] == (drivers[0]["phrase"] if drivers else "")
        assert json.loads(cells["actions"]) == item["actions"]


def test_the_openapi_schema_is_the_record(http: httpx.Client) -> None:
    schemas = http.get("/openapi.json").json()["components"]["schemas"]
    body = [f.name for f in RECORD.body]
    for name, fields in (
        ("AccountScore", body),
        ("FeatureRowScore", [n for n in body if RECORD[n].posted] + list(POSTED_EXTRAS)),
    ):
        schema = schemas[name]
        assert list(schema["properties"]) == fields
        assert schema["required"] == fields  # every key is in every body
    probability = schemas["AccountScore"]["properties"]["defection_probability"]
    assert (probability["minimum"], probability["maximum"]) == (0, 1)
    for f in RECORD.body:
        declared = schemas["AccountScore"]["properties"][f.name]
        assert ("anyOf" in declared) == f.nullable, f.name


def test_each_scores_row_makes_a_body_of_the_record(web_world: WebWorld) -> None:
    """Every account's body, not just those sampled over HTTP."""
    frame = web_world.expected.reset_index(drop=True)
    bodies = account_json(frame)
    assert len(bodies) == len(frame)
    for raw in bodies[:: max(1, len(bodies) // 100)]:
        check_body(raw, AccountScore, RECORD.body)
    ids = [json.loads(b)["account_id"] for b in bodies]
    assert ids == frame["account_id"].astype(str).tolist()
