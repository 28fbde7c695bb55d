"""`GET /v1/accounts/{account_id}`: the latest score of one known account."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path
from fastapi.responses import Response

from kam.serving.api.deps import ScoresDep, v1_router
from kam.serving.api.language import LanguageDep, language_response
from kam.serving.api.schemas import AccountScore, Problem

router = v1_router()


@router.get(
    "/accounts/{account_id}",
    response_model=AccountScore,
    responses={404: {"model": Problem, "description": "unknown account"}},
    tags=["scores"],
)
async def get_account(
    scores: ScoresDep,
    account_id: Annotated[str, Path(min_length=1, max_length=200)],
    language: LanguageDep,
) -> Response:
    """Latest score of one account: risk, value interval, tier, stage, drivers and actions."""
    # a dict lookup of a prepared body: cheaper inline than a hop to the thread pool
    body = scores.body(account_id)
    if body is None:
        raise HTTPException(404, f"unknown account {account_id!r}")
    return language_response(body, language)
