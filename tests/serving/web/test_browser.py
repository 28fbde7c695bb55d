"""The web page end to end in headless Chromium, against a live server on a loopback port.

Needs Chromium (``/usr/bin/chromium``, or the path in ``KAM_CHROMIUM``) and Playwright's Python
package; ``tests/browser_setup.sh`` installs both. Playwright drives the system Chromium, so
no browser download (``playwright install``) is needed. Screenshots are written under
``test-artifacts/web/``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from kam.serving.web.export import EXPORT_COLUMNS, HEADERS_ZH, export_record
from tests.serving.web.test_web import (
    USER_KEY,
    WebWorld,
    expected_order,
    make_app,
    scored_world,
    web_settings,
)
from tests.world import World

CHROMIUM = Path(os.environ.get("KAM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "web"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 400, "height": 860}

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="Playwright is not installed: run tests/browser_setup.sh (pip install playwright)",
)
if not CHROMIUM.is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: run tests/browser_setup.sh (apt-get install chromium) "
        "or set KAM_CHROMIUM",
        allow_module_level=True,
    )


# ------------------------------------------------------------------------------------------------
# A live server and a browser
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def web_world(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return scored_world(small_world, tmp_path_factory)


@pytest.fixture(scope="module")
def live(web_world: WebWorld) -> Iterator[str]:
    """The service under uvicorn in a thread, on a free loopback port; its base URL."""
    app = make_app(web_settings(web_world))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; uvicorn serves this socket
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Tab:
    """A page in a fresh browser context, recording console errors and failed requests."""

    def __init__(self, browser: Any, viewport: dict[str, int], locale: str = "en-US") -> None:
        # the locale sets the browser's Accept-Language, which picks the page's language
        self.context = browser.new_context(
            viewport=viewport, accept_downloads=True, locale=locale
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "response",
            lambda r: r.status >= 500 and self.errors.append(f"{r.status} {r.url}"),
        )

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def wide(browser: Any) -> Iterator[Tab]:
    tab = Tab(browser, WIDE)
    yield tab
    tab.close()


def sign_in(tab: Tab, base: str, path: str = "/") -> None:
    """Open ``path``, land on the sign-in form, sign in, and come back to ``path``."""
    page = tab.page
    page.goto(base + path)
    page.wait_for_url(lambda url: "/login?next=" in url)
    page.get_by_label("API key", exact=True).fill(USER_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + path)


def row_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("tr[data-account]", "rows => rows.map(r => r.dataset.account)")


def column_values(page: Any, css: str) -> list[float]:
    return page.eval_on_selector_all(
        f"tr[data-account] td.{css}", "cells => cells.map(c => parseFloat(c.dataset.value))"
    )


def layout(page: Any) -> dict[str, Any]:
    """Where the table and each of its column headers are."""
    return page.evaluate(
        """() => ({
            table: document.querySelector('table.ranked').getBoundingClientRect().top
                   + window.scrollY,
            columns: [...document.querySelectorAll('table.ranked thead th')]
                .map(th => [th.getBoundingClientRect().left, th.getBoundingClientRect().width]),
        })"""
    )


def layout_shift(page: Any) -> float:
    """Cumulative layout shift of the page so far (Chromium's layout-shift entries)."""
    return page.evaluate(
        """() => new Promise(resolve => {
            let total = 0;
            new PerformanceObserver(list => {
                for (const entry of list.getEntries()) {
                    if (!entry.hadRecentInput) total += entry.value;
                }
            }).observe({type: 'layout-shift', buffered: true});
            setTimeout(() => resolve(total), 300);
        })"""
    )


def api_items(base: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = httpx.get(
            f"{base}/v1/at-risk",
            params={**params, "limit": 500, "offset": offset},
            headers={"X-API-Key": USER_KEY},
        ).json()
        items += body["items"]
        offset += 500
        if offset >= body["total"]:
            return items


# ------------------------------------------------------------------------------------------------
# The journey of a sales director on Monday morning
# ------------------------------------------------------------------------------------------------
def test_sign_in_ranked_list_and_filters(live: str, wide: Tab, web_world: WebWorld) -> None:
    page = wide.page
    page.goto(live + "/")
    page.wait_for_url(live + "/login?next=%2F")
    page.get_by_label("API key", exact=True).fill(USER_KEY + "-wrong")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That key is not valid."
    wide.errors.clear()  # Chromium logs the refused sign-in (a 401) as a console error
    page.get_by_label("API key", exact=True).fill(USER_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live + "/")

    # ranked by value at risk, largest first: the same order as the scores
    risk = column_values(page, "var")
    assert len(risk) == 50
    assert risk == sorted(risk, reverse=True)
    ids = row_ids(page)
    assert ids == expected_order(web_world)[:50]
    assert page.locator("th[aria-sort]").get_attribute("aria-sort") == "descending"
    assert page.locator("svg.scatter circle.pt").count() == len(web_world.expected)
    assert layout_shift(page) < 0.05
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "list-1280.png"), full_page=True)
    before = layout(page)

    # tier A: the checkbox applies at once (script), the URL carries the filter
    page.get_by_label("A", exact=True).check()
    page.wait_for_url(live + "/?tier=A#results")
    tier_a = row_ids(page)
    expected = web_world.expected
    assert tier_a == expected_order(web_world, expected["tier"] == "A")[:50]
    assert tier_a != ids
    assert set(page.locator("tr[data-account] .badge").all_inner_texts()) == {"A"}
    after = layout(page)
    # nothing moved: the charts keep their size and the columns their widths
    assert after["table"] == pytest.approx(before["table"], abs=1)
    flat = [edge for column in after["columns"] for edge in column]
    assert flat == pytest.approx([edge for column in before["columns"] for edge in column], abs=1)

    # and a region on top of it
    region = str(expected.loc[expected["tier"] == "A", "region"].value_counts().index[0])
    page.get_by_label("Region", exact=True).select_option(region)
    page.wait_for_url(f"{live}/?tier=A&region={region}#results")
    regional = row_ids(page)
    assert regional == expected_order(
        web_world, (expected["tier"] == "A") & (expected["region"] == region)
    )
    assert set(page.locator("tr[data-account] td:nth-child(4)").all_inner_texts()) == {region}

    # sorting by a header: defection risk, largest first, then smallest first
    page.locator("a[data-sort=probability]").click()
    page.wait_for_url(f"{live}/?tier=A&region={region}&sort=probability&dir=desc#results")
    probabilities = column_values(page, "prob")
    assert probabilities == sorted(probabilities, reverse=True)
    assert set(row_ids(page)) == set(regional)
    page.locator("a[data-sort=probability]").click()
    page.wait_for_url(f"{live}/?tier=A&region={region}&sort=probability&dir=asc#results")
    assert column_values(page, "prob") == sorted(probabilities)
    assert page.locator("th[aria-sort]").get_attribute("aria-sort") == "ascending"

    # a shared link opens the same view
    shared = page.url
    other = Tab(page.context.browser, WIDE)
    try:
        sign_in(other, live, shared.removeprefix(live).split("#")[0])
        assert row_ids(other.page) == row_ids(page)
    finally:
        other.close()
    assert wide.errors == []


