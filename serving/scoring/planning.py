"""Make the plan from the latest scores: the recommended actions with an expected saving, chosen
within each owner's capacity (:mod:`kam.serving.decisions.plan`).

Actions whose effect the history supports come first: the solver chooses among them alone.
The capacity they leave (an owner none of the supported actions needs, hours left over) goes
to unproven actions, those whose estimate favours them but whose interval includes zero, chosen
by a second solve among them on what is left; each planned action says which it is
(``evidence``), so that a manager can tell a backed action from a plausible one.

Each scored account carries up to three recommended actions, each with its expected saving and
evidence (``actions`` of the score record); those with an expected saving are the candidates.
The plan table has one row per chosen (account, action), with what the owner needs to act on it
(account, action, due date, expected saving, effort in the owner's unit) and the evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from kam.serving.decisions.evidence import SUPPORTED, UNPROVEN
from kam.serving.decisions.plan import PlanResult, solve_plan
from kam.serving.decisions.playbook import Playbook

PLAN_COLUMNS = (
    "owner",
    "account_id",
    "name",
    "region",
    "account_manager",
    "tier",
    "action_id",
    "title",
    "cause",
    "due_date",
    "expected_saving",
    "effort",
    "unit",
    "cost",
    "defection_probability",
    "value_at_stake",
    "risk_reduction",
    "effect",
    "effect_low",
    "effect_high",
    "evidence_accounts",
    "evidence",
    "capacity",
    "as_of",
    "planned_at",
)


# Filled in once the plan is made: the owner's capacity and the plan's time stamp.
_PLAN_ONLY = ("capacity", "planned_at")
# The plan table's column types, stated so that a plan with no action is still a typed table
_DAYS = ("due_date", "as_of", "planned_at")
_COUNTS = ("evidence_accounts",)
_TEXTS = ("owner", "account_id", "name", "region", "account_manager", "tier", "action_id",
          "title", "cause", "unit", "evidence")
PLAN_TYPES: dict[str, str] = {
    c: "datetime64[us]" if c in _DAYS else "Int64" if c in _COUNTS
    else "string" if c in _TEXTS else "float64"
    for c in PLAN_COLUMNS
}


@dataclass(frozen=True)
class Plan:
    """A plan: its rows (:data:`PLAN_COLUMNS`), capacities and what the solver proved."""

    rows: pd.DataFrame
    capacity: dict[str, float]
    result: PlanResult
    candidates: int

    def owners(self, playbook: Playbook) -> pd.DataFrame:
        """Per owner: unit, capacity, used, actions and expected saving."""
        out = []
        for owner, cap in self.capacity.items():
            mine = self.rows[self.rows["owner"] == owner]
            out.append({
                "owner": owner,
                "unit": playbook.owners[owner].unit,  # type: ignore[index]
                "capacity": cap,
                "used": float(mine["effort"].sum()),
                "actions": len(mine),
                "expected_saving": float(mine["expected_saving"].sum()),
            })
        return pd.DataFrame(out)


def candidates(scores: pd.DataFrame, playbook: Playbook) -> pd.DataFrame:
    """One row per recommended action with an expected saving, from score rows.

    Parameters
    ----------
    scores
        Score records (the ``scores`` table's columns), one as_of.
    playbook
        Gives each action's effort and cost.

    Returns
    -------
    pandas.DataFrame
        The plan's columns but ``capacity`` and ``planned_at``; actions the playbook no
        longer has are left out.
    """
    rows: list[dict[str, object]] = []
    for record in scores.to_dict("records"):
        for item in json.loads(record["actions"] or "[]"):
            saving = item.get("expected_saving")
            action = playbook.by_id.get(item["action_id"])
            if saving is None or action is None:
                continue
            rows.append({
                "owner": action.owner,
                "account_id": record["account_id"],
                "name": record.get("name"),
                "region": record.get("region"),
                "account_manager": record.get("account_manager"),
                "tier": record.get("tier"),
                "action_id": action.id,
                "title": item.get("title", action.title),
                "cause": action.cause,
                "due_date": item.get("due_date"),
                "expected_saving": float(saving),
                "effort": action.effort,
                "unit": playbook.owners[action.owner].unit,
                "cost": playbook.action_cost(action),
                "defection_probability": record.get("defection_probability"),
                "value_at_stake": record.get("value_at_stake"),
                "risk_reduction": item.get("risk_reduction"),
                "effect": item.get("effect"),
                "effect_low": item.get("effect_low"),
                "effect_high": item.get("effect_high"),
                "evidence_accounts": item.get("evidence_accounts"),
                "evidence": item.get("evidence") or SUPPORTED,
                "as_of": record.get("as_of"),
            })
    return pd.DataFrame(rows, columns=[c for c in PLAN_COLUMNS if c not in _PLAN_ONLY])


def make_plan(
    scores: pd.DataFrame,
    playbook: Playbook,
    capacity: dict[str, float],
    *,
    planned_at: datetime | None = None,
) -> Plan:
    """Choose the actions that save the most within ``capacity``.

    Parameters
    ----------
    scores
        The latest score records (one as_of).
    playbook
        The playbook the scores' actions come from.
    capacity
        Owner -> capacity in the owner's unit (:func:`kam.serving.decisions.plan.parse_capacity`).
    planned_at
        Time stamp of the plan (now, UTC, when None).

    Returns
    -------
    Plan
    """
    pool = candidates(scores, playbook)
    result = _solve_supported_first(pool, capacity)
    stamp = pd.Timestamp(planned_at or datetime.now(UTC))
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    chosen = pool.iloc[np.sort(result.chosen)].copy()
    chosen["planned_at"] = stamp
    chosen["capacity"] = chosen["owner"].map(capacity).astype(float)
    order = {o: i for i, o in enumerate(playbook.owners)}
    chosen = chosen.assign(_owner=chosen["owner"].map(order)).sort_values(
        ["_owner", "expected_saving", "account_id"], ascending=[True, False, True]
    ).drop(columns="_owner")
    chosen["due_date"] = pd.to_datetime(chosen["due_date"])
    chosen["as_of"] = pd.to_datetime(chosen["as_of"])
    rows = chosen.reset_index(drop=True)[list(PLAN_COLUMNS)].astype(PLAN_TYPES)
    return Plan(rows, dict(capacity), result, len(pool))


def _solve_supported_first(pool: pd.DataFrame, capacity: dict[str, float]) -> PlanResult:
    """The best plan of supported actions, then the best of unproven ones on what is left."""

    def solve(part: np.ndarray, room: dict[str, float]) -> PlanResult:
        found = solve_plan(
            pool["account_id"].to_numpy(dtype=object)[part],
            pool["owner"].to_numpy(dtype=object)[part],
            pool["cause"].to_numpy(dtype=object)[part],
            pool["effort"].to_numpy(dtype=float)[part],
            pool["expected_saving"].to_numpy(dtype=float)[part], room,
        )
        return replace(found, chosen=part[found.chosen])

    supported = pool["evidence"].to_numpy(dtype=object) == SUPPORTED
    first = solve(np.flatnonzero(supported), capacity)
    left = {o: max(c - first.used.get(o, 0.0), 0.0) for o, c in capacity.items()}
    taken = pool.iloc[first.chosen]
    # at most one action per account and owner, and per account and cause, across both solves
    owners = set(zip(taken["account_id"], taken["owner"], strict=True))
    causes = set(zip(taken["account_id"], taken["cause"], strict=True))
    free = np.array([
        (a, o) not in owners and (a, c) not in causes
        for a, o, c in zip(pool["account_id"], pool["owner"], pool["cause"], strict=True)
    ], dtype=bool)
    second = solve(np.flatnonzero(~supported & free), left)
    used = {o: first.used.get(o, 0.0) + second.used.get(o, 0.0) for o in capacity}
    total = first.total + second.total
    bound = first.bound + second.bound
    return PlanResult(
        chosen=np.concatenate([first.chosen, second.chosen]),
        total=total, bound=bound, gap=(bound - total) / bound if bound > 0 else 0.0,
        status=f"supported: {first.status}; unproven: {second.status}",
        seconds=first.seconds + second.seconds, used=used,
    )


def unproven_rows(rows: pd.DataFrame) -> np.ndarray:
    """Which plan rows are unproven actions (a plan made before the ``evidence`` column held
    supported actions only)."""
    if "evidence" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    return (rows["evidence"] == UNPROVEN).fillna(False).to_numpy(dtype=bool)


def select_plan(
    rows: pd.DataFrame,
    playbook: Playbook,
    *,
    owner: str | None = None,
    region: str | None = None,
    account_manager: str | None = None,
) -> pd.DataFrame:
    """The plan's rows for an owner (name or alias), region and account manager, each matched
    exactly, case included, as every category is in the API.

    Raises
    ------
    ValueError
        For an owner the playbook does not have, naming the owners it has.
    """
    keep = np.ones(len(rows), dtype=bool)
    if owner is not None:
        names: dict[str, str] = {o: o for o in playbook.owners}
        names.update({u.alias: o for o, u in playbook.owners.items() if u.alias})
        found = names.get(owner)
        if found is None:
            known = ", ".join(u.alias or o for o, u in playbook.owners.items())
            raise ValueError(f"unknown owner {owner!r}; owners: {known}")
        keep &= (rows["owner"] == found).to_numpy()
    for column, wanted in (("region", region), ("account_manager", account_manager)):
        if wanted is not None:
            keep &= (rows[column].astype("string") == wanted).fillna(False).to_numpy(dtype=bool)
    return rows[keep]


def owner_summary(rows: pd.DataFrame, playbook: Playbook) -> list[dict[str, object]]:
    """Per owner in the plan (playbook order): unit, capacity, used, actions, saving."""
    out: list[dict[str, object]] = []
    for owner, counted in playbook.owners.items():
        mine = rows[rows["owner"] == owner]
        if mine.empty:
            continue
        out.append({
            "owner": owner,
            "unit": counted.unit,
            "capacity": float(mine["capacity"].iloc[0]),
            "used": float(mine["effort"].sum()),
            "actions": len(mine),
            "expected_saving": float(mine["expected_saving"].sum()),
        })
    return out
