"""The product in Chinese and English: catalogs complete, language chosen, texts and figures per
locale, and a Chinese page without English words."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from babel.messages.extract import extract_from_dir
from fastapi.testclient import TestClient

from kam.features.catalog import CATALOG
from kam.serving.decisions.drivers import NOT_ACTIONABLE
from kam.serving.decisions.phrasebook import (
    UNTRANSLATED,
    PhrasebookError,
    load_phrasebook,
)
from kam.serving.decisions.playbook import load_playbook, parse_playbook
from kam.serving.decisions.vocabulary import (
    CAUSES,
    FAMILIES,
    LABELS,
    OWNERS,
    STAGES,
    TECHNIQUES,
    TIERS,
    label,
)
from kam.serving.i18n.languages import from_accept_language, language_of, negotiate
from kam.serving.i18n.messages import catalog, translator
from kam.serving.web.export import EXPORT_COLUMNS, HEADERS_ZH
from kam.serving.web.formats import Formats
from tests.serving.web.test_web import (
    USER_KEY,
    Page,
    WebWorld,
    make_app,
    scored_world,
    web_settings,
)
from tests.world import World

SERVING = Path(__file__).resolve().parents[3] / "serving"
FIELDS = re.compile(r"%\((\w+)\)s")
# What a Chinese page may show in Latin letters: the iron triangle's codes, product names,
# tier letters, units and formats (and the data itself: names, ids, regions, managers)
ALLOWED_LATIN = {
    "kam", "AR", "SR", "FR", "CSV", "UTC", "A", "B", "C", "v", "score", "BG", "NBD",
    "English",  # the switch to the other language, written in that language
}


# ------------------------------------------------------------------------------------------------
# Every string has both languages
# ------------------------------------------------------------------------------------------------
def _page_messages() -> dict[Any, str]:
    found: dict[Any, str] = {}
    for filename, line, message, _, _ in extract_from_dir(
        str(SERVING),
        method_map=[("web/**.py", "python"), ("web/templates/**.html", "jinja2")],
        options_map={"web/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "say": None},
    ):
        found.setdefault(message, f"{filename}:{line}")
    return found


def test_every_page_string_has_a_chinese_translation_with_the_same_fields() -> None:
    messages = _page_messages()
    assert len(messages) > 150  # the extraction found the templates and the code
    chinese = catalog("zh-CN")
    assert chinese is not None
    missing, wrong = [], []
    for message, where in messages.items():
        key = message if isinstance(message, str) else message[0]
        entry = chinese.get(key)
        texts = (
            [entry.string] if entry is not None and isinstance(entry.string, str)
            else list(entry.string) if entry is not None else []
        )
        if not texts or not all(texts):
            missing.append(f"{where}: {message!r}")
            continue
        wanted = set(FIELDS.findall(key))
        if any(set(FIELDS.findall(t)) != wanted for t in texts):
            wrong.append(f"{where}: {message!r} -> {texts!r}")
    assert missing == []
    assert wrong == []


def test_every_phrasing_and_feature_description_is_said_in_chinese() -> None:
    book = load_phrasebook()
    chinese = book.in_language("zh-CN")
    untranslated = [
        f"{feature}: {p.text}"
        for feature, phrasings in chinese.phrasings.items()
        for p in phrasings
        if p.text.startswith(UNTRANSLATED)
    ]
    assert untranslated == []
    assert set(chinese.phrasings) == set(book.phrasings)
    actionable = {
        f.name for f in CATALOG if f.kind != "category" and f.family not in NOT_ACTIONABLE
    }
    assert sorted(actionable - set(chinese.descriptions)) == []


def test_every_playbook_action_has_both_languages() -> None:
    for action in load_playbook().actions:
        assert action.title_zh, action.id
        assert action.description and action.description_zh, action.id


@pytest.mark.parametrize(
    ("kind", "codes"),
    [("causes", CAUSES), ("techniques", TECHNIQUES), ("owners", OWNERS),
     ("families", FAMILIES), ("stages", STAGES), ("stage_meanings", STAGES), ("tiers", TIERS)],
)
def test_every_code_has_words_in_both_languages(kind: str, codes: tuple[str, ...]) -> None:
    for language in ("en", "zh-CN"):
        assert set(LABELS[language][kind]) == set(codes), (language, kind)
    assert LABELS["zh-CN"]["owners"]["AR"] == "客户经理"
    assert LABELS["zh-CN"]["owners"]["executive sponsor"] == "高层发起人"


def test_every_export_header_has_a_chinese_name() -> None:
    assert set(HEADERS_ZH) == set(EXPORT_COLUMNS)
    assert len(set(HEADERS_ZH.values())) == len(HEADERS_ZH)


# ------------------------------------------------------------------------------------------------
# A missing translation shows; a wrong one is refused
# ------------------------------------------------------------------------------------------------
ACTION = {
    "id": "call", "technique": "keep_communication_open", "owner": "AR",
    "cause": "relationship", "due_in_days": 7, "cool_down_days": 0, "tiers": ["A"],
}


def test_a_playbook_in_one_language_falls_back_visibly() -> None:
    english = parse_playbook({"version": "1", "actions": [{**ACTION, "title": "Call them"}]})
    action = english.actions[0]
    assert action.said("title", "zh-CN") == "[EN] Call them"
    assert action.said("description", "zh-CN") is None  # no description at all: none shown
    chinese = parse_playbook({"version": "1", "actions": [{**ACTION, "title_zh": "打电话"}]})
    action = chinese.actions[0]
    assert action.said("title", "zh-CN") == "打电话"
    assert action.said("title", "en") == "[ZH] 打电话"


def _catalog(tmp_path: Path, say: list[dict[str, Any]]) -> Path:
    path = tmp_path / "phrases.yaml"
    path.write_text(
        yaml.safe_dump(
            {"version": 1, "features": {"recency_days": {"cause": "relationship", "say": say}}},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    return path


def test_a_phrase_without_chinese_is_said_in_english_marked(tmp_path: Path) -> None:
    book = load_phrasebook(_catalog(tmp_path, [{"text": "no order for {recency_days:days} days"}]))
    values = {"recency_days": np.array([40.0])}
    assert book.in_language("zh-CN").render("recency_days", values).tolist() == [
        "[EN] no order for 40 days"
    ]


def test_a_chinese_phrase_must_say_the_same_figures(tmp_path: Path) -> None:
    path = _catalog(tmp_path, [{
        "text": "no order for {recency_days:days} days",
        "text_zh": "已{mean_gap_days:days}天未下单",
    }])
    with pytest.raises(PhrasebookError, match=r"text_zh.*same figures"):
        load_phrasebook(path)


def test_phrases_say_the_same_figures_in_both_languages() -> None:
    book = load_phrasebook()
    values = {
        "revenue_yoy_90d": np.array([-0.6]), "revenue_90d_last_year": np.array([2_500_000.0]),
        "complaints_open": np.array([3.0]),
    }
    assert book.render("revenue_yoy_90d", values).tolist() == [
        "spend down 75% vs the same quarter last year"
    ]
    chinese = book.in_language("zh-CN")
    assert chinese.render("revenue_yoy_90d", values).tolist() == ["采购额较去年同季度下降75%"]
    assert chinese.render("revenue_90d_last_year", values).tolist() == ["去年同季度采购250万"]
    assert chinese.render("complaints_open", values).tolist() == ["未结投诉3件"]


# ------------------------------------------------------------------------------------------------
# Choosing the language; numbers and dates per locale
# ------------------------------------------------------------------------------------------------
def test_the_language_comes_from_the_url_the_cookie_the_browser_then_the_setting() -> None:
    browser = {"accept-language": "en-GB,en;q=0.9,zh-CN;q=0.8"}
    assert negotiate({"lang": "zh"}, {"kam_lang": "en"}, browser) == "zh-CN"
    assert negotiate({}, {"kam_lang": "zh-CN"}, browser) == "zh-CN"
    assert negotiate({}, {}, browser) == "en"
    assert negotiate({}, {}, {"accept-language": "fr, zh-Hans;q=0.5"}) == "zh-CN"
    assert negotiate({}, {}, {}, default="zh-CN") == "zh-CN"
    assert negotiate({"lang": "klingon"}, {}, {}, default="zh-CN") == "zh-CN"
    assert from_accept_language("zh-TW;q=0, en;q=0.1") == "en"
    with pytest.raises(ValueError, match="not available"):
        language_of("fr")


@pytest.mark.parametrize(
    ("value", "en", "zh"),
    [
        (1234567.4, "¥1,234,567", "¥123.5万"),
        (123_456_789.0, "¥123,456,789", "¥1.23亿"),
        (8200.0, "¥8,200", "¥8,200"),
        (-250_000.0, "−¥250,000", "−¥25万"),
        (None, "–", "–"),
    ],
)
def test_amounts_per_locale(value: Any, en: str, zh: str) -> None:
    assert Formats(language="en").money(value) == en
    assert Formats(language="zh-CN").money(value) == zh


def test_dates_per_locale() -> None:
    assert Formats(language="en").day("2025-12-31") == "2025-12-31"
    assert Formats(language="zh-CN").day("2025-12-31") == "2025年12月31日"
    assert translator("zh-CN").ngettext("%(n)s account", "%(n)s accounts", 3, n="3") == "3个客户"


# ------------------------------------------------------------------------------------------------
# The pages and the export in Chinese
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def web_world(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return scored_world(small_world, tmp_path_factory)


@pytest.fixture(scope="module")
def zh_client(web_world: WebWorld) -> Any:
    """A signed-in client whose browser asks for Chinese."""
    app = make_app(web_settings(web_world))
    with TestClient(app, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}) as client:
        signed = client.post("/login", data={"key": USER_KEY, "next": "/"},
                             follow_redirects=False)
        assert signed.status_code == 303
        yield client


def english_words(html: str, world: WebWorld) -> set[str]:
    """Latin words in the page's visible text that are neither data nor allowed codes."""
    text = Page(html).text
    frame = world.expected
    data = set()
    for column in ("name", "account_id", "region", "account_manager", "industry"):
        if column in frame.columns:
            data |= {str(v) for v in frame[column].dropna().unique()}
    data.add(world.model_name)
    for value in sorted(data, key=len, reverse=True):
        text = text.replace(value, " ")
    return {w for w in re.findall(r"[A-Za-z]+", text) if w not in ALLOWED_LATIN}


