"""The managers' web page, rendered on the server: list, filters, export, account page, sign-in.

A real small world (simulated, ingested, trained) is scored at three as_of dates a quarter
apart, so the pages have a score history to show.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import duckdb
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.datastructures import QueryParams

from kam.features.snapshots import data_end
from kam.features.store import connect
from kam.serving.api.app import create_app
from kam.serving.api.schemas import MAX_PAGE
from kam.serving.scoring.batch import score_accounts
from kam.serving.settings import ServeSettings
from kam.serving.store import write_scores
from kam.serving.web import routes as web
from kam.serving.web.assets import static_url
from kam.serving.web.book import book_of
from kam.serving.web.export import EXPORT_COLUMNS, export_record
from kam.serving.web.formats import Formats
from kam.serving.web.query import ListQuery, parse_list_query
from tests.world import World

USER_KEY = "web-user-key-0123456789abcdef"
ADMIN_KEY = "web-admin-key-0123456789abcdef"
QUARTERS_BACK = (182, 91, 0)
FMT = Formats()


# ------------------------------------------------------------------------------------------------
# The scored world, the app, and reading pages
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WebWorld:
    """A copy of a world's store with scores at several as_of dates, and the expected latest."""

    root: Path
    store: str
    tracking: str
    model_name: str
    as_of: tuple[pd.Timestamp, ...]
    expected: pd.DataFrame  # each account's latest score, indexed by account id

    @property
    def store_file(self) -> Path:
        return Path(self.store.removeprefix("duckdb:///"))


_WEB_WORLDS: dict[Path, WebWorld] = {}


def scored_world(world: World, factory: pytest.TempPathFactory) -> WebWorld:
    """The world's store copied and scored a quarter apart, built once per test run."""
    if world.root in _WEB_WORLDS:
        return _WEB_WORLDS[world.root]
    root = factory.mktemp("web")
    copy = root / "kam.duckdb"
    shutil.copy(world.store_file, copy)
    store = f"duckdb:///{copy}"
    con = connect(store)
    try:
        end = data_end(con)
        days = tuple(end - pd.Timedelta(days=d) for d in QUARTERS_BACK)
        frames = [score_accounts(con, world.model(), as_of=day) for day in days]
        for frame in frames:
            write_scores(con, frame)
    finally:
        con.disconnect()
    both = pd.concat(frames)
    both["account_id"] = both["account_id"].astype(str)
    latest = both.sort_values("as_of").drop_duplicates("account_id", keep="last")
    _WEB_WORLDS[world.root] = WebWorld(
        root=root,
        store=store,
        tracking=world.tracking,
        model_name=world.model_name,
        as_of=days,
        expected=latest.set_index("account_id", drop=False),
    )
    return _WEB_WORLDS[world.root]


def web_settings(world: WebWorld, **overrides: Any) -> ServeSettings:
    """Service settings for the scored world, with a user and an admin key."""
    values: dict[str, Any] = {
        "workdir": world.root,
        "tracking_uri": world.tracking,
        "store_url": world.store,
        "model_name": world.model_name,
        "model_uri": f"models:/{world.model_name}/1",
        "api_keys": [USER_KEY],
        "admin_api_keys": [ADMIN_KEY],
    }
    values.update(overrides)
    return ServeSettings(**values)


def make_app(settings: ServeSettings) -> FastAPI:
    """The service with the web pages (added here while ``create_app`` does not add them)."""
    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/" for route in app.routes):
        app.include_router(web.router)
    return app


def all_api_items(client: Any, params: dict[str, Any], key: str = USER_KEY) -> list[dict]:
    """Every item of ``GET /v1/at-risk`` for the filters, over all pages."""
    items: list[dict] = []
    offset = 0
    while True:
        page = client.get(
            "/v1/at-risk",
            params={**params, "limit": MAX_PAGE, "offset": offset},
            headers={"X-API-Key": key},
        )
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        offset += MAX_PAGE
        if offset >= body["total"]:
            return items


