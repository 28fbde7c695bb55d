"""What the actions history says each playbook action does, and what it saves for an account.

The effects come from :func:`kam.serving.scoring.effects.estimate_effects` (``kam effects``),
one record per action; this module lines them up with a playbook's actions and turns them into
an account's expected saving:

    expected saving = defection probability x value at stake x risk reduction - cost

where the risk reduction for the account is the action's estimated relative reduction, scaled
by how much of the account's risk comes from the cause the action addresses compared with the
accounts it was measured on (an action against price competition does little for an account
whose risk is all unresolved complaints), at most 1. The cost is the owner's time at its rate
plus the action's own cost (:meth:`Playbook.action_cost`).

An action whose effect the data supports (status ``helps``) has an expected saving. So has an
``unproven`` one: tested, its estimate favours it (fewer defections among the accounts it was
run on), but its interval still includes zero; its saving is what the estimate gives if it
holds, it ranks below every supported action and the plan gives it only the capacity the
supported actions leave (:func:`kam.serving.scoring.planning.make_plan`). The others (``harms``,
``no_effect`` with an estimate of no gain, ``untested``) carry their status so that an untested
action can be shown as such, never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kam.serving.decisions.playbook import Playbook
from kam.serving.decisions.vocabulary import CAUSES

# An action the history never measured (no record, or too little data to estimate).
UNTESTED = "untested"
SUPPORTED = "helps"
# tested, the estimate favours it, the interval includes zero
UNPROVEN = "unproven"
NO_EFFECT = "no_effect"
HARMFUL = "harms"
# The statuses with an expected saving.
WITH_SAVING = (SUPPORTED, UNPROVEN)
# Statuses with no estimate behind them read as untested to a manager.
_UNKNOWN = {"too_few", "no_overlap"}


@dataclass(frozen=True)
class Evidence:
    """The effect evidence of each action of a playbook, as arrays in the playbook's order.

    Attributes
    ----------
    status
        ``helps``, ``unproven``, ``harms``, ``no_effect`` or ``untested``.
    effect, effect_low, effect_high
        Change in defection probability among the treated and its interval (NaN: unknown).
    relative
        Relative risk reduction among the treated (0.3: 30% fewer defections).
    cause_share
        Share of the treated accounts' risk that the action's cause explained.
    accounts
        Treated accounts the estimate rests on (0: none).
    cost
        Money one run costs (owner's time and the action's own cost).
    """

    status: tuple[str, ...]
    effect: np.ndarray
    effect_low: np.ndarray
    effect_high: np.ndarray
    relative: np.ndarray
    cause_share: np.ndarray
    accounts: np.ndarray
    cost: np.ndarray
    cause_index: np.ndarray

    @property
    def supported(self) -> np.ndarray:
        return np.array([s == SUPPORTED for s in self.status], dtype=bool)

    @property
    def favourable(self) -> np.ndarray:
        """Actions with an expected saving: supported, or unproven."""
        return np.array([s in WITH_SAVING for s in self.status], dtype=bool)

    @property
    def harmful(self) -> np.ndarray:
        return np.array([s == HARMFUL for s in self.status], dtype=bool)


def evidence_for(
    playbook: Playbook, effects: Sequence[Mapping[str, Any]] | None = None
) -> Evidence:
    """Line up effect records (``kam effects``' rows) with ``playbook``'s actions.

    Parameters
    ----------
    playbook
        The retention playbook.
    effects
        Records with ``action``, ``status``, ``effect``, ``ci_low``, ``ci_high``,
        ``relative``, ``cause_share`` and ``n_treated``; None when no history was studied.

    Returns
    -------
    Evidence
        Actions without a record are ``untested``; a ``no_effect`` record whose estimate is a
        reduction is ``unproven``.
    """
    by_action = {str(r["action"]): r for r in effects or ()}
    status: list[str] = []
    columns: dict[str, list[float]] = {k: [] for k in (
        "effect", "ci_low", "ci_high", "relative", "cause_share", "n_treated")}
    for action in playbook.actions:
        record = by_action.get(action.id)
        code = str(record["status"]) if record is not None else UNTESTED
        for key, values in columns.items():
            values.append(_number(record.get(key)) if record is not None else math.nan)
        # the relative reduction is the effect over a positive counterfactual rate (NaN
        # without one): it alone says whether the estimate favours the action
        if code == NO_EFFECT and columns["relative"][-1] > 0:
            code = UNPROVEN
        status.append(UNTESTED if code in _UNKNOWN else code)
    accounts = np.nan_to_num(np.array(columns["n_treated"]), nan=0.0).astype(np.int64)
    return Evidence(
        status=tuple(status),
        effect=np.array(columns["effect"]),
        effect_low=np.array(columns["ci_low"]),
        effect_high=np.array(columns["ci_high"]),
        relative=np.array(columns["relative"]),
        cause_share=np.array(columns["cause_share"]),
        accounts=accounts,
        cost=np.array([playbook.action_cost(a) for a in playbook.actions]),
        cause_index=np.array([CAUSES.index(a.cause) for a in playbook.actions]),
    )


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def risk_reduction(evidence: Evidence, cause_strength: np.ndarray) -> np.ndarray:
    """(accounts x actions) relative risk reduction of each action for each account.

    NaN for actions without a supported or unproven effect.

    Parameters
    ----------
    evidence
        The playbook's evidence.
    cause_strength
        (accounts x causes) how strongly each cause drives each account's risk (the drivers').
    """
    strength = np.clip(np.asarray(cause_strength, dtype=float), 0.0, None)
    total = strength.sum(axis=1, keepdims=True)
    share = np.divide(strength[:, evidence.cause_index], total,
                      out=np.full((len(strength), len(evidence.status)), np.nan),
                      where=total > 0)
    ratio = share / evidence.cause_share[None, :]
    # no drivers (or no share measured): the action's average reduction
    ratio = np.where(np.isfinite(ratio), ratio, 1.0)
    reduction = np.clip(evidence.relative[None, :] * ratio, 0.0, 1.0)
    return np.where(evidence.favourable[None, :], reduction, np.nan)


def expected_saving(
    evidence: Evidence, probability: np.ndarray, stake: np.ndarray, cause_strength: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(accounts x actions) expected saving and risk reduction; NaN where neither supported nor
    unproven.

    Parameters
    ----------
    evidence
        The playbook's evidence.
    probability, stake
        Each account's defection probability and value at stake (NaN stake: no saving known).
    cause_strength
        (accounts x causes) the drivers' cause strengths.
    """
    reduction = risk_reduction(evidence, cause_strength)
    at_risk = np.asarray(probability, dtype=float) * np.asarray(stake, dtype=float)
    return at_risk[:, None] * reduction - evidence.cost[None, :], reduction


def saving_one(
    evidence: Evidence, a: int, probability: float, stake: float,
    cause_strength: Sequence[float],
) -> tuple[float, float]:
    """One-row twin of :func:`expected_saving` for action ``a``: (saving, reduction)."""
    if evidence.status[a] not in WITH_SAVING:
        return math.nan, math.nan
    strength = [max(s, 0.0) for s in cause_strength]
    total = sum(strength)  # in order, as numpy adds a short row
    ratio = math.nan
    if total > 0:
        ratio = strength[int(evidence.cause_index[a])] / total / float(evidence.cause_share[a])
    if not math.isfinite(ratio):
        ratio = 1.0
    reduction = min(max(float(evidence.relative[a]) * ratio, 0.0), 1.0)
    return probability * stake * reduction - float(evidence.cost[a]), reduction
