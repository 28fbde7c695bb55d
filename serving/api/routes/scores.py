"""`POST /v1/scores` (latest scores of many accounts) and `POST /v1/score` (a posted row).

Posted feature rows are scored on the event loop, those posted together in one batch
(:mod:`serving.microbatch`): :class:`RowContext` is what groups them, :func:`score_rows` what
scores a group.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import Response

from kam.models.errors import FeatureRowError
from kam.models.registry import LoadedModel
from kam.serving.api.deps import ScorerDep, ScoresDep, StateDep, json_response, v1_router
from kam.serving.api.problems import ApiProblem, FieldError
from kam.serving.api.schemas import AccountScores, FeatureRowRequest, FeatureRowScore, ScoreRequest
from kam.serving.decisions.evidence import Evidence
from kam.serving.decisions.playbook import Playbook
from kam.serving.record import DEFAULT_CURRENCY, NUMBER, RECORD
from kam.serving.scoring.microbatch import RowBatcher
from kam.serving.scoring.online import score_matrix

router = v1_router()
# what the record says a posted row's score holds: echoed from the request, or scored
_ECHOED = tuple(f.name for f in RECORD.body if f.posted == "echoed")
_SCORED = tuple(f.name for f in RECORD.body if f.posted == "scored")
_NULLABLE_NUMBERS = frozenset(f.name for f in RECORD.body if f.kind is NUMBER and f.nullable)


def _json_value(name: str, value: Any) -> Any:
    """A scored value for the response: NaN (no value at stake posted) as null."""
    return None if name in _NULLABLE_NUMBERS and value != value else value


@dataclass(frozen=True)
class RowContext:
    """What a posted row's scores depend on besides its features: one batch group."""

    model: LoadedModel
    playbook: Playbook | None
    as_of: dt.date | None
    cutoffs: tuple[float, float] | None
    evidence: Evidence | None = None

    @property
    def group(self) -> tuple[int, int, dt.date | None, tuple[float, float] | None]:
        return (id(self.model), id(self.playbook), self.as_of, self.cutoffs)


def score_rows(context: RowContext, x: Any) -> list[dict[str, Any]]:
    """Score one batch group's rows (the :class:`RowBatcher`'s scoring function)."""
    return score_matrix(
        context.model,
        x,
        playbook=context.playbook,
        as_of=context.as_of,
        tier_cutoffs=context.cutoffs,
        evidence=context.evidence,
    )


@router.post("/scores", response_model=AccountScores, tags=["scores"])
async def get_accounts(scores: ScoresDep, request_body: ScoreRequest) -> Response:
    """Latest scores of up to 1,000 accounts (request order, duplicates once) and unknown ids."""
    wanted = list(dict.fromkeys(request_body.account_ids))
    found = [scores.position[i] for i in wanted if i in scores.position]
    unknown = [i for i in wanted if i not in scores.position]
    body = (
        b'{"items": '
        + scores.json_list(found)
        + b', "unknown": '
        + json.dumps(unknown, ensure_ascii=False).encode()
        + b"}"
    )
    return json_response(body)


def _feature_errors(err: FeatureRowError) -> list[FieldError]:
    return [
        FieldError(
            loc=["body", "features", name],
            msg=message,
            type="feature_row",
        )
        for name, message in err.errors.items()
    ]


@router.post("/score", response_model=FeatureRowScore, tags=["scores"])
async def score_row(
    payload: FeatureRowRequest, model: ScorerDep, state: StateDep, request: Request
) -> Response:
    """Score one posted feature row (features the caller computed).

    Features may be left out or null; each value given must be of its feature's kind and
    within its range, a category one of the model's levels (case included). A row giving
    fewer than half of the model's features (`min_known_features` of `GET /v1/model`) is
    scored but marked `reliable: false`. Rows posted at the same time are scored together
    (:mod:`serving.microbatch`).
    """
    spec = model.scorer.spec
    try:
        (x,) = spec.check_rows([payload.features])
    except FeatureRowError as err:
        raise ApiProblem(422, "a bad feature row", _feature_errors(err)) from None
    known = int(np.count_nonzero(~np.isnan(x)))
    cutoffs = state.scores.tier_cutoffs if state.scores is not None else None
    context = RowContext(model, state.playbook, payload.as_of, cutoffs, state.evidence)
    batcher: RowBatcher = request.app.state.row_batcher
    row = await batcher.submit(context.group, context, x)
    result = FeatureRowScore(
        **{name: getattr(payload, name) for name in _ECHOED},
        **{name: _json_value(name, row.get(name)) for name in _SCORED},
        missing_features=[n for n in spec.names if payload.features.get(n) is None],
        known_features=known,
        reliable=known >= spec.min_known,
        horizon=str(model.metadata.horizon),
        currency=getattr(request.app.state.settings, "currency", None) or DEFAULT_CURRENCY,
    )
    return json_response(result.model_dump_json().encode())