def test_the_list_and_an_account_page_speak_chinese(
    zh_client: TestClient, web_world: WebWorld
) -> None:
    listed = zh_client.get("/")
    assert listed.status_code == 200
    assert listed.headers["content-language"] == "zh-CN"
    assert '<html lang="zh-CN">' in listed.text
    assert "风险大客户" in listed.text
    assert english_words(listed.text, web_world) == set()
    first = Page(listed.text).rows[0]
    account = zh_client.get(f"/accounts/{first}")
    assert account.status_code == 200
    assert "建议行动" in account.text
    assert english_words(account.text, web_world) == set()
    # the drivers and actions are the Chinese texts scoring wrote, not the English
    expected = web_world.expected.loc[first]
    if isinstance(expected["top_driver_zh"], str):
        assert expected["top_driver_zh"] in account.text
        assert expected["top_driver"] not in account.text


def test_the_switch_keeps_the_choice_in_a_cookie(web_world: WebWorld) -> None:
    app = make_app(web_settings(web_world))
    with TestClient(app) as client:
        client.post("/login", data={"key": USER_KEY, "next": "/"}, follow_redirects=False)
        english = client.get("/")
        assert english.headers["content-language"] == "en"
        assert 'href="/?lang=zh-CN"' in english.text
        switched = client.get("/?lang=zh-CN")
        assert "kam_lang=zh-CN" in switched.headers["set-cookie"]
        assert switched.headers["content-language"] == "zh-CN"
        kept = client.get("/")  # no parameter: the cookie keeps Chinese
        assert kept.headers["content-language"] == "zh-CN"


