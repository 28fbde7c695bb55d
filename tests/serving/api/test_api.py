"""The HTTP API end to end: a real trained model in a temp MLflow store, real batch scores."""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from kam.features.snapshots import build_snapshots, data_end
from kam.features.store import connect
from kam.models.registry import CHAMPION, alias_uri, load_model
from kam.serving.api.app import create_app
from kam.serving.api.auth import KeyFileError, Role, load_keys, read_keys_file
from kam.serving.api.deps import MISSING_KEY, NO_MODEL, NO_SCORES, NOT_ADMIN, WRONG_KEY
from kam.serving.api.schemas import MAX_BATCH_IDS, MAX_PAGE, AccountScore, AtRiskPage
from kam.serving.api.server import UnsafeBindError, check_binding, is_loopback
from kam.serving.scoring.batch import label_settings, score_accounts
from kam.serving.settings import ServeSettings
from kam.serving.state import ScoresNotLoadedError, ScoreTable
from kam.serving.store import write_scores
from kam.training.promote import promote
from tests.world import build_world

NAME = "kam-api-test"
USER_KEY = "user-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
USER = {"X-API-Key": USER_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small world, a champion model, and scores at two as_of dates in the store."""
    root = tmp_path_factory.mktemp("api")
    built = build_world(root, 400, years=3, seed=5, model_name=NAME, experiment="api")
    store, tracking = built.store, built.tracking
    assert promote(NAME, tracking_uri=tracking).promoted
    model = load_model(alias_uri(NAME), tracking)
    con = connect(store)
    end = data_end(con)
    earlier = score_accounts(con, model, as_of=end - pd.Timedelta(days=91))
    latest = score_accounts(con, model)
    write_scores(con, earlier)
    write_scores(con, latest)
    horizon, window, decline = label_settings(model.metadata)
    snapshot = build_snapshots(
        con, [end], horizon=horizon, activity_window=window, decline=decline
    )
    con.disconnect()
    both = pd.concat([earlier, latest])
    both["account_id"] = both["account_id"].astype(str)
    expected = both.sort_values("as_of").drop_duplicates("account_id", keep="last")
    return {
        "root": root,
        "store": store,
        "tracking": tracking,
        "run_id": built.outcome.run_id,
        "model": model,
        "latest": latest,
        "expected": expected.set_index("account_id", drop=False),
        "snapshot": snapshot,
        "end": end,
    }


def serve_settings(world: dict[str, Any], **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "workdir": world["root"],
        "tracking_uri": world["tracking"],
        "store_url": world["store"],
        "model_name": NAME,
        "api_keys": [USER_KEY],
        "admin_api_keys": [ADMIN_KEY],
        # these tests send wrong keys on purpose; the lock-out has its own (test_security.py)
        "auth_failures_per_minute": 1000,
    }
    values.update(overrides)
    return ServeSettings(**values)


@pytest.fixture(scope="module")
def client(world: dict[str, Any]) -> Any:
    with TestClient(create_app(serve_settings(world))) as test_client:
        yield test_client


def feature_row(world: dict[str, Any], account_id: str) -> dict[str, Any]:
    """The account's model features at the latest as_of, as a CRM would post them."""
    spec = world["model"].scorer.spec
    row = world["snapshot"].set_index("account_id").loc[account_id]
    features: dict[str, Any] = {}
    for name in spec.names:
        value = row[name]
        if pd.isna(value):
            continue
        features[name] = str(value) if name in spec.categories else float(value)
    return features


# ------------------------------------------------------------------------------------------------
# The in-memory score table, on a hand-written scores frame
# ------------------------------------------------------------------------------------------------
def scores_frame(rows: list[tuple[str, str, float, str, str, str | None]]) -> pd.DataFrame:
    """Scores rows: (account_id, as_of, value_at_risk, tier, region, account_manager)."""
    frame = pd.DataFrame(
        rows, columns=["account_id", "as_of", "value_at_risk", "tier", "region", "account_manager"]
    )
    n = len(frame)
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame["name"] = [f"Account {i}" for i in range(n)]
    frame["industry"] = "retail"
    frame["defection_probability"] = 0.5
    frame["value"] = frame["value_at_risk"].fillna(0.0) * 3
    frame["value_low"] = frame["value"] / 2
    frame["value_high"] = frame["value"] * 2
    frame["value_at_stake"] = frame["value"] * 2
    frame["relationship_stage"] = "basic"
    frame["rank"] = range(1, n + 1)
    frame["drivers"] = '[{"family": "service", "cause": "unresolved_complaints", ' \
        '"feature": "complaints_open", "contribution": 0.5, "phrase": "2 open complaints"}]'
    frame["actions"] = None
    frame["model_name"] = "m"
    frame["model_version"] = "3"
    frame["playbook_version"] = "2025.1"
    frame["scored_at"] = pd.Timestamp("2026-01-02 03:04:05")
    frame["horizon"] = "365d"
    frame["currency"] = "¥"
    return frame


SCORES_ROWS = [
    ("a", "2025-09-30", 900.0, "A", "North", "AM-1"),  # older score of a: replaced below
    ("a", "2025-12-31", 100.0, "A", "North", "AM-1"),
    ("b", "2025-12-31", 500.0, "B", "north", "AM-2"),
    ("c", "2025-12-31", 500.0, "C", "South", None),  # ties with b: account id breaks the tie
    ("d", "2025-09-30", 700.0, "A", "South", "AM-1"),  # no newer score: its latest is older
    ("e", "2025-12-31", float("nan"), "C", None, "am-2"),
]


def test_score_table_keeps_the_latest_row_in_at_risk_order() -> None:
    table = ScoreTable.from_frame(scores_frame(SCORES_ROWS))
    assert table.frame["account_id"].tolist() == ["d", "b", "c", "a", "e"]
    assert table.frame.loc["a", "value_at_risk"] == 100.0
    assert table.as_of == pd.Timestamp("2025-12-31").date()
    assert table.model_version == "3"
    body = json.loads(table.body("a"))
    assert body["as_of"] == "2025-12-31"
    assert body["value_at_risk"] == 100.0
    assert body["drivers"][0]["phrase"] == "2 open complaints"
    assert body["actions"] == []
    assert body["scored_at"] == "2026-01-02T03:04:05.000000Z"  # UTC, and says so
    assert json.loads(table.body("e"))["value_at_risk"] is None  # NaN is not JSON
    assert table.body("zz") is None
    for account_id in "abcde":
        AccountScore.model_validate_json(table.body(account_id))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["d", "b", "c", "a", "e"]),
        ({"tiers": ["A"]}, ["d", "a"]),
        ({"tiers": ["B", "C"]}, ["b", "c", "e"]),
        ({"region": "NORTH"}, ["b", "a"]),
        ({"account_manager": "AM-2"}, ["b", "e"]),
        ({"min_value_at_risk": 500.0}, ["d", "b", "c"]),
        ({"tiers": ["A"], "region": "south", "account_manager": "am-1"}, ["d"]),
        ({"region": "West"}, []),
    ],
    ids=["none", "tier", "tiers", "region", "manager", "min-value", "all", "no-match"],
)
def test_score_table_filters(filters: dict[str, Any], expected: list[str]) -> None:
    table = ScoreTable.from_frame(scores_frame(SCORES_ROWS))
    chosen = table.select(**filters)
    assert [table.frame["account_id"].iloc[i] for i in chosen] == expected
    assert [item["account_id"] for item in json.loads(table.json_list(chosen))] == expected


