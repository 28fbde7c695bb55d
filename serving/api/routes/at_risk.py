"""`GET /v1/at-risk`: the ranked at-risk list, filtered and paged."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import Response

from kam.serving.api.deps import ScoresDep, v1_router
from kam.serving.api.language import LanguageDep, language_response
from kam.serving.api.schemas import DEFAULT_PAGE, MAX_PAGE, AtRiskFilters, AtRiskPage, Tier

router = v1_router()


@router.get("/at-risk", response_model=AtRiskPage, tags=["scores"])
def at_risk(
    scores: ScoresDep,
    language: LanguageDep,
    tier: Annotated[list[Tier] | None, Query(description="repeat for several tiers")] = None,
    region: Annotated[
        str | None, Query(min_length=1, max_length=200, description="exact, case included")
    ] = None,
    account_manager: Annotated[
        str | None, Query(min_length=1, max_length=200, description="exact, case included")
    ] = None,
    min_value_at_risk: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The ranked at-risk list (value at risk, largest first), filtered and paged.

    Text filters match exactly, case included, as categories do everywhere in the API.
    """
    matched = scores.select(
        tiers=tier,
        region=region,
        account_manager=account_manager,
        min_value_at_risk=min_value_at_risk,
    )
    # the table's filter ignores case (the page's search wants that); the API matches exactly
    for column, wanted in (("region", region), ("account_manager", account_manager)):
        if wanted is not None and len(matched):
            values = scores.frame[column].to_numpy(dtype=object)[matched]
            matched = matched[values == wanted]
    filters = AtRiskFilters(
        tier=tier,
        region=region,
        account_manager=account_manager,
        min_value_at_risk=min_value_at_risk,
    )
    body = (
        f'{{"total": {len(matched)}, "limit": {limit}, "offset": {offset}, "filters": '.encode()
        + filters.model_dump_json().encode()
        + b', "items": '
        + scores.json_list(matched[offset : offset + limit])
        + b"}"
    )
    return language_response(body, language)
