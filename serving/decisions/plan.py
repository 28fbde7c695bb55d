"""The plan: which accounts get which actions, within each owner's capacity, saving the most.

Given candidate (account, action) pairs, each with an expected saving, an owner and the owner's
effort, :func:`solve_plan` chooses the pairs that maximise the total expected saving subject to

- each owner's capacity for the planning period (hours for AR, SR and FR, visits for the
  executive sponsor: the units of the playbook's ``owners``),
- at most one action per account per owner,
- at most one action per account per cause (two actions against the same cause would both be
  credited with the same risk),

as a 0-1 integer programme solved exactly by HiGHS (``scipy.optimize.milp``); the solver's
optimality gap is reported with the plan. Before solving, candidates that can never be in a
best plan are set aside: with ``m`` the most actions any plan can hold (each owner's capacity
over its smallest effort, summed), a candidate with at least ``m + 1`` candidates of the same
owner on other accounts that save at least as much for no more effort can always be swapped for
one of them (a plan of at most ``m`` actions blocks at most ``m`` accounts). That keeps the
programme small on a large book without changing its optimum. Cool-downs are respected
upstream: an action inside its cool-down is never a candidate
(:mod:`kam.serving.decisions.recommend`).

Capacities are written as the command line takes them, ``AR=120h,SR=60h,FR=40h,executive=10``
(:func:`parse_capacity`); an unknown owner, a unit other than the owner's, or an amount that is
not a non-negative number is refused with a message naming it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array, csr_array

from kam.serving.decisions.playbook import Playbook

TIME_LIMIT_S = 120.0
GAP = 1e-6
_ITEM = re.compile(r"^\s*([^=]+?)\s*=\s*([^\s]*?)\s*([A-Za-z]*)\s*$")


class CapacityError(ValueError):
    """A capacity string that cannot be read; the message names the owner or unit."""


def parse_capacity(text: str, playbook: Playbook) -> dict[str, float]:
    """Capacities per owner from ``AR=120h,SR=60h,FR=40h,executive=10``.

    Owners are named by their playbook name or alias (any case); the unit, when given, must be
    the owner's (``h``; ``visit`` or ``visits``). Owners left out get no capacity.

    Parameters
    ----------
    text
        Comma-separated ``owner=amount[unit]`` items.
    playbook
        Gives the owners, their aliases and units.

    Returns
    -------
    dict
        Owner (playbook name) -> capacity in the owner's unit; every playbook owner is a key.

    Raises
    ------
    CapacityError
        Naming the item, the owner or the unit that is wrong.
    """
    names: dict[str, str] = {}
    for key, counted in playbook.owners.items():
        names[key.lower()] = key
        if counted.alias:
            names[counted.alias.lower()] = key
    known = ", ".join(u.alias or o for o, u in playbook.owners.items())
    out: dict[str, float] = dict.fromkeys(playbook.owners, 0.0)
    seen: set[str] = set()
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise CapacityError(f"no capacity given: write e.g. AR=120h,SR=60h (owners: {known})")
    for item in items:
        match = _ITEM.match(item)
        if match is None:
            raise CapacityError(f"{item.strip()!r}: write owner=amount, e.g. AR=120h")
        name, amount, unit = match.groups()
        owner = names.get(name.lower())
        if owner is None:
            raise CapacityError(f"{item.strip()!r}: unknown owner {name!r}; owners: {known}")
        if owner in seen:
            raise CapacityError(f"{item.strip()!r}: owner {owner!r} is given twice")
        seen.add(owner)
        expected = playbook.owners[owner].unit  # type: ignore[index]  # a playbook owner
        if unit and unit.lower() not in {expected, expected + "s"}:
            raise CapacityError(
                f"{item.strip()!r}: {owner}'s capacity is counted in {expected!r}, not {unit!r}"
            )
        try:
            value = float(amount)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise CapacityError(
                f"{item.strip()!r}: {owner}'s capacity must be a non-negative number of "
                f"{expected}, not {amount!r}"
            )
        out[owner] = value
    return out


@dataclass(frozen=True)
class PlanResult:
    """What the solver chose.

    Attributes
    ----------
    chosen
        Indices of the chosen candidates.
    total
        Their total expected saving.
    bound
        The solver's upper bound on the best total (equal to ``total`` when proven optimal).
    gap
        Relative optimality gap ((bound - total) / bound; 0 when proven optimal).
    status
        The solver's message.
    seconds
        Solving time.
    used
        Owner -> capacity used.
    """

    chosen: np.ndarray
    total: float
    bound: float
    gap: float
    status: str
    seconds: float
    used: dict[str, float]


def solve_plan(
    account: Sequence[object] | np.ndarray,
    owner: Sequence[str] | np.ndarray,
    cause: Sequence[str] | np.ndarray,
    effort: np.ndarray,
    saving: np.ndarray,
    capacity: Mapping[str, float],
    *,
    time_limit: float = TIME_LIMIT_S,
) -> PlanResult:
    """Choose candidates maximising the total saving within capacities (a 0-1 programme).

    Parameters
    ----------
    account, owner, cause
        Per candidate: its account, the action's owner and the cause it addresses.
    effort
        Per candidate: the owner's effort, in the owner's unit.
    saving
        Per candidate: expected saving; candidates saving nothing are never chosen.
    capacity
        Owner -> capacity (owners absent: none).
    time_limit
        Seconds the solver may take; the gap it reached is reported.

    Returns
    -------
    PlanResult
    """
    began = time.perf_counter()
    owner = np.asarray(owner, dtype=object)
    effort = np.asarray(effort, dtype=float)
    saving = np.asarray(saving, dtype=float)
    cap = np.array([float(capacity.get(o, 0.0)) for o in owner.tolist()])
    # a candidate that saves nothing or cannot fit is left out of the programme
    usable = np.flatnonzero((saving > 0) & np.isfinite(saving) & (effort <= cap))
    usable = usable[_undominated(np.asarray(account, dtype=object)[usable], owner[usable],
                                 effort[usable], saving[usable], capacity)]
    used = {o: 0.0 for o in capacity}
    if not len(usable):
        return PlanResult(np.zeros(0, dtype=np.int64), 0.0, 0.0, 0.0, "nothing to plan",
                          time.perf_counter() - began, used)
    k = len(usable)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    upper: list[float] = []
    n_rows = 0
    owners_used = owner[usable]
    for o in dict.fromkeys(owners_used.tolist()):
        members = np.flatnonzero(owners_used == o)
        rows.append(np.full(len(members), n_rows))
        cols.append(members)
        vals.append(effort[usable][members])
        upper.append(float(capacity.get(o, 0.0)))
        n_rows += 1
    for keys in (owner, np.asarray(cause, dtype=object)):
        group_codes = _codes(np.asarray(account, dtype=object)[usable], keys[usable])
        counts = np.bincount(group_codes)
        shared = np.flatnonzero(counts > 1)  # a group of one needs no constraint
        if len(shared):
            at = np.full(len(counts), -1)
            at[shared] = np.arange(len(shared)) + n_rows
            members = np.flatnonzero(at[group_codes] >= 0)
            rows.append(at[group_codes][members])
            cols.append(members)
            vals.append(np.ones(len(members)))
            upper.extend([1.0] * len(shared))
            n_rows += len(shared)
    matrix = csr_array(coo_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, k)
    ))
    result = milp(
        c=-saving[usable],
        integrality=np.ones(k, dtype=np.int64),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(matrix, -np.inf, np.array(upper)),
        options={"time_limit": time_limit, "mip_rel_gap": GAP, "disp": False},
    )
    if result.x is None:
        raise RuntimeError(f"the plan solver found no solution: {result.message}")
    chosen = usable[np.flatnonzero(result.x > 0.5)]
    total = float(saving[chosen].sum())
    bound = float(-getattr(result, "mip_dual_bound", -total) or -total)
    bound = max(bound, total)
    gap = (bound - total) / bound if bound > 0 else 0.0
    for o in owner[chosen].tolist():
        used[o] = used.get(o, 0.0)
    for o, e in zip(owner[chosen].tolist(), effort[chosen].tolist(), strict=True):
        used[o] += e
    return PlanResult(chosen, total, bound, gap, str(result.message),
                      time.perf_counter() - began, used)


def _undominated(account: np.ndarray, owner: np.ndarray, effort: np.ndarray,
                 saving: np.ndarray, capacity: Mapping[str, float]) -> np.ndarray:
    """Indices of the candidates some best plan may need (see the module's docstring)."""
    most = 0
    for o in dict.fromkeys(owner.tolist()):
        smallest = float(effort[owner == o].min())
        most += int(float(capacity.get(o, 0.0)) // smallest) if smallest > 0 else len(owner)
    keep = np.zeros(len(owner), dtype=bool)
    for o in dict.fromkeys(owner.tolist()):
        mine = np.flatnonzero(owner == o)
        for level in np.unique(effort[mine]):
            # candidates of this owner with no more effort than this level, best saving first
            pool = mine[effort[mine] <= level]
            pool = pool[np.argsort(-saving[pool], kind="stable")]
            _, first = np.unique(account[pool].astype(str), return_index=True)
            best_per_account = np.sort(first)  # positions of each account's best, in order
            at_level = mine[effort[mine] == level]
            if len(best_per_account) <= most + 1:
                keep[at_level] = True
                continue
            threshold = saving[pool[best_per_account[most + 1]]]
            # strictly below the (m+2)-th account's best: m+1 others save at least as much
            keep[at_level] |= saving[at_level] >= threshold
    return np.flatnonzero(keep)


def _codes(account: np.ndarray, key: np.ndarray) -> np.ndarray:
    """One integer per distinct (account, key) pair."""
    pairs = np.char.add(np.char.add(account.astype(str), "\x1f"), key.astype(str))
    return np.unique(pairs, return_inverse=True)[1].ravel()