def test_score_table_refuses_malformed_drivers() -> None:
    frame = scores_frame(SCORES_ROWS)
    frame.loc[2, "drivers"] = '{"not": "a list"}'
    with pytest.raises(ScoresNotLoadedError, match="account 'b' hold drivers that are not a JSON"):
        ScoreTable.from_frame(frame)
    with pytest.raises(ScoresNotLoadedError, match="the scores table is empty"):
        ScoreTable.from_frame(frame.iloc[:0])


# ------------------------------------------------------------------------------------------------
# Probes, docs and metrics need no key
# ------------------------------------------------------------------------------------------------
def test_probes_and_docs_need_no_key(client: TestClient, world: dict[str, Any]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "model_version": "1",
        "scores_accounts": len(world["expected"]),
        "missing": {},
    }
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {
        "/v1/accounts/{account_id}",
        "/v1/scores",
        "/v1/score",
        "/v1/at-risk",
        "/v1/model",
        "/v1/admin/reload",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert {"AccountScore", "Driver", "ActionRecommendation", "AtRiskPage"} <= set(
        schema["components"]["schemas"]
    )
    assert client.get("/metrics").status_code == 200


# ------------------------------------------------------------------------------------------------
# Keys
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/accounts/x", None),
        ("POST", "/v1/scores", {"account_ids": ["x"]}),
        ("POST", "/v1/score", {"features": {}}),
        ("GET", "/v1/at-risk", None),
        ("GET", "/v1/model", None),
        ("POST", "/v1/admin/reload", None),
    ],
    ids=["account", "scores", "score", "at-risk", "model", "reload"],
)
def test_every_v1_route_needs_a_key(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    missing = client.request(method, path, json=body)
    assert missing.status_code == 401
    assert missing.json()["detail"] == MISSING_KEY
    assert missing.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    wrong = client.request(method, path, json=body, headers={"X-API-Key": USER_KEY + "x"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == WRONG_KEY
    assert "www-authenticate" in wrong.headers


def test_admin_route_refuses_a_user_key(client: TestClient) -> None:
    response = client.post("/v1/admin/reload", headers=USER)
    assert response.status_code == 403
    assert response.json()["detail"] == NOT_ADMIN


def test_admin_key_may_call_user_routes(client: TestClient) -> None:
    assert client.get("/v1/model", headers=ADMIN).status_code == 200


def test_keys_file_roles_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# callers\n{USER_KEY}\n\nadmin:{ADMIN_KEY}\nuser:{'u' * 20}\n")
    assert read_keys_file(path) == ([USER_KEY, "u" * 20], [ADMIN_KEY])
    keys = load_keys(ServeSettings(api_keys_file=path))
    assert keys.role_of(USER_KEY) is Role.USER
    assert keys.role_of(ADMIN_KEY) is Role.ADMIN
    assert keys.role_of("u" * 20) is Role.USER
    assert keys.role_of(USER_KEY[:-1]) is None
    assert keys.role_of(None) is None
    path.write_text(f"{USER_KEY}\nadmin:short\n")
    with pytest.raises(KeyFileError, match="line 2: key shorter than 16 characters"):
        read_keys_file(path)


def test_keys_from_environment_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAM_API_KEYS", f"{USER_KEY}, {'k' * 16}")
    monkeypatch.setenv("KAM_ADMIN_API_KEYS", ADMIN_KEY)
    settings = ServeSettings()
    assert settings.api_keys == [USER_KEY, "k" * 16]
    assert settings.admin_api_keys == [ADMIN_KEY]
    monkeypatch.setenv("KAM_API_KEYS", "tooshort")
    with pytest.raises(ValueError, match="shorter than 16 characters"):
        ServeSettings()


def test_keys_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="which is not a file"):
        ServeSettings(api_keys_file=tmp_path / "nope")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_no_keys_binds_loopback_only(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(UnsafeBindError, match=r"refusing to serve on 0\.0\.0\.0 without API keys"):
        check_binding(ServeSettings(host="0.0.0.0"))
    with caplog.at_level("WARNING"):
        check_binding(ServeSettings(host="127.0.0.1"))
    assert "no API keys configured" in caplog.text
    check_binding(ServeSettings(host="0.0.0.0", api_keys=[USER_KEY]))


def test_no_keys_means_open_on_loopback(world: dict[str, Any]) -> None:
    settings = serve_settings(world, api_keys=[], admin_api_keys=[])
    with TestClient(create_app(settings)) as open_client:
        assert open_client.get("/v1/model").status_code == 200


# ------------------------------------------------------------------------------------------------
# One account, a batch of accounts
# ------------------------------------------------------------------------------------------------
def test_account_is_its_latest_score(client: TestClient, world: dict[str, Any]) -> None:
    expected = world["expected"]
    for account_id in expected.index[:25]:
        response = client.get(f"/v1/accounts/{account_id}", headers=USER)
        assert response.status_code == 200
        body = AccountScore.model_validate(response.json())
        row = expected.loc[account_id]
        assert body.account_id == account_id
        assert body.as_of == pd.Timestamp(row["as_of"]).date()
        assert body.defection_probability == pytest.approx(row["defection_probability"])
        assert body.value_low <= body.value <= body.value_high
        assert body.value_at_risk == pytest.approx(row["value_at_risk"])
        assert body.tier == row["tier"]
        assert body.relationship_stage == row["relationship_stage"]
        assert body.model_version == "1"
        assert [d.phrase for d in body.drivers][:1] == (
            [row["top_driver"]] if pd.notna(row["top_driver"]) else []
        )
        assert [a.title for a in body.actions][:1] == (
            [row["first_action"]] if pd.notna(row["first_action"]) else []
        )


def test_latest_as_of_wins_per_account(client: TestClient, world: dict[str, Any]) -> None:
    latest_day = pd.Timestamp(world["latest"]["as_of"].max()).date().isoformat()
    account_id = str(world["latest"]["account_id"].iloc[-1])
    assert client.get(f"/v1/accounts/{account_id}", headers=USER).json()["as_of"] == latest_day


def test_unknown_account_is_404(client: TestClient) -> None:
    response = client.get("/v1/accounts/NO-SUCH-ACCOUNT", headers=USER)
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown account 'NO-SUCH-ACCOUNT'"


def test_batch_of_accounts(client: TestClient, world: dict[str, Any]) -> None:
    ids = list(world["expected"].index[:3])
    response = client.post(
        "/v1/scores",
        json={"account_ids": [ids[2], "nope-1", ids[0], ids[2], 12345, ids[1]]},
        headers=USER,
    )
    assert response.status_code == 200
    body = response.json()
    assert [item["account_id"] for item in body["items"]] == [ids[2], ids[0], ids[1]]
    assert body["unknown"] == ["nope-1", "12345"]
    for item in body["items"]:
        AccountScore.model_validate(item)


def test_batch_is_bounded(client: TestClient) -> None:
    too_many = client.post(
        "/v1/scores", json={"account_ids": [str(i) for i in range(MAX_BATCH_IDS + 1)]}, headers=USER
    )
    assert too_many.status_code == 422
    (error,) = too_many.json()["errors"]
    assert error["loc"] == ["body", "account_ids"]
    assert error["msg"] == (
        f"List should have at most {MAX_BATCH_IDS} items after validation, not 1001"
    )
    empty = client.post("/v1/scores", json={"account_ids": []}, headers=USER)
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["loc"] == ["body", "account_ids"]
    missing = client.post("/v1/scores", json={"ids": ["a"]}, headers=USER)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"] == ["body", "account_ids"]
    assert missing.json()["errors"][0]["msg"] == "Field required"
    broken = client.post(
        "/v1/scores", content=b"{not json", headers={**USER, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["type"] == "json_invalid"


# ------------------------------------------------------------------------------------------------
# The ranked at-risk list
# ------------------------------------------------------------------------------------------------
def all_pages(client: TestClient, **params: Any) -> tuple[int, list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = client.get(
            "/v1/at-risk", params={**params, "limit": MAX_PAGE, "offset": offset}, headers=USER
        ).json()
        items += page["items"]
        offset += MAX_PAGE
        if offset >= page["total"]:
            return page["total"], items


def test_at_risk_is_sorted_by_value_at_risk(client: TestClient, world: dict[str, Any]) -> None:
    total, items = all_pages(client)
    assert total == len(items) == len(world["expected"])
    risk = [item["value_at_risk"] for item in items]
    assert risk == sorted(risk, reverse=True)
    first = client.get("/v1/at-risk", headers=USER).json()
    AtRiskPage.model_validate(first)
    assert first["limit"] == 50 and first["offset"] == 0 and len(first["items"]) == 50
    assert first["filters"] == {
        "tier": None, "region": None, "account_manager": None, "min_value_at_risk": None
    }


def expected_ids(world: dict[str, Any], mask: pd.Series) -> list[str]:
    chosen = world["expected"][mask].reset_index(drop=True)
    return chosen.sort_values(["value_at_risk", "account_id"], ascending=[False, True])[
        "account_id"
    ].tolist()


def test_at_risk_filters(client: TestClient, world: dict[str, Any]) -> None:
    expected = world["expected"]
    region = str(expected["region"].dropna().iloc[0])
    manager = str(expected["account_manager"].dropna().iloc[0])
    threshold = float(expected["value_at_risk"].median())
    cases = [
        ({"tier": "A"}, expected["tier"] == "A"),
        ({"tier": ["A", "B"]}, expected["tier"].isin(["A", "B"])),
        ({"region": region}, expected["region"] == region),
        ({"region": region.upper()}, expected["region"] == region.upper()),  # case exact
        ({"account_manager": manager}, expected["account_manager"] == manager),
        ({"min_value_at_risk": threshold}, expected["value_at_risk"] >= threshold),
        (
            {"tier": "C", "region": region, "min_value_at_risk": 1.0},
            (expected["tier"] == "C") & (expected["region"] == region)
            & (expected["value_at_risk"] >= 1.0),
        ),
    ]
    for params, mask in cases:
        total, items = all_pages(client, **params)
        wanted = expected_ids(world, mask)
        assert total == len(wanted), params
        assert [item["account_id"] for item in items] == wanted, params
    page = client.get(
        "/v1/at-risk", params={"tier": ["A", "B"], "region": region}, headers=USER
    ).json()
    assert page["filters"] == {
        "tier": ["A", "B"], "region": region, "account_manager": None, "min_value_at_risk": None
    }


def test_at_risk_paging(client: TestClient, world: dict[str, Any]) -> None:
    _, everything = all_pages(client)
    ids = [item["account_id"] for item in everything]
    for limit, offset in [(1, 0), (7, 3), (50, 50), (10, len(ids) - 4), (5, len(ids) + 10)]:
        page = client.get(
            "/v1/at-risk", params={"limit": limit, "offset": offset}, headers=USER
        ).json()
        assert page["total"] == len(ids)
        assert [item["account_id"] for item in page["items"]] == ids[offset : offset + limit]


@pytest.mark.parametrize(
    ("params", "loc", "msg"),
    [
        (
            {"limit": MAX_PAGE + 1},
            ["query", "limit"],
            f"Input should be less than or equal to {MAX_PAGE}",
        ),
        ({"limit": 0}, ["query", "limit"], "Input should be greater than or equal to 1"),
        ({"offset": -1}, ["query", "offset"], "Input should be greater than or equal to 0"),
        ({"tier": "D"}, ["query", "tier", 0], "Input should be 'A', 'B' or 'C'"),
        ({"min_value_at_risk": "lots"}, ["query", "min_value_at_risk"],
         "Input should be a valid number, unable to parse string as a number"),
    ],
    ids=["limit-high", "limit-zero", "offset", "tier", "min-value"],
)
def test_at_risk_bad_parameters(
    client: TestClient, params: dict[str, Any], loc: list[Any], msg: str
) -> None:
    response = client.get("/v1/at-risk", params=params, headers=USER)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == loc
    assert error["msg"] == msg


# ------------------------------------------------------------------------------------------------
# A posted feature row
# ------------------------------------------------------------------------------------------------
def test_posted_row_scores_like_the_batch(client: TestClient, world: dict[str, Any]) -> None:
    latest = world["latest"]
    account_id = str(latest["account_id"].iloc[0])
    features = feature_row(world, account_id)
    as_of = pd.Timestamp(world["end"]).date().isoformat()
    response = client.post(
        "/v1/score",
        json={"account_id": account_id, "as_of": as_of, "features": features},
        headers=USER,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    batch = latest.set_index(latest["account_id"].astype(str)).loc[account_id]
    assert body["account_id"] == account_id
    assert body["as_of"] == as_of
    assert body["defection_probability"] == pytest.approx(batch["defection_probability"])
    assert body["value"] == pytest.approx(batch["value"])
    assert body["value_at_risk"] == pytest.approx(batch["value_at_risk"])
    assert body["tier"] == batch["tier"]
    assert body["relationship_stage"] == batch["relationship_stage"]
    assert body["drivers"][0]["phrase"] == batch["top_driver"]
    assert body["model_version"] == "1"
    assert set(body["missing_features"]) == set(world["model"].scorer.spec.names) - set(features)


def test_rows_posted_at_once_each_get_their_own_scores(
    client: TestClient, world: dict[str, Any]
) -> None:
    """Concurrent posts are scored in shared batches; no answer may carry another row's scores."""
    latest = world["latest"]
    batch = latest.set_index(latest["account_id"].astype(str))
    ids = [str(i) for i in latest["account_id"].iloc[:24]]
    days = ["2025-06-30", "2025-12-31"]  # two as_of dates: due dates count from each
    due_in = {a.id: a.due_in_days for a in client.app.state.serving.playbook.actions}
    batcher = client.app.state.row_batcher
    before = (batcher.batches, batcher.rows)
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def post(account_id: str, day: str) -> None:
        body = {"account_id": account_id, "as_of": day, "features": feature_row(world, account_id)}
        response = client.post("/v1/score", json=body, headers=USER)
        with lock:
            if response.status_code != 200:
                failures.append(f"{account_id}: {response.status_code} {response.text}")
            else:
                answers[(account_id, day)] = response.json()

    threads = [
        threading.Thread(target=post, args=(account_id, days[k % 2]))
        for k, account_id in enumerate(ids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(answers) == len(ids)
    for (account_id, day), body in answers.items():
        assert body["account_id"] == account_id
        assert body["defection_probability"] == pytest.approx(
            batch.loc[account_id, "defection_probability"]
        )
        assert body["value"] == pytest.approx(batch.loc[account_id, "value"])
        for action in body["actions"]:
            due = pd.Timestamp(day) + pd.Timedelta(days=due_in[action["action_id"]])
            assert action["due_date"] == due.date().isoformat()
    assert batcher.rows - before[1] == len(ids)


def test_posted_row_may_leave_features_out(client: TestClient) -> None:
    response = client.post(
        "/v1/score", json={"features": {"recency_days": 30.0, "revenue_365d": 250000}}, headers=USER
    )
    assert response.status_code == 200
    body = response.json()
    assert 0 <= body["defection_probability"] <= 1
    assert body["value_low"] <= body["value"] <= body["value_high"]
    assert "recency_days" not in body["missing_features"]
    assert "tenure_days" in body["missing_features"]
    assert body["known_features"] == 2 and body["reliable"] is False
    empty = client.post("/v1/score", json={"features": {}}, headers=USER)
    assert empty.status_code == 200
    assert empty.json()["value_at_stake"] is None
    assert empty.json()["reliable"] is False


def test_posted_row_names_each_bad_field(client: TestClient, world: dict[str, Any]) -> None:
    levels = list(world["model"].scorer.spec.categories["region"])
    response = client.post(
        "/v1/score",
        json={
            "features": {
                "recency_days": "recent",
                "no_such_feature": 1,
                "region": "Atlantis",
                "tenure_days": True,
                "revenue_365d": 1000.0,
            }
        },
        headers=USER,
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {
            "type": "feature_row",
            "loc": ["body", "features", "recency_days"],
            "msg": "expected a number, got 'recent'",
        },
        {
            "type": "feature_row",
            "loc": ["body", "features", "no_such_feature"],
            "msg": "unknown feature",
        },
        {
            "type": "feature_row",
            "loc": ["body", "features", "region"],
            "msg": f"unknown category 'Atlantis'; expected one of {levels}",
        },
        {
            "type": "feature_row",
            "loc": ["body", "features", "tenure_days"],
            "msg": "expected a number, got True",
        },
    ]


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({}, ["body", "features"]),
        ({"features": [1, 2]}, ["body", "features"]),
        ({"features": {"recency_days": [1]}}, ["body", "features", "recency_days", "float"]),
        ({"features": {}, "as_of": "yesterday"}, ["body", "as_of"]),
    ],
    ids=["no-features", "list", "nested", "bad-date"],
)
def test_posted_row_bad_shapes_are_422(
    client: TestClient, payload: dict[str, Any], loc: list[Any]
) -> None:
    response = client.post("/v1/score", json=payload, headers=USER)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == loc


# ------------------------------------------------------------------------------------------------
# Model info and metrics
# ------------------------------------------------------------------------------------------------
def test_model_info(client: TestClient, world: dict[str, Any]) -> None:
    body = client.get("/v1/model", headers=USER).json()
    model = world["model"]
    assert body["name"] == NAME
    assert body["version"] == "1"
    assert body["alias"] == CHAMPION
    assert body["uri"] == alias_uri(NAME)
    assert body["run_id"] == world["run_id"]
    assert (body["horizon"], body["decline"], body["activity_window"]) == ("365d", 0.5, "365d")
    assert body["test_as_of"] == model.scorer.meta["test_as_of"]
    assert body["train_as_of"] == model.scorer.meta["train_as_of"]
    # the served model was refitted on the freshest labels; the metrics come from the backtest
    assert body["evaluation"] == "out-of-time"
    assert body["backtest_train_as_of"][1] < body["test_as_of"] <= body["train_as_of"][1]
    assert body["metrics"]["test_defection_roc_auc"] == pytest.approx(
        model.metrics["test_defection_roc_auc"]
    )
    assert all(name.startswith("test_") for name in body["metrics"])
    assert [f["name"] for f in body["features"]] == list(model.scorer.spec.names)
    region = next(f for f in body["features"] if f["name"] == "region")
    assert region["categories"] == list(model.scorer.spec.categories["region"])
    assert body["scores"]["accounts"] == len(world["expected"])
    assert body["scores"]["model_version"] == "1"
    assert body["scores"]["as_of"] == pd.Timestamp(world["end"]).date().isoformat()


def test_metrics_count_requests_by_route(client: TestClient, world: dict[str, Any]) -> None:
    account_id = str(world["expected"].index[0])
    client.get(f"/v1/accounts/{account_id}", headers=USER)
    client.get("/v1/accounts/NO-SUCH", headers=USER)
    client.get("/no/such/path")
    text = client.get("/metrics").text
    route = 'method="GET",route="/v1/accounts/{account_id}"'
    assert f"kam_http_requests_total{{{route},status=\"200\"}}" in text
    assert f"kam_http_requests_total{{{route},status=\"404\"}}" in text
    assert 'route="unmatched",status="404"' in text
    assert account_id not in text  # route templates only: no label per account
    assert f'kam_http_request_duration_seconds_bucket{{le="0.005",{route}}}' in text
    info = f'alias="champion",name="{NAME}",uri="{alias_uri(NAME)}",version="1"'
    assert f"kam_model_info{{{info}}} 1.0" in text
    assert f"kam_scores_loaded_accounts {float(len(world['expected']))}" in text
    assert "kam_model_loaded 1.0" in text


# ------------------------------------------------------------------------------------------------
# Nothing to serve yet
# ------------------------------------------------------------------------------------------------
def test_without_model_or_scores_it_starts_and_says_what_to_run(
    world: dict[str, Any], tmp_path: Path
) -> None:
    settings = serve_settings(
        world, model_name="never-trained", store_url=f"duckdb:///{tmp_path / 'none.duckdb'}"
    )
    with TestClient(create_app(settings)) as empty:
        assert empty.get("/healthz").status_code == 200
        ready = empty.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False and body["model_version"] is None
        assert set(body["missing"]) == {"model", "scores"}
        assert "models:/never-trained@champion" in body["missing"]["model"]
        assert "kam train" in body["missing"]["model"]
        assert "no store at" in body["missing"]["scores"]
        for method, path, payload, detail in [
            ("GET", "/v1/accounts/x", None, NO_SCORES),
            ("POST", "/v1/scores", {"account_ids": ["x"]}, NO_SCORES),
            ("GET", "/v1/at-risk", None, NO_SCORES),
            ("POST", "/v1/score", {"features": {}}, NO_MODEL),
            ("GET", "/v1/model", None, NO_MODEL),
        ]:
            response = empty.request(method, path, json=payload, headers=USER)
            assert response.status_code == 503, path
            assert response.json()["detail"] == detail, path
        assert "kam_model_loaded 0.0" in empty.get("/metrics").text
        failed = empty.post("/v1/admin/reload", headers=ADMIN)
        assert failed.status_code == 200  # nothing was lost, so the reload itself succeeds
        assert set(failed.json()["missing"]) == {"model", "scores"}


def test_scores_without_the_table_are_named(world: dict[str, Any], tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    connect(store).disconnect()
    with TestClient(create_app(serve_settings(world, store_url=store))) as no_table:
        body = no_table.get("/readyz").json()
        assert body["missing"] == {
            "scores": f"the store {store} has no scores table: run `kam score`"
        }
        assert body["model_version"] == "1"
        # a posted row needs only the model: its tier comes from the posted spend tier
        scored = no_table.post(
            "/v1/score", json={"features": {"spend_tier": "A"}}, headers=USER
        )
        assert scored.status_code == 200
        assert scored.json()["tier"] == "A"
        assert no_table.get("/v1/accounts/x", headers=USER).json()["detail"] == NO_SCORES


# ------------------------------------------------------------------------------------------------
# Reloads
# ------------------------------------------------------------------------------------------------
def test_reload_under_load_drops_no_request(client: TestClient, world: dict[str, Any]) -> None:
    ids = list(world["expected"].index)
    features = feature_row(world, str(world["latest"]["account_id"].iloc[1]))
    failures: list[str] = []
    counts = {"get": 0, "post": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def hammer_get(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            account_id = ids[int(rng.integers(len(ids)))]
            response = client.get(f"/v1/accounts/{account_id}", headers=USER)
            with lock:
                counts["get"] += 1
                if response.status_code != 200 or response.json()["account_id"] != account_id:
                    failures.append(f"GET {account_id}: {response.status_code} {response.text}")

    def hammer_post() -> None:
        while not stop.is_set():
            response = client.post("/v1/score", json={"features": features}, headers=USER)
            with lock:
                counts["post"] += 1
                if response.status_code != 200 or not math.isfinite(
                    response.json()["defection_probability"]
                ):
                    failures.append(f"POST: {response.status_code} {response.text}")

    threads = [threading.Thread(target=hammer_get, args=(s,)) for s in range(3)]
    threads += [threading.Thread(target=hammer_post) for _ in range(2)]
    for thread in threads:
        thread.start()
    states = []
    try:
        for _ in range(4):
            time.sleep(0.2)
            reloaded = client.post("/v1/admin/reload", headers=ADMIN)
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["model_version"] == "1"
            states.append(client.app.state.serving)
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert counts["get"] > 20 and counts["post"] > 5, counts
    assert len({id(s) for s in states}) == 4  # each reload swapped in a new state
    assert 'kam_reloads_total{outcome="ok"}' in client.get("/metrics").text


def test_reload_serves_a_newly_promoted_version(world: dict[str, Any]) -> None:
    """Register and promote a second version, reload: the service answers with version 2."""
    mlflow.set_tracking_uri(world["tracking"])
    registry = MlflowClient(world["tracking"])
    settings = serve_settings(world)
    with TestClient(create_app(settings)) as served:
        assert served.get("/v1/model", headers=USER).json()["version"] == "1"
        second = mlflow.register_model(f"runs:/{world['run_id']}/scoring_bundle", NAME)
        try:
            decision = promote(
                NAME, tracking_uri=world["tracking"], version=str(second.version), force=True
            )
            assert decision.promoted
            assert served.get("/v1/model", headers=USER).json()["version"] == "1"
            reloaded = served.post("/v1/admin/reload", headers=ADMIN)
            assert reloaded.status_code == 200
            assert reloaded.json()["model_version"] == str(second.version)
            assert reloaded.json()["previous_model_version"] == "1"
            assert served.get("/v1/model", headers=USER).json()["version"] == str(second.version)
            assert served.get("/readyz").json()["model_version"] == str(second.version)
            scored = served.post("/v1/score", json={"features": {}}, headers=USER).json()
            assert scored["model_version"] == str(second.version)
            text = served.get("/metrics").text
            assert f'version="{second.version}"' in text
        finally:
            registry.set_registered_model_alias(NAME, CHAMPION, "1")


def test_a_replaced_state_is_freed_and_the_new_one_frozen(world: dict[str, Any]) -> None:
    """The loaded state is kept out of the cyclic collector's scans, yet a reload lets go of
    the state it replaced."""
    with TestClient(create_app(serve_settings(world))) as served:
        assert gc.get_freeze_count() > 10_000  # libraries, model and scores: frozen
        first = weakref.ref(served.app.state.serving)
        assert served.post("/v1/admin/reload", headers=ADMIN).status_code == 200
        assert first() is None
        assert gc.get_freeze_count() > 10_000
        assert served.app.state.serving.model is not None


def _worker_series(metrics_text: str, metric: str) -> dict[str, str]:
    """pid -> the full sample line of a per-worker gauge whose value is 1."""
    series = {}
    for line in metrics_text.splitlines():
        if line.startswith(metric + "{") and line.endswith(" 1.0"):
            pid = line.split('pid="', 1)[1].split('"', 1)[0]
            series[pid] = line
    return series


def test_two_workers_share_reloads_and_metrics(world: dict[str, Any]) -> None:
    """Two uvicorn workers: both answer, a reload through one reaches both, metrics add up."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "KAM_WORKDIR": str(world["root"]),
        "KAM_TRACKING_URI": world["tracking"],
        "KAM_STORE_URL": world["store"],
        "KAM_MODEL_NAME": NAME,
        "KAM_API_KEYS": USER_KEY,
        "KAM_ADMIN_API_KEYS": ADMIN_KEY,
        "KAM_HOST": "127.0.0.1",
        "KAM_PORT": str(port),
        "KAM_WORKERS": "2",
        "KAM_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "from kam.serving.api.server import run; run()"],
        env=env,
        cwd=Path(__file__).resolve().parents[3],
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    registry = MlflowClient(world["tracking"])
    try:
        deadline = time.monotonic() + 90
        workers: dict[str, str] = {}
        while len(workers) < 2:
            assert server.poll() is None, "the server stopped"
            assert time.monotonic() < deadline, "two workers did not start within 90 s"
            time.sleep(0.5)
            try:
                workers = _worker_series(httpx.get(f"{base}/metrics").text, "kam_model_loaded")
            except httpx.TransportError:
                continue
        # every request on a fresh connection: the kernel spreads them over the workers
        for _ in range(20):
            scored = httpx.post(f"{base}/v1/score", json={"features": {}}, headers=USER)
            assert scored.status_code == 200, scored.text
        text = httpx.get(f"{base}/metrics").text
        assert 'kam_http_requests_total{method="POST",route="/v1/score",status="200"} 20.0' in text

        mlflow.set_tracking_uri(world["tracking"])
        new = str(mlflow.register_model(f"runs:/{world['run_id']}/scoring_bundle", NAME).version)
        assert promote(NAME, tracking_uri=world["tracking"], version=new, force=True).promoted
        reloaded = httpx.post(f"{base}/v1/admin/reload", headers=ADMIN, timeout=60)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["model_version"] == new
        deadline = time.monotonic() + 30
        while True:  # the other worker follows within a poll or two
            info = _worker_series(httpx.get(f"{base}/metrics").text, "kam_model_info")
            if len(info) == 2 and all(f'version="{new}"' in line for line in info.values()):
                break
            assert time.monotonic() < deadline, f"the reload did not reach both workers: {info}"
            time.sleep(0.5)
        versions = {
            httpx.get(f"{base}/v1/model", headers=USER).json()["version"] for _ in range(20)
        }
        assert versions == {new}
        text = httpx.get(f"{base}/metrics").text
        assert 'kam_reloads_total{outcome="ok"} 2.0' in text

        # a worker that stops takes its live gauges with it
        gone = next(iter(info))
        os.kill(int(gone), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while gone in _worker_series(httpx.get(f"{base}/metrics").text, "kam_model_loaded"):
            assert time.monotonic() < deadline, f"worker {gone}'s gauges outlived it"
            time.sleep(0.5)
    finally:
        registry.set_registered_model_alias(NAME, CHAMPION, "1")
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_failed_reload_keeps_serving(world: dict[str, Any]) -> None:
    registry = MlflowClient(world["tracking"])
    with TestClient(create_app(serve_settings(world))) as served:
        registry.delete_registered_model_alias(NAME, CHAMPION)
        try:
            failed = served.post("/v1/admin/reload", headers=ADMIN)
        finally:
            registry.set_registered_model_alias(NAME, CHAMPION, "1")
        assert failed.status_code == 503
        detail = failed.json()["detail"]
        assert detail.startswith("reload failed, still serving the previous state: model: ")
        assert served.get("/v1/model", headers=USER).json()["version"] == "1"
        assert served.get("/readyz").status_code == 200
        assert 'kam_reloads_total{outcome="failed"} 1.0' in served.get("/metrics").text