def test_account_page(live: str, wide: Tab, web_world: WebWorld) -> None:
    sign_in(wide, live, "/?tier=B")
    page = wide.page
    first = row_ids(page)[0]
    page.locator(f"tr[data-account='{first}'] td.account a").click()
    page.wait_for_url(f"{live}/accounts/{first}?back=tier%3DB")
    score = web_world.expected.loc[first]
    assert page.get_by_role("heading", level=1).inner_text().startswith(str(score["name"]))
    assert page.locator("svg.line circle.dot").count() >= 2  # a history over past scores
    drivers = page.locator("#why-h ~ svg.bars rect.bar").count()
    assert drivers == page.locator("ol.drivers li").count() >= 1
    assert page.locator("table.actions-table tbody tr").count() >= 1
    assert page.locator("[data-figure=orders]").inner_text().replace(",", "").isdigit()
    assert layout_shift(page) < 0.05
    page.screenshot(path=str(ARTIFACTS / "account-1280.png"), full_page=True)
    page.get_by_role("link", name="← All key accounts").click()
    page.wait_for_url(live + "/?tier=B")
    assert wide.errors == []

    page.goto(live + "/accounts/NO-SUCH-ACCOUNT")
    assert page.get_by_role("heading", level=1).inner_text() == "Account not found"


def test_csv_download_equals_the_api(live: str, wide: Tab, tmp_path: Path) -> None:
    sign_in(wide, live, "/?tier=A&tier=B")
    page = wide.page
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("kam-at-risk-")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    items = api_items(live, {"tier": ["A", "B"]})
    assert len(rows) - 1 == len(items) > 50  # every page, not the one shown
    assert rows[1:] == [export_record(item) for item in items]
    assert wide.errors == []


def test_narrow_screen(live: str, browser: Any) -> None:
    tab = Tab(browser, NARROW)
    try:
        sign_in(tab, live)
        page = tab.page
        sizes = page.evaluate(
            """() => {
                const wrap = document.querySelector('.table-wrap');
                const cards = [...document.querySelectorAll('.cards .card')]
                    .map(c => c.getBoundingClientRect().top);
                return {page: document.documentElement.scrollWidth,
                        wrap: wrap.clientWidth, table: wrap.scrollWidth,
                        rows: new Set(cards).size};
            }"""
        )
        assert sizes["page"] <= NARROW["width"]  # nothing but the table scrolls sideways
        assert sizes["table"] > sizes["wrap"]  # the table scrolls inside its frame
        assert sizes["rows"] >= 2  # the header cards wrap
        page.screenshot(path=str(ARTIFACTS / "list-400.png"), full_page=True)
        first = row_ids(page)[0]
        page.goto(f"{live}/accounts/{first}")
        assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
        page.screenshot(path=str(ARTIFACTS / "account-400.png"), full_page=True)
        assert tab.errors == []
    finally:
        tab.close()