def test_kam_language_sets_the_default(web_world: WebWorld) -> None:
    app = make_app(web_settings(web_world, language="zh-CN"))
    with TestClient(app) as client:
        client.post("/login", data={"key": USER_KEY, "next": "/"}, follow_redirects=False)
        assert client.get("/").headers["content-language"] == "zh-CN"
        asked = client.get("/", headers={"Accept-Language": "en-US"})
        assert asked.headers["content-language"] == "en"


def test_the_export_follows_the_page_language_and_keeps_the_codes_available(
    zh_client: TestClient, web_world: WebWorld
) -> None:
    chinese = zh_client.get("/export.csv")
    assert chinese.status_code == 200
    rows = list(csv.reader(io.StringIO(chinese.content.decode("utf-8-sig"))))
    assert rows[0] == [HEADERS_ZH[c] for c in EXPORT_COLUMNS]
    assert len(rows) - 1 == len(web_world.expected)
    stage = rows[0].index("关系阶段")
    assert {r[stage] for r in rows[1:]} <= set(LABELS["zh-CN"]["stages"].values()) | {""}
    codes = zh_client.get("/export.csv?columns=codes")
    rows = list(csv.reader(io.StringIO(codes.content.decode("utf-8-sig"))))
    assert rows[0] == list(EXPORT_COLUMNS)
    stage = rows[0].index("relationship_stage")
    assert {r[stage] for r in rows[1:]} <= set(STAGES) | {""}


