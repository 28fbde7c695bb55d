"""`GET /v1/plan`: the latest plan (``kam plan``), filtered by owner, region and manager."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel, Field

from kam.serving.api.deps import StateDep, v1_router
from kam.serving.api.problems import Problem
from kam.serving.decision_tables import read_plan
from kam.serving.scoring.planning import owner_summary, select_plan
from kam.serving.store import none_if_missing

router = v1_router()
EMPTY_PLAN = ("the latest plan has no action: no recommended action has a saving the actions "
              "history supports or favours (kam effects)")


class PlanItem(BaseModel):
    """One planned action: who does what for which account, by when, and what it saves."""

    owner: str = Field(description="AR, SR, FR or executive sponsor")
    account_id: str
    name: str | None = None
    region: str | None = None
    account_manager: str | None = None
    tier: str | None = None
    action_id: str
    title: str
    cause: str = Field(description="defection cause the action addresses")
    due_date: dt.date | None = None
    expected_saving: float = Field(description="expected value saved, net of the action's cost")
    effort: float = Field(description="the owner's time it takes, in the owner's unit")
    unit: str = Field(description="the owner's unit of capacity (h, visit)")
    cost: float = Field(description="money it costs: the owner's time and its own cost")
    defection_probability: float | None = None
    value_at_stake: float | None = None
    risk_reduction: float | None = Field(None, description="share of the risk it removes")
    effect: float | None = Field(None, description="measured change in defection probability")
    effect_low: float | None = None
    effect_high: float | None = None
    evidence_accounts: int | None = Field(None, description="accounts the effect rests on")
    evidence: str = Field(
        "helps",
        description="helps: the actions history supports the effect; unproven: its estimate "
        "favours the action but the interval includes zero (planned only on capacity the "
        "supported actions leave)",
    )


class OwnerLoad(BaseModel):
    """An owner's part of the plan: capacity, what the plan uses of it, and what it saves."""

    owner: str
    unit: str
    capacity: float
    used: float
    actions: int
    expected_saving: float


class PlanFilters(BaseModel):
    """The filters a plan page was selected with."""

    owner: str | None = None
    region: str | None = None
    account_manager: str | None = None


class PlanPage(BaseModel):
    """The plan's actions matching the filters, per owner, largest saving first."""

    as_of: dt.date | None = Field(None, description="the scores the plan was made from")
    planned_at: dt.datetime | None = None
    total: int = Field(description="planned actions matching the filters")
    expected_saving: float = Field(description="their total expected saving")
    filters: PlanFilters
    owners: list[OwnerLoad]
    items: list[PlanItem]


def _item(row: dict[Any, Any]) -> PlanItem:
    return PlanItem.model_validate({str(k): none_if_missing(v) for k, v in row.items()})


@router.get("/plan", response_model=PlanPage, tags=["scores"],
            responses={404: {"model": Problem, "description": "no plan has been made"},
                       503: {"model": Problem, "description": "the store cannot be read"}})
def plan(
    request: Request,
    state: StateDep,
    owner: Annotated[
        str | None, Query(min_length=1, description="owner or its alias, exactly: AR, executive")
    ]
    = None,
    region: Annotated[str | None, Query(min_length=1, description="exactly, case included")] = None,
    account_manager: Annotated[
        str | None, Query(min_length=1, description="exactly, case included")
    ] = None,
) -> PlanPage:
    """The latest plan: per owner, the accounts, actions, due dates and expected savings."""
    try:
        rows = read_plan(request.app.state.settings.store_url_for())
    except Exception as err:  # any backend's error: a writer holding the file, no file
        raise HTTPException(503, f"the store cannot be read right now ({err})") from None
    if rows is None:
        raise HTTPException(404, "no plan has been made: run kam plan --capacity ...")
    if rows.empty:
        raise HTTPException(404, EMPTY_PLAN)
    try:
        chosen = select_plan(rows, state.playbook, owner=owner, region=region,
                             account_manager=account_manager)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    stamp = rows["planned_at"].iloc[0]
    return PlanPage(
        as_of=none_if_missing(rows["as_of"].iloc[0]),
        planned_at=none_if_missing(stamp),
        total=len(chosen),
        expected_saving=float(chosen["expected_saving"].sum()),
        filters=PlanFilters(owner=owner, region=region, account_manager=account_manager),
        owners=[OwnerLoad.model_validate(o) for o in owner_summary(chosen, state.playbook)],
        items=[_item(r) for r in chosen.to_dict("records")],
    )