def csv_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an export (a UTF-8 byte-order mark first)."""
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    return rows[0], rows[1:]


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Page(HTMLParser):
    """What the tests read from a page: figures, table rows and cells, sorted column, links."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.figures: dict[str, str] = {}
        self.rows: list[str] = []
        self.cells: dict[str, list[str]] = {}
        self.sorted: dict[str, str] = {}
        self.links: list[str] = []
        self.sort_links: dict[str, str] = {}
        self.text_parts: list[str] = []
        self._capture: list[tuple[str, int, list[str]]] = []
        self._depth = 0
        self._row: str | None = None
        self._cell_depth: int | None = None
        self._cell: list[str] = []
        self._sort_th = False
        self._aria_sort: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
            if a.get("data-sort"):
                self.sort_links[a["data-sort"] or ""] = a["href"] or ""
        if tag in VOID:
            return
        self._depth += 1
        if a.get("data-figure"):
            self._capture.append((a["data-figure"] or "", self._depth, []))
        if tag == "tr" and a.get("data-account"):
            self._row = a["data-account"]
            self.rows.append(self._row or "")
            self.cells[self._row or ""] = []
        elif tag == "td" and self._row is not None:
            self._cell_depth, self._cell = self._depth, []
        elif tag == "th" and a.get("aria-sort"):
            self._aria_sort = a["aria-sort"]
        elif tag == "a" and self._aria_sort and a.get("data-sort"):
            self.sorted[a["data-sort"] or ""] = self._aria_sort
            self._aria_sort = None

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        for name, depth, parts in list(self._capture):
            if depth == self._depth:
                self.figures[name] = " ".join(" ".join(parts).split())
                self._capture.remove((name, depth, parts))
        if self._cell_depth == self._depth and self._row is not None:
            self.cells[self._row].append(" ".join(" ".join(self._cell).split()))
            self._cell_depth = None
        if tag == "tr":
            self._row = None
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)
        for _, _, parts in self._capture:
            parts.append(data)
        if self._cell_depth is not None:
            self._cell.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


def expected_order(world: WebWorld, mask: pd.Series | None = None) -> list[str]:
    """Account ids in at-risk order (value at risk, largest first; ties by id)."""
    frame = world.expected if mask is None else world.expected[mask]
    frame = frame.reset_index(drop=True)
    return frame.sort_values(["value_at_risk", "account_id"], ascending=[False, True])[
        "account_id"
    ].tolist()


@pytest.fixture(scope="session")
def web_world(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return scored_world(small_world, tmp_path_factory)


@pytest.fixture(scope="module")
def client(web_world: WebWorld) -> Any:
    """A signed-in browser-like client."""
    with TestClient(make_app(web_settings(web_world))) as test_client:
        signed = test_client.post("/login", data={"key": USER_KEY, "next": "/"},
                                  follow_redirects=False)
        assert signed.status_code == 303
        yield test_client


@pytest.fixture(scope="module")
def anonymous(web_world: WebWorld) -> Any:
    with TestClient(make_app(web_settings(web_world))) as test_client:
        yield test_client


# ------------------------------------------------------------------------------------------------
# Formatting and the query, without a world
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "money", "pct"),
    [
        (1234567.4, "¥1,234,567", "123456740.0%"),
        (0.375, "¥0", "37.5%"),
        (-2500.0, "−¥2,500", "-250000.0%"),
        (None, "–", "–"),
        (float("nan"), "–", "–"),
    ],
    ids=["large", "share", "negative", "none", "nan"],
)
def test_formats(value: Any, money: str, pct: str) -> None:
    assert FMT.money(value) == money
    assert FMT.pct(value) == pct
    assert Formats("US$").money(1500) == "US$1,500"
    assert FMT.compact(1_200_000) == "¥1.2M" and FMT.compact(35_000) == "¥35k"
    assert FMT.count(12345) == "12,345"


@pytest.mark.parametrize(
    ("query", "expected", "problems"),
    [
        ("", ListQuery(), []),
        ("tier=b&tier=A&tier=A", ListQuery(tiers=("A", "B")), []),
        ("tier=D", ListQuery(), ["tier 'D' is not A, B or C"]),
        ("min_value_at_risk=1%2C500", ListQuery(min_value_at_risk=1500.0), []),
        ("min_value_at_risk=-1", ListQuery(), ["min_value_at_risk '-1' must be zero or more"]),
        ("min_value_at_risk=lots", ListQuery(), ["min_value_at_risk 'lots' is not a number"]),
        ("sort=value&dir=asc&page=3&size=25",
         ListQuery(sort="value", direction="asc", page=3, size=25), []),
        ("sort=colour", ListQuery(), ["cannot sort by 'colour'"]),
        ("size=7&page=0", ListQuery(), ["page '0' is out of range", "size '7' is out of range"]),
        ("region=+North+&q=&account_manager=", ListQuery(region="North"), []),
    ],
    ids=["empty", "tiers", "bad-tier", "thousands", "negative", "nan", "sort-page", "bad-sort",
         "bad-page", "blanks"],
)
def test_list_query_is_lenient_and_names_what_it_ignored(
    query: str, expected: ListQuery, problems: list[str]
) -> None:
    parsed, found = parse_list_query(QueryParams(query))
    assert parsed == expected
    assert found == problems