def test_link_from_another_site_and_sign_out(live: str, wide: Tab) -> None:
    sign_in(wide, live)
    page = wide.page
    port = live.rsplit(":", 1)[1]
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    # localhost and 127.0.0.1 are different sites: the SameSite=Strict key cookie stays
    # behind on this navigation, the page bounces once through /login and opens signed in
    page.goto(f"http://localhost:{port}/healthz")
    page.evaluate("url => { window.location.href = url; }", f"{live}/?tier=C")
    page.wait_for_url(f"{live}/?tier=C")
    page.wait_for_selector("tr[data-account]")
    assert any("/login?next=" in url for url in seen)
    assert page.locator("#key").count() == 0

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live + "/login")
    page.goto(live + "/?tier=C")
    page.wait_for_url(live + "/login?next=%2F%3Ftier%3DC")
    assert page.locator("#key").count() == 1


# ------------------------------------------------------------------------------------------------
# The same journey in Chinese
# ------------------------------------------------------------------------------------------------
# Latin letters a Chinese page may show: the iron triangle's codes, tier letters, the product's
# name and units, and the switch to English (written in English)
ALLOWED_LATIN = {"kam", "AR", "SR", "FR", "CSV", "UTC", "A", "B", "C", "v", "score", "English"}


def english_on_page(page: Any, web_world: WebWorld) -> set[str]:
    """Latin words a reader sees on the page, other than the data and the allowed codes."""
    text = page.evaluate("document.body.innerText")
    frame = web_world.expected
    data = {web_world.model_name}
    for column in ("name", "account_id", "region", "account_manager", "industry"):
        if column in frame.columns:
            data |= {str(v) for v in frame[column].dropna().unique()}
    for value in sorted(data, key=len, reverse=True):
        text = text.replace(value, " ")
    return {w for w in re.findall(r"[A-Za-z]+", text) if w not in ALLOWED_LATIN}


def test_a_manager_works_in_chinese_from_the_list_to_the_export(
    live: str, browser: Any, web_world: WebWorld, tmp_path: Path
) -> None:
    tab = Tab(browser, WIDE, locale="zh-CN")
    try:
        page = tab.page
        page.goto(live + "/")
        page.wait_for_url(lambda url: "/login?next=" in url)
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert english_on_page(page, web_world) == set()
        page.get_by_label("接口密钥", exact=True).fill(USER_KEY)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(live + "/")

        # the list: Chinese words, the same order as the scores, a stable layout
        assert page.get_by_role("link", name="风险大客户").count() == 1
        assert english_on_page(page, web_world) == set()
        ids = row_ids(page)
        assert ids == expected_order(web_world)[:50]
        assert layout_shift(page) < 0.05
        # the Chinese text is drawn with a CJK font, not as empty boxes
        assert page.evaluate("document.fonts.check('16px sans-serif', '风险大客户')")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "list-1280-zh-CN.png"), full_page=True)

        # an account, its drivers and actions
        first = ids[0]
        page.locator(f"tr[data-account='{first}'] td.account a").click()
        page.wait_for_url(lambda url: f"/accounts/{first}" in url)
        assert page.get_by_role("heading", name="建议行动").count() == 1
        assert english_on_page(page, web_world) == set()
        score = web_world.expected.loc[first]
        if isinstance(score["top_driver_zh"], str):
            assert score["top_driver_zh"] in page.locator("ol.drivers").inner_text()
        if isinstance(score["first_action_zh"], str):
            actions = page.locator("table.actions-table").inner_text()
            assert score["first_action_zh"] in actions
        assert layout_shift(page) < 0.05
        page.screenshot(path=str(ARTIFACTS / "account-1280-zh-CN.png"), full_page=True)

        # back to the list and its export, with Chinese headers
        page.get_by_role("link", name="← 全部大客户").click()
        page.wait_for_url(live + "/")
        with page.expect_download() as info:
            page.get_by_role("link", name="导出CSV").click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        assert rows[0] == [HEADERS_ZH[c] for c in EXPORT_COLUMNS]
        assert len(rows) - 1 == len(web_world.expected)
        assert tab.errors == []

        # the switch: English, kept for the pages that follow
        page.locator("a.lang-switch").click()
        page.wait_for_url(lambda url: "lang=en" in url)
        assert page.locator("html").get_attribute("lang") == "en"
        page.goto(live + f"/accounts/{first}")
        assert page.get_by_role("heading", name="What to do").count() == 1
    finally:
        tab.close()


def test_narrow_screen_in_chinese(live: str, browser: Any, web_world: WebWorld) -> None:
    tab = Tab(browser, NARROW, locale="zh-CN")
    try:
        page = tab.page
        page.goto(live + "/")
        page.wait_for_url(lambda url: "/login?next=" in url)
        page.get_by_label("接口密钥", exact=True).fill(USER_KEY)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(live + "/")
        assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
        assert layout_shift(page) < 0.05
        page.screenshot(path=str(ARTIFACTS / "list-400-zh-CN.png"), full_page=True)
        first = row_ids(page)[0]
        page.goto(f"{live}/accounts/{first}")
        assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
        assert english_on_page(page, web_world) == set()
        page.screenshot(path=str(ARTIFACTS / "account-400-zh-CN.png"), full_page=True)
        assert tab.errors == []
    finally:
        tab.close()