def test_labels_fall_back_visibly() -> None:
    assert label("owners", "AR", "zh-CN") == "客户经理"
    assert label("owners", "someone", "zh-CN") == "someone"
    assert label("owners", None, "zh-CN") is None


# ------------------------------------------------------------------------------------------------
# The API: codes stay, texts follow ?lang= or Accept-Language
# ------------------------------------------------------------------------------------------------
def test_the_api_gives_texts_in_the_language_asked_and_keeps_the_codes(
    web_world: WebWorld,
) -> None:
    key = {"X-API-Key": USER_KEY}
    with TestClient(make_app(web_settings(web_world))) as client:
        page = client.get("/v1/at-risk", params={"limit": 5}, headers=key).json()
        account = next(i for i in page["items"] if i["drivers"] and i["actions"])["account_id"]
        english = client.get(f"/v1/accounts/{account}", headers=key)
        assert "content-language" not in english.headers or (
            english.headers["content-language"] == "en"
        )
        chinese = client.get(f"/v1/accounts/{account}", params={"lang": "zh-CN"}, headers=key)
        assert chinese.headers["content-language"] == "zh-CN"
        said, plain = chinese.json(), english.json()
        assert said["drivers"][0]["phrase"] == plain["drivers"][0]["phrase_zh"]
        assert said["drivers"][0]["phrase"] != plain["drivers"][0]["phrase"]
        assert said["actions"][0]["title"] == plain["actions"][0]["title_zh"]
        assert said["actions"][0]["reason"] == plain["actions"][0]["reason_zh"]
        # machine fields: the same codes in both
        for field in ("tier", "relationship_stage", "defection_probability", "value_at_risk"):
            assert said[field] == plain[field]
        assert said["drivers"][0]["cause"] in CAUSES
        assert said["actions"][0]["owner"] in OWNERS
        browser = client.get(
            "/v1/at-risk", params={"limit": 5}, headers={**key, "Accept-Language": "zh-CN"}
        ).json()
        assert [i["account_id"] for i in browser["items"]] == [
            i["account_id"] for i in page["items"]
        ]
        first = next(i for i in browser["items"] if i["drivers"])
        assert first["drivers"][0]["phrase"] == first["drivers"][0]["phrase_zh"]
        refused = client.get(f"/v1/accounts/{account}", params={"lang": "fr"}, headers=key)
        assert refused.status_code == 422
        assert "zh-CN" in refused.text