def test_list_query_round_trips_through_its_url() -> None:
    query = ListQuery(tiers=("A", "C"), region="North", min_value_at_risk=2500.0, q="bao",
                      sort="probability", direction="asc", page=2, size=100)
    url = query.url()
    assert url.startswith("/?tier=A&tier=C&region=North")
    assert parse_list_query(QueryParams(urlsplit(url).query)) == (query, [])
    assert ListQuery().url() == "/"  # defaults stay out of links
    assert ListQuery(min_value_at_risk=1_000_000.0).url() == "/?min_value_at_risk=1000000"
    assert ListQuery(min_value_at_risk=0.5).url() == "/?min_value_at_risk=0.5"
    assert ListQuery(sort="value").sorted_by("value").direction == "asc"
    assert ListQuery().sorted_by("account") == ListQuery(sort="account", direction="asc")


# ------------------------------------------------------------------------------------------------
# The list
# ------------------------------------------------------------------------------------------------
def test_header_figures_match_the_scores(client: TestClient, web_world: WebWorld) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = Page(response.text)
    expected = web_world.expected
    risk = expected["value_at_risk"].fillna(0.0)
    ordered = risk.loc[expected_order(web_world)]
    assert page.figures["accounts"] == f"{len(expected):,}"
    assert page.figures["value-at-risk"] == FMT.money(risk.sum())
    for tier in "ABC":
        assert page.figures[f"tier-{tier}"] == f"{tier} {(expected['tier'] == tier).sum():,}"
    assert page.figures["top-share"] == FMT.pct(ordered.iloc[:20].sum() / risk.sum(), 0)
    assert f"Scores as of {web_world.as_of[-1].date().isoformat()}" in page.text
    assert "Model kam-serving-600 v1" in page.text
    # the first page: the 50 accounts with most value at risk, in order, with their figures
    assert page.rows == expected_order(web_world)[:50]
    top = expected.loc[page.rows[0]]
    cells = page.cells[page.rows[0]]
    assert cells[0] == str(top["rank"])
    assert cells[5] == FMT.pct(top["defection_probability"])
    assert cells[6] == (
        f"{FMT.money(top['value'])} {FMT.money(top['value_low'])} – {FMT.money(top['value_high'])}"
    )
    assert cells[7] == FMT.money(top["value_at_risk"])
    assert top["top_driver"] in cells[8]
    assert top["first_action"] in cells[9] and top["first_action_owner"] in cells[9]
    assert page.sorted == {"value_at_risk": "descending"}


def test_filters_match_the_api(client: TestClient, web_world: WebWorld) -> None:
    expected = web_world.expected
    region = str(expected["region"].value_counts().index[0])
    manager = str(expected["account_manager"].value_counts().index[0])
    threshold = float(expected["value_at_risk"].quantile(0.8))
    cases = [
        ({"tier": "A"}, expected["tier"] == "A"),
        ({"tier": ["B", "C"]}, expected["tier"].isin(["B", "C"])),
        ({"region": region}, expected["region"] == region),
        ({"account_manager": manager}, expected["account_manager"] == manager),
        ({"min_value_at_risk": threshold}, expected["value_at_risk"] >= threshold),
        (
            {"tier": "C", "region": region},
            (expected["tier"] == "C") & (expected["region"] == region),
        ),
    ]
    for params, mask in cases:
        page = Page(client.get("/", params={**params, "size": 200}).text)
        wanted = expected_order(web_world, mask)
        assert page.rows == wanted[:200], params
        api = [item["account_id"] for item in all_api_items(client, params)]
        assert api == wanted, params
        assert f"{len(wanted):,} account" in page.text


