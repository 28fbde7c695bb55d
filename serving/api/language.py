"""The language of the API's human-readable texts: ``?lang=``, else ``Accept-Language``.

Machine fields (codes, ids, numbers) are the same in every language; ``phrase``, ``title`` and
``reason`` are given in the language asked for, and the response says which in
``Content-Language``. Without either, the texts are English.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import Response

from kam.serving.i18n.languages import LanguageError, from_accept_language, language_of
from kam.serving.i18n.texts import localized_json


async def api_language(
    request: Request,
    lang: Annotated[
        str | None, Query(description="language of the texts: zh-CN or en (else Accept-Language)")
    ] = None,
) -> str:
    """The language asked for; a ``?lang=`` that is not spoken is refused (422)."""
    if lang is not None:
        try:
            return language_of(lang)
        except LanguageError as err:
            raise HTTPException(422, str(err)) from None
    return from_accept_language(request.headers.get("accept-language")) or "en"


LanguageDep = Annotated[str, Depends(api_language)]


def language_response(body: bytes, language: str) -> Response:
    """A JSON body of scores (one account, or a page of ``items``) with its texts in
    ``language``."""
    return Response(
        localized_json(body, language), media_type="application/json",
        headers={"Content-Language": language},
    )
