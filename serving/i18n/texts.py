"""A score's texts in one language: drivers' phrases, actions' titles and reasons.

Scoring writes each text in English and in Chinese (``phrase`` and ``phrase_zh``, ``title`` and
``title_zh``, ``reason`` and ``reason_zh``). Scores written before the Chinese texts existed
have only the English: it is shown marked ``[EN] ``, never as a blank.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kam.serving.decisions.phrasebook import SUFFIXES, UNTRANSLATED


def said(item: Mapping[str, Any], field: str, language: str) -> Any:
    """``item[field]`` in ``language``: its translation, else the English marked."""
    english = item.get(field)
    if language == "en":
        return english
    local = item.get(field + SUFFIXES[language])
    if local:
        return local
    return UNTRANSLATED + english if english else english


def said_driver(driver: Mapping[str, Any], language: str) -> dict[str, Any]:
    """A driver with its phrase in ``language``."""
    return {**driver, "phrase": said(driver, "phrase", language)}


def said_action(action: Mapping[str, Any], language: str) -> dict[str, Any]:
    """An action with its title and reason in ``language``."""
    return {
        **action,
        "title": said(action, "title", language),
        "reason": said(action, "reason", language),
    }


def localized_item(item: Mapping[str, Any], language: str) -> dict[str, Any]:
    """An API item (an account's score) with its human-readable texts in ``language``.

    Codes and numbers stay as they are; ``phrase``, ``title`` and ``reason`` of the drivers and
    actions, and the summary columns repeating them, take the language's text.
    """
    out = dict(item)
    if "drivers" in out:
        out["drivers"] = [said_driver(d, language) for d in out["drivers"] or []]
    if "actions" in out:
        out["actions"] = [said_action(a, language) for a in out["actions"] or []]
    for name, field in (("top_driver", "top_driver"), ("first_action", "first_action")):
        if name in out:
            out[name] = said(out, field, language)
    return out


def localized_json(body: bytes, language: str) -> bytes:
    """A JSON body of the API with its texts in ``language``: one account, or a page of them
    (``items``). English bodies are returned as they are (the stored text is English)."""
    if language == "en":
        return body
    data = json.loads(body)
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data["items"] = [localized_item(i, language) for i in data["items"]]
    elif isinstance(data, dict):
        data = localized_item(data, language)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