def test_search_sort_and_paging_follow_the_query(client: TestClient, web_world: WebWorld) -> None:
    expected = web_world.expected
    name = str(expected.loc[expected_order(web_world)[3], "name"])
    word = name.split()[0]
    hits = expected[
        expected["name"].str.casefold().str.contains(word.casefold(), regex=False)
        | expected["account_id"].str.casefold().str.contains(word.casefold(), regex=False)
    ]
    page = Page(client.get("/", params={"q": word.upper(), "size": 200}).text)
    assert set(page.rows) == set(hits.index) and page.rows

    by_risk = Page(client.get("/", params={"sort": "probability", "dir": "desc"}).text)
    probabilities = expected.loc[by_risk.rows, "defection_probability"].tolist()
    assert probabilities == sorted(expected["defection_probability"], reverse=True)[:50]
    assert by_risk.sorted == {"probability": "descending"}

    by_name = Page(client.get("/", params={"sort": "account", "dir": "asc", "size": 25}).text)
    names = expected.loc[by_name.rows, "name"].str.casefold().tolist()
    assert names == sorted(expected["name"].str.casefold())[:25]

    by_due = Page(client.get("/", params={"sort": "action", "size": 200}).text)
    due = pd.to_datetime(expected.loc[by_due.rows, "first_action_due"]).dropna()
    assert due.is_monotonic_increasing

    second = Page(client.get("/", params={"tier": "C", "page": 2, "size": 25}).text)
    assert second.rows == expected_order(web_world, expected["tier"] == "C")[25:50]
    past_the_end = Page(client.get("/", params={"tier": "C", "page": 999, "size": 25}).text)
    c_ids = expected_order(web_world, expected["tier"] == "C")
    assert past_the_end.rows == c_ids[(len(c_ids) - 1) // 25 * 25 :]  # the last page


def test_links_keep_the_view(client: TestClient, web_world: WebWorld) -> None:
    text = client.get("/", params={"tier": "A", "sort": "value", "dir": "asc"}).text
    page = Page(text)
    assert page.sorted == {"value": "ascending"}
    # each header link keeps the filters and resets the page; the sorted column flips
    assert page.sort_links["value"] == "/?tier=A&sort=value&dir=desc#results"
    assert page.sort_links["value_at_risk"] == "/?tier=A#results"  # the default order
    assert page.sort_links["account"] == "/?tier=A&sort=account&dir=asc#results"
    assert len(page.sort_links) == 9
    assert "/export.csv?tier=A&sort=value&dir=asc" in page.links
    assert "/?tier=A&sort=value&dir=asc&page=2#results" in page.links  # next page
    first = page.rows[0]
    account_links = [link for link in page.links if link.startswith("/accounts/")]
    assert account_links[0].startswith(f"/accounts/{first}?back=")
    back = parse_qs(urlsplit(account_links[0]).query)["back"][0]
    assert parse_qs(back) == {"tier": ["A"], "sort": ["value"], "dir": ["asc"]}


def test_bad_values_are_ignored_and_named(client: TestClient, web_world: WebWorld) -> None:
    response = client.get("/", params={"tier": "Z", "min_value_at_risk": "lots", "page": "x"})
    assert response.status_code == 200
    page = Page(response.text)
    assert "Ignored: tier 'Z' is not A, B or C; min_value_at_risk 'lots' is not a number" in (
        page.text
    )
    assert page.rows == expected_order(web_world)[:50]


def test_no_match_renders_an_empty_table(client: TestClient) -> None:
    page = Page(client.get("/", params={"q": "no-such-account-anywhere"}).text)
    assert page.rows == []
    assert "No account matches these filters" in page.text


def test_the_book_is_kept_with_the_state_it_was_built_from(client: TestClient) -> None:
    state = client.app.state.serving
    book = book_of(state)
    assert book_of(state) is book
    assert book.table is state.scores
    # a reload makes a new state: it starts without a book, and the old state keeps its own
    reloaded = replace(state)
    assert reloaded.derived == {}
    assert book_of(reloaded) is not book
    assert book_of(state) is book


# ------------------------------------------------------------------------------------------------
# CSV export
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [{}, {"tier": "A"}, {"tier": ["A", "B"], "min_value_at_risk": 1000.0}, {"region": "REGION"}],
    ids=["all", "tier", "tiers-min", "region"],
)
def test_export_rows_equal_the_api(
    client: TestClient, web_world: WebWorld, params: dict[str, Any]
) -> None:
    if params.get("region") == "REGION":
        # the API matches categories exactly; the page's export ignores case
        params = {"region": str(web_world.expected["region"].iloc[0])}
    response = client.get("/export.csv", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    as_of = web_world.as_of[-1].date().isoformat()
    assert response.headers["content-disposition"] == (
        f'attachment; filename="kam-at-risk-{as_of}.csv"'
    )
    header, rows = csv_rows(response.content.decode("utf-8"))
    assert header == list(EXPORT_COLUMNS)
    items = all_api_items(client, params)
    assert rows == [export_record(item) for item in items]
    assert int(response.headers["x-total-count"]) == len(items)
    # the figures read back exactly
    if items:
        first = dict(zip(header, rows[0], strict=True))
        assert float(first["value_at_risk"]) == items[0]["value_at_risk"]
        assert first["top_driver"] == (items[0]["drivers"][0]["phrase"]
                                       if items[0]["drivers"] else "")


def test_export_follows_the_sort_and_search(client: TestClient, web_world: WebWorld) -> None:
    params = {"tier": "C", "sort": "probability", "dir": "asc"}
    _, rows = csv_rows(client.get("/export.csv", params=params).text)
    ids = [row[EXPORT_COLUMNS.index("account_id")] for row in rows]
    assert set(ids) == {item["account_id"] for item in all_api_items(client, {"tier": "C"})}
    probabilities = [float(row[EXPORT_COLUMNS.index("defection_probability")]) for row in rows]
    assert probabilities == sorted(probabilities)
    word = str(web_world.expected["account_id"].iloc[0])
    _, found = csv_rows(client.get("/export.csv", params={"q": word.lower()}).text)
    assert [row[EXPORT_COLUMNS.index("account_id")] for row in found] == [word]


def test_export_refuses_a_filter_it_cannot_apply(client: TestClient) -> None:
    response = client.get("/export.csv", params={"tier": "D", "min_value_at_risk": "-5"})
    assert response.status_code == 400
    assert response.text == (
        "tier 'D' is not A, B or C; min_value_at_risk '-5' must be zero or more\n"
    )


def test_export_cells_cannot_become_formulas() -> None:
    row = export_record({"account_id": "=HYPERLINK(1)", "name": "-Acme", "value": -5.5,
                         "drivers": [], "actions": []})
    cells = dict(zip(EXPORT_COLUMNS, row, strict=True))
    assert cells["account_id"] == "'=HYPERLINK(1)"
    assert cells["name"] == "'-Acme"
    assert cells["value"] == "-5.5"  # numbers stay numbers
    assert cells["drivers"] == "[]"


# ------------------------------------------------------------------------------------------------
# The account page
# ------------------------------------------------------------------------------------------------
def test_account_page(client: TestClient, web_world: WebWorld) -> None:
    account_id = expected_order(web_world)[0]
    score = web_world.expected.loc[account_id]
    response = client.get(f"/accounts/{account_id}", params={"back": "tier=A"})
    assert response.status_code == 200
    page = Page(response.text)
    text = page.text
    assert str(score["name"]) in text and account_id in text
    assert page.figures["probability"] == FMT.pct(score["defection_probability"])
    assert page.figures["value-at-risk"] == FMT.money(score["value_at_risk"])
    assert page.figures["value"] == FMT.money(score["value"])
    assert "/?tier=A" in page.links  # back to the same view

    for driver in json.loads(score["drivers"]):
        assert driver["phrase"] in text
    for action in json.loads(score["actions"]):
        assert action["title"] in text and action["due_date"] in text
    # score history: one row per stored as_of of this account
    con = duckdb.connect(str(web_world.store_file), read_only=True)
    try:
        history = con.execute(
            "SELECT count(DISTINCT as_of) FROM scores WHERE account_id = ?", [account_id]
        ).fetchone()[0]
        as_of = pd.Timestamp(score["as_of"]).date()
        orders, revenue = con.execute(
            "SELECT count(*), coalesce(sum(revenue), 0) FROM orders WHERE account_id = ? "
            "AND CAST(order_date AS DATE) > ? - INTERVAL 365 DAY "
            "AND CAST(order_date AS DATE) <= ?",
            [account_id, as_of, as_of],
        ).fetchone()
        interactions = con.execute(
            "SELECT count(*) FROM interactions WHERE account_id = ? "
            "AND CAST(occurred_at AS DATE) > ? - INTERVAL 365 DAY "
            "AND CAST(occurred_at AS DATE) <= ?",
            [account_id, as_of, as_of],
        ).fetchone()[0]
        still_open = con.execute(
            "SELECT count(*) FROM complaints WHERE account_id = ? "
            "AND CAST(opened_at AS DATE) <= ? "
            "AND (resolved_at IS NULL OR CAST(resolved_at AS DATE) > ?)",
            [account_id, as_of, as_of],
        ).fetchone()[0]
        executive = con.execute(
            "SELECT max(CAST(occurred_at AS DATE)) FROM interactions WHERE account_id = ? "
            "AND CAST(occurred_at AS DATE) <= ? "
            "AND (contact_seniority = 'executive' OR our_seniority = 'executive')",
            [account_id, as_of],
        ).fetchone()[0]
    finally:
        con.close()
    assert history >= 2
    assert len(re.findall(r'<circle class="dot"', response.text)) == history
    assert page.figures["orders"] == f"{orders:,}"
    assert page.figures["revenue"] == FMT.money(revenue)
    assert page.figures["interactions"].startswith(f"{interactions:,}")
    assert page.figures["open-complaints"].startswith(str(still_open))
    if executive is not None:
        assert page.figures["executive"].startswith(executive.isoformat())


def test_unknown_account_is_a_404_page(client: TestClient, web_world: WebWorld) -> None:
    response = client.get("/accounts/NO-SUCH-ACCOUNT")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No account with id NO-SUCH-ACCOUNT" in Page(response.text).text


def test_pages_escape_what_they_show(client: TestClient) -> None:
    response = client.get("/accounts/<b>bold")
    assert response.status_code == 404
    assert "<b>bold" not in response.text
    assert "&lt;b&gt;bold" in response.text
    page = client.get("/", params={"q": '"><script>x</script>'}).text
    assert "<script>x" not in page


# ------------------------------------------------------------------------------------------------
# Sign-in
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "status"),
    [("/", 303), ("/?tier=A&region=North", 303), ("/accounts/x", 303), ("/export.csv", 401)],
    ids=["list", "filtered", "account", "export"],
)
def test_pages_need_a_key_when_keys_are_configured(
    anonymous: TestClient, path: str, status: int
) -> None:
    response = anonymous.get(path, follow_redirects=False)
    assert response.status_code == status
    if status == 303:
        assert response.headers["location"] == "/login?" + urlencode({"next": path})
    else:
        assert response.text == "sign in at /login, or send an API key in the X-API-Key header\n"
    assert "Baoming" not in response.text  # nothing of the book leaks


