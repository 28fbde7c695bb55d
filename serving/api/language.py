"""The language of the API's human-readable texts: ``?lang=``, else ``Accept-Language``.

Machine fields (codes, ids, numbers) are the same in every language; ``phrase``, ``title`` and
``reason`` are given in the language asked for, and the response says which in
``Content-Language``. Without either, the texts are English.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from fastapi.responses import Response

from kam.serving.i18n.languages import from_accept_language
from kam.serving.i18n.texts import localized_json


async def api_language(
    request: Request,
    lang: Annotated[
        Literal["en", "zh-CN"] | None,
        Query(description="language of the texts, exactly (else Accept-Language)"),
    ] = None,
) -> str:
    """The language asked for. ``?lang=`` is matched exactly, as every category of the API is
    (its schema is an enum), so anything else is a 422 naming the field."""
    if lang is not None:
        return lang
    return from_accept_language(request.headers.get("accept-language")) or "en"


LanguageDep = Annotated[str, Depends(api_language)]


def language_response(body: bytes, language: str) -> Response:
    """A JSON body of scores (one account, or a page of ``items``) with its texts in
    ``language``."""
    return Response(
        localized_json(body, language), media_type="application/json",
        headers={"Content-Language": language},
    )
