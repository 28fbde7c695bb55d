"""`kam plan`, `GET /v1/plan` and the plan view, end to end on a copy of the small world.

The world's store is copied, given action effects (as ``kam effects`` stores them; made up here
so that several actions are supported whatever the small world's history shows), scored, and
planned by the command line; the API and the page then serve that plan.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kam import cli
from kam.features.store import connect
from kam.serving.decision_tables import read_plan, write_effects
from kam.serving.decisions.playbook import load_playbook
from kam.serving.scoring.batch import score_accounts
from kam.serving.store import read_scores, write_scores
from tests.serving.web.test_web import USER_KEY, WebWorld, make_app, web_settings
from tests.world import World

PLAYBOOK = load_playbook()
CAPACITY = "AR=40h,SR=30h,FR=12h,executive=2"
LIMITS = {"AR": 40.0, "SR": 30.0, "FR": 12.0, "executive sponsor": 2.0}
SUPPORTED = ("complaint_closure", "technical_exchange", "exec_sponsor_visit", "priority_supply",
             "business_review", "quality_rca")


def _effects() -> pd.DataFrame:
    rows = []
    for action in PLAYBOOK.actions:
        helps = action.id in SUPPORTED
        rows.append({
            "action": action.id, "cause": action.cause,
            "status": "helps" if helps else "no_effect", "supported": helps,
            "n_treated": 120, "effect": -0.05 if helps else 0.01,
            "ci_low": -0.08 if helps else -0.02, "ci_high": -0.02 if helps else 0.04,
            "relative": 0.4 if helps else -0.05, "cause_share": 0.4,
            "summary": f"{action.id}: made up for the test",
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def planned(small_world: World, tmp_path_factory: pytest.TempPathFactory,
            monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("plan")
    data = root / "data"
    data.mkdir()
    store_file = data / "kam.duckdb"
    shutil.copy(small_world.store_file, store_file)
    store = f"duckdb:///{store_file}"
    con = connect(store)
    write_effects(con, _effects())
    scores = score_accounts(con, small_world.model())
    write_scores(con, scores)
    con.disconnect()
    # the same store before any plan was made
    unplanned = root / "unplanned.duckdb"
    shutil.copy(store_file, unplanned)
    for name in ("STORE_URL", "CONFIG", "DATA_DIR", "PLAYBOOK_PATH"):
        monkeypatch_module.delenv(f"KAM_{name}", raising=False)
    monkeypatch_module.setenv("KAM_WORKDIR", str(root / "work"))
    result = CliRunner().invoke(
        cli.app, ["plan", "--data", str(data), "--capacity", CAPACITY, "--out",
                  str(root / "plan.csv")]
    )
    assert result.exit_code == 0, result.output
    world = WebWorld(root=root, store=store, tracking=small_world.tracking,
                     model_name=small_world.model_name, as_of=(scores["as_of"].iloc[0],),
                     expected=scores.set_index("account_id", drop=False))
    return {"world": world, "scores": scores, "output": result.output, "root": root,
            "unplanned": f"duckdb:///{unplanned}", "plan": read_plan(store)}


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def client(planned: dict[str, Any]) -> Any:
    with TestClient(make_app(web_settings(planned["world"]))) as test_client:
        signed = test_client.post("/login", data={"key": USER_KEY, "next": "/"},
                                  follow_redirects=False)
        assert signed.status_code == 303
        yield test_client


API = {"X-API-Key": USER_KEY}


def test_the_plan_fits_each_owners_capacity_and_beats_every_other_choice(
    planned: dict[str, Any],
) -> None:
    plan = planned["plan"]
    assert plan is not None and len(plan) > 0
    used = plan.groupby("owner")["effort"].sum()
    for owner, total in used.items():
        assert total <= LIMITS[str(owner)] + 1e-9, owner
    assert not plan.duplicated(["account_id", "owner"]).any()
    assert not plan.duplicated(["account_id", "cause"]).any()
    assert (plan["expected_saving"] > 0).all()
    assert set(plan["action_id"]) <= set(SUPPORTED)
    # every planned action was recommended to its account with that saving
    scores = planned["scores"].set_index("account_id")
    for row in plan.itertuples():
        offered = {a["action_id"]: a for a in json.loads(scores.loc[row.account_id, "actions"])}
        assert offered[row.action_id]["expected_saving"] == pytest.approx(row.expected_saving)
    # greedy by saving within capacity can only do as well or worse
    candidates = [
        (a["expected_saving"], acc, a["action_id"])
        for acc, text in scores["actions"].items() for a in json.loads(text)
        if a["expected_saving"] is not None and a["expected_saving"] > 0
    ]
    left, taken, greedy = dict(LIMITS), set(), 0.0
    for saving, acc, action_id in sorted(candidates, reverse=True):
        action = PLAYBOOK.by_id[action_id]
        keys = {(acc, action.owner), (acc, action.cause)}
        if action.effort <= left[action.owner] and not keys & taken:
            left[action.owner] -= action.effort
            taken |= keys
            greedy += saving
    assert plan["expected_saving"].sum() >= greedy - 1e-6
    assert "proven optimal" in " ".join(planned["output"].split())
    exported = pd.read_csv(planned["root"] / "plan.csv")
    assert list(exported["account_id"].astype(str)) == list(plan["account_id"].astype(str))


def test_get_plan_lists_each_owners_actions_and_capacity(client: Any,
                                                        planned: dict[str, Any]) -> None:
    body = client.get("/v1/plan", headers=API).json()
    plan = planned["plan"]
    assert body["total"] == len(plan)
    assert body["expected_saving"] == pytest.approx(plan["expected_saving"].sum())
    owners = {o["owner"]: o for o in body["owners"]}
    for owner, load in owners.items():
        assert load["capacity"] == LIMITS[owner]
        assert load["used"] <= load["capacity"]
        assert load["unit"] == PLAYBOOK.owners[owner].unit  # type: ignore[index]
    first = body["items"][0]
    for key in ("account_id", "action_id", "due_date", "expected_saving", "effect",
                "effect_low", "effect_high", "evidence_accounts", "owner", "effort"):
        assert first[key] is not None, key
    assert first["evidence_accounts"] == 120


def test_get_plan_filters_by_owner_region_and_manager(client: Any,
                                                      planned: dict[str, Any]) -> None:
    plan = planned["plan"]
    owner = str(plan["owner"].iloc[0])
    alias = PLAYBOOK.owners[owner].alias or owner  # type: ignore[index]
    by_owner = client.get("/v1/plan", params={"owner": alias}, headers=API).json()
    assert by_owner["total"] == int((plan["owner"] == owner).sum())
    assert {i["owner"] for i in by_owner["items"]} == {owner}
    region = str(plan["region"].dropna().iloc[0])
    by_region = client.get("/v1/plan", params={"region": region}, headers=API).json()
    assert by_region["total"] == int((plan["region"] == region).sum())
    # categories match exactly, case included, as everywhere in the API
    shouted = client.get("/v1/plan", params={"region": region.upper()}, headers=API).json()
    assert region.upper() == region or shouted["total"] == 0
    manager = str(plan["account_manager"].dropna().iloc[0])
    both = client.get("/v1/plan", params={"account_manager": manager, "owner": owner},
                      headers=API).json()
    expected = (plan["account_manager"] == manager) & (plan["owner"] == owner)
    assert both["total"] == int(expected.sum())
    assert both["filters"] == {"owner": owner, "region": None, "account_manager": manager}


def test_get_plan_refuses_an_unknown_owner_and_needs_a_key(client: Any) -> None:
    bad = client.get("/v1/plan", params={"owner": "CEO"}, headers=API)
    assert bad.status_code == 422
    assert bad.json()["detail"] == "unknown owner 'CEO'; owners: AR, SR, FR, executive"
    assert client.get("/v1/plan").status_code == 401


def test_no_plan_yet_is_a_404_saying_what_to_run(planned: dict[str, Any]) -> None:
    settings = web_settings(planned["world"], store_url=planned["unplanned"])
    with TestClient(make_app(settings)) as fresh:
        missing = fresh.get("/v1/plan", headers=API)
    assert missing.status_code == 404
    assert "run kam plan" in missing.json()["detail"]


def _replan(planned: dict[str, Any], small_world: World, name: str,
            change: Callable[[Any], object]) -> tuple[str, Any]:
    """A copy of the unplanned store with ``change`` made to its effects, rescored and planned
    through the command line; returns the copy's URL and the command's result."""
    data = planned["root"] / name
    data.mkdir()
    shutil.copy(planned["unplanned"].removeprefix("duckdb:///"), data / "kam.duckdb")
    store = f"duckdb:///{data / 'kam.duckdb'}"
    con = connect(store)
    change(con)
    write_scores(con, score_accounts(con, small_world.model()))
    con.disconnect()
    result = CliRunner().invoke(cli.app, ["plan", "--data", str(data), "--capacity", CAPACITY])
    assert result.exit_code == 0, result.output
    return store, result


def test_a_plan_with_no_supported_action_is_empty_and_says_why(
    planned: dict[str, Any], small_world: World
) -> None:
    # the small world's store with no effects: every action is untested, none has a saving
    store, result = _replan(planned, small_world, "no-effects",
                            lambda con: con.raw_sql("DROP TABLE action_effects"))
    assert "no action has a supported or unproven saving" in " ".join(result.output.split())
    empty = read_plan(store)
    assert empty is not None and empty.empty
    assert str(empty["expected_saving"].dtype) == "float64"
    with TestClient(make_app(web_settings(planned["world"], store_url=store))) as fresh:
        answer = fresh.get("/v1/plan", headers=API)
        assert answer.status_code == 404
        assert "no recommended action has a saving" in answer.json()["detail"]
        fresh.post("/login", data={"key": USER_KEY, "next": "/"}, follow_redirects=False)
        page = fresh.get("/plan")
        assert page.status_code == 404
        assert "The latest plan has no action" in page.text
        chinese = fresh.get("/plan?lang=zh-CN")
        assert "最新计划中没有行动" in chinese.text


def test_a_plan_of_unproven_actions_says_so_in_the_api_and_the_page(
    planned: dict[str, Any], small_world: World
) -> None:
    # every estimate in the actions' favour but none with an interval below zero
    effects = _effects().assign(status="no_effect", supported=False, effect=-0.03,
                                ci_low=-0.07, ci_high=0.01, relative=0.3)
    store, result = _replan(planned, small_world, "unproven",
                            lambda con: write_effects(con, effects))
    plan = read_plan(store)
    assert plan is not None and len(plan) > 0 and set(plan["evidence"]) == {"unproven"}
    assert f"({0} supported, {len(plan)} unproven)" in " ".join(result.output.split())
    with TestClient(make_app(web_settings(planned["world"], store_url=store))) as fresh:
        items = fresh.get("/v1/plan", headers=API).json()["items"]
        assert {i["evidence"] for i in items} == {"unproven"}
        fresh.post("/login", data={"key": USER_KEY, "next": "/"}, follow_redirects=False)
        page = fresh.get("/plan").text
        assert 'data-evidence="unproven"' in page and "unproven: " in page
        assert "from unproven actions on capacity the supported ones leave" in page
        assert "尚未证实" in fresh.get("/plan?lang=zh-CN").text
        account = fresh.get(f"/accounts/{plan['account_id'].iloc[0]}?lang=en").text
        assert "if the estimate holds" in account and "includes no change" in account


def test_the_plan_view_shows_each_owner_with_capacity_used(client: Any,
                                                           planned: dict[str, Any]) -> None:
    page = client.get("/plan")
    assert page.status_code == 200
    plan = planned["plan"]
    html = page.text
    for owner, mine in plan.groupby("owner"):
        unit = PLAYBOOK.owners[str(owner)].unit  # type: ignore[index]
        assert f'data-owner="{owner}"' in html
        assert f"{mine['effort'].sum():g} of {LIMITS[str(owner)]:g} {unit}" in html
    for account in plan["account_id"].astype(str):
        assert f'data-account="{account}"' in html
    region = str(plan["region"].dropna().iloc[0])
    only = client.get("/plan", params={"region": region}).text
    shown = set(re.findall(r'<tr data-account="([^"]+)"', only))
    assert shown == set(plan.loc[plan["region"] == region, "account_id"].astype(str))


def test_the_account_page_shows_each_actions_saving_and_evidence(
    client: Any, planned: dict[str, Any]
) -> None:
    account = str(planned["plan"]["account_id"].iloc[0])
    html = client.get(f"/accounts/{account}").text
    assert 'data-evidence="helps"' in html and "expected saving" in html
    assert "120 accounts" in html


def test_the_plan_view_in_a_browser(planned: dict[str, Any], tmp_path: Path) -> None:
    from tests.serving.web.test_browser import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api")
    import socket
    import threading
    import time

    import uvicorn

    app = make_app(web_settings(planned["world"]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "no live server"
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                  args=CHROMIUM_ARGS, headless=True)
            page = chromium.new_context().new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/plan")
            page.wait_for_url(lambda url: "/login?next=" in url)
            page.get_by_label("API key", exact=True).fill(USER_KEY)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(base + "/plan")
            plan = planned["plan"]
            assert page.locator("section.plan-owner").count() == plan["owner"].nunique()
            assert page.locator("tr[data-account]").count() == len(plan)
            owner = str(plan["owner"].iloc[0])
            page.select_option("select[name=owner]", owner)
            page.click("form.filters button[type=submit]")
            page.wait_for_url(lambda url: "owner=" in url)
            assert page.locator("section.plan-owner").count() == 1
            assert page.locator("tr[data-account]").count() == int((plan["owner"] == owner).sum())
            assert errors == []
            chromium.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def test_read_scores_of_the_copy_hold_the_savings(planned: dict[str, Any]) -> None:
    stored = read_scores(planned["world"].store)
    assert stored["first_action_saving"].notna().any()


def test_every_page_links_to_the_plan(client: Any, planned: dict[str, Any]) -> None:
    account = str(planned["plan"]["account_id"].iloc[0])
    for path in ("/", f"/accounts/{account}", "/plan"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert 'class="nav-plan" href="/plan"' in page.text, path
    assert '>行动计划</a>' in client.get("/?lang=zh-CN").text