def test_export_accepts_the_api_key_header(anonymous: TestClient) -> None:
    response = anonymous.get("/export.csv", params={"tier": "A"}, headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200
    wrong = anonymous.get("/export.csv", headers={"X-API-Key": USER_KEY + "x"})
    assert wrong.status_code == 401


def test_sign_in_with_a_wrong_key_fails(web_world: WebWorld) -> None:
    with TestClient(make_app(web_settings(web_world))) as browser:
        form = browser.get("/login", params={"next": "/?tier=A"})
        assert form.status_code == 200
        assert 'name="next" value="/?tier=A"' in form.text
        wrong = browser.post("/login", data={"key": USER_KEY[:-1], "next": "/?tier=A"},
                             follow_redirects=False)
        assert wrong.status_code == 401
        assert "That key is not valid." in wrong.text
        cleared = [c for c in wrong.headers.get_list("set-cookie")
                   if c.startswith("kam_session=")]
        assert all(c.startswith('kam_session="";') for c in cleared)  # no key is kept
        assert browser.get("/", follow_redirects=False).status_code == 303
        empty = browser.post("/login", data={"key": ""}, follow_redirects=False)
        assert empty.status_code == 401 and "Enter your API key." in empty.text


def test_sign_in_with_a_right_key_works_and_sign_out_ends_it(web_world: WebWorld) -> None:
    with TestClient(make_app(web_settings(web_world))) as browser:
        signed = browser.post("/login", data={"key": USER_KEY, "next": "/?tier=A"},
                              follow_redirects=False)
        assert signed.status_code == 303
        assert signed.headers["location"] == "/?tier=A"
        cookies = signed.headers.get_list("set-cookie")
        key_cookie = next(c for c in cookies if c.startswith("kam_session="))
        assert "HttpOnly" in key_cookie and "SameSite=strict" in key_cookie
        assert "Path=/" in key_cookie and "Max-Age=28800" in key_cookie
        assert "Secure" not in key_cookie  # plain http on loopback: Secure would never return
        assert USER_KEY not in key_cookie  # a signed token, never the key
        page = browser.get("/?tier=A")
        assert page.status_code == 200 and Page(page.text).rows
        assert 'action="/logout"' in page.text
        out = browser.post("/logout", follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert browser.get("/", follow_redirects=False).status_code == 303


def test_over_https_the_cookie_is_secure(web_world: WebWorld) -> None:
    app = make_app(web_settings(web_world))
    with TestClient(app, base_url="https://kam.example") as browser:
        signed = browser.post("/login", data={"key": ADMIN_KEY}, follow_redirects=False,
                              headers={"Origin": "https://kam.example"})
        assert signed.status_code == 303
        key_cookie = next(c for c in signed.headers.get_list("set-cookie")
                          if c.startswith("kam_session="))
        assert "Secure" in key_cookie


@pytest.mark.parametrize(
    ("target", "lands"),
    [("/accounts/A1?back=tier%3DA", "/accounts/A1?back=tier%3DA"), ("//evil.example/", "/"),
     ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("", "/")],
    ids=["local", "scheme-relative", "absolute", "backslash", "empty"],
)
def test_sign_in_returns_only_to_local_pages(
    web_world: WebWorld, target: str, lands: str
) -> None:
    with TestClient(make_app(web_settings(web_world))) as browser:
        signed = browser.post("/login", data={"key": USER_KEY, "next": target},
                              follow_redirects=False)
        assert signed.headers["location"] == lands


def test_cross_site_sign_in_is_refused(anonymous: TestClient) -> None:
    response = anonymous.post("/login", data={"key": USER_KEY},
                              headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_a_link_from_another_site_is_asked_again_from_this_one(web_world: WebWorld) -> None:
    """The SameSite=Strict key cookie is not sent on a link from another site: bounce once."""
    with TestClient(make_app(web_settings(web_world))) as browser:
        # as after a sign-in, when the browser withholds the key cookie from a cross-site link
        bounce = browser.get("/login", params={"next": "/?tier=B"},
                             headers={"Cookie": "kam_signed_in=1"})
        assert bounce.status_code == 200
        assert '<meta http-equiv="refresh" content="0; url=/?tier=B">' in bounce.text
        assert 'kam_signed_in=""' in bounce.headers["set-cookie"]  # no second bounce: no loop
        assert 'name="key"' in browser.get("/login", params={"next": "/?tier=B"}).text


def test_without_keys_the_pages_are_open(web_world: WebWorld) -> None:
    settings = web_settings(web_world, api_keys=[], admin_api_keys=[])
    with TestClient(make_app(settings)) as open_client:
        assert open_client.get("/").status_code == 200
        assert open_client.get("/export.csv").status_code == 200
        login = open_client.get("/login", params={"next": "/?tier=A"}, follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/?tier=A"
        assert 'action="/logout"' not in open_client.get("/").text


# ------------------------------------------------------------------------------------------------
# What every page sends
# ------------------------------------------------------------------------------------------------
def test_pages_load_nothing_from_elsewhere(client: TestClient, web_world: WebWorld) -> None:
    account_id = expected_order(web_world)[0]
    for path in ("/", f"/accounts/{account_id}", "/login"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        text = response.text
        assert re.findall(r'(?:src|href)="(https?:)?//', text) == []
        assert " style=" not in text  # the policy allows no inline style
        assert re.findall(r"<script(?![^>]*\bsrc=)", text) == []  # nor inline script


def test_static_files(client: TestClient) -> None:
    css = client.get(static_url("app.css"))
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert "immutable" in css.headers["cache-control"]
    again = client.get("/static/app.css", headers={"If-None-Match": css.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/secret.txt").status_code == 404
    assert client.get("/static/..%2Fweb.py").status_code == 404


def test_without_scores_the_page_says_what_to_run(web_world: WebWorld, tmp_path: Path) -> None:
    settings = web_settings(
        web_world, store_url=f"duckdb:///{tmp_path / 'none.duckdb'}", api_keys=[],
        admin_api_keys=[],
    )
    with TestClient(make_app(settings)) as empty:
        response = empty.get("/")
        assert response.status_code == 503
        assert "kam score" in response.text
        assert empty.get("/accounts/x").status_code == 503
        assert empty.get("/export.csv").status_code == 503
