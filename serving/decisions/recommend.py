"""Recommended retention actions: the playbook's actions whose triggers match each account.

An action is recommended for an account when its tiers include the account's tier, its trigger
matches (one of the account's top drivers has a listed cause, family or feature, and every
feature condition holds), it was not taken for the account within its cool-down, and the
actions history does not show it raising defection. Up to three are kept per account:

1. first the actions whose effect the history supports, by expected saving (defection
   probability x value at stake x the action's risk reduction for the account's cause mix,
   minus its cost; :mod:`kam.serving.decisions.evidence`);
2. then the unproven ones (an estimate in their favour whose interval includes zero), by the
   expected saving their estimate gives;
3. then the others (untested, or no gain the data can show), by how strongly the cause the
   action addresses drives the account's risk (the summed positive SHAP contributions of the
   features pointing to that cause), then by the contribution of the strongest driver that
   triggers it (0 for actions triggered by conditions alone), then by their position in the
   playbook.

Each carries its owner, a due date (as_of + due_in_days) and the reason in the account's own
figures: the phrase of the driver that triggered it. Matching is done for all accounts at once
on arrays, one playbook action at a time; the one-account twin on plain values is
:func:`kam.serving.decisions.one_row.recommend_row`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kam.serving.decisions.conditions import Condition
from kam.serving.decisions.drivers import Drivers
from kam.serving.decisions.evidence import Evidence, evidence_for, expected_saving
from kam.serving.decisions.phrasebook import Phrasebook
from kam.serving.decisions.playbook import Playbook
from kam.serving.decisions.vocabulary import CAUSES, TIERS

DEFAULT_MAX_ACTIONS = 3
# The missing entry for np.where on object columns (numpy's typing takes no bare None)
_NONE = np.array(None, dtype=object)


@dataclass(frozen=True)
class Recommendations:
    """Recommended actions per account, as (accounts x slots) arrays; slot 0 comes first.

    Attributes
    ----------
    playbook
        The playbook the actions come from (``playbook.actions[code]``).
    code
        Index of the action in the playbook, -1 for an empty slot.
    reason
        Why, in the account's own figures (the triggering driver's phrase).
    reason_zh
        The same in Chinese.
    due
        Due date (``datetime64[D]``; NaT for an empty slot).
    score
        Strength of the triggering driver (log-odds; 0 when triggered by conditions alone).
    saving, reduction
        Expected saving and the account's relative risk reduction (NaN: no supported effect).
    evidence
        The effect evidence of the playbook's actions.
    """

    playbook: Playbook
    code: np.ndarray
    reason: np.ndarray
    due: np.ndarray
    score: np.ndarray
    saving: np.ndarray
    reduction: np.ndarray
    evidence: Evidence
    reason_zh: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.code)

    def records(self, i: int) -> list[dict[str, Any]]:
        """Account ``i``'s actions: action_id, title, technique, owner, due_date, reason, cause,
        title_zh, reason_zh, and the expected saving with its evidence (:func:`evidence_fields`)."""
        out: list[dict[str, Any]] = []
        for s in range(self.code.shape[1]):
            code = int(self.code[i, s])
            if code < 0:
                break
            action = self.playbook.actions[code]
            out.append(
                {
                    "action_id": action.id,
                    "title": action.title,
                    "technique": action.technique,
                    "owner": action.owner,
                    "due_date": str(self.due[i, s]),
                    "reason": self.reason[i, s],
                    "cause": action.cause,
                    "title_zh": action.said("title", "zh-CN"),
                    "reason_zh": None if self.reason_zh is None else self.reason_zh[i, s],
                    **evidence_fields(
                        self.evidence, code, float(self.saving[i, s]),
                        float(self.reduction[i, s]),
                    ),
                }
            )
        return out

    def first(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Title, owner and due date of each account's first action (None / NaT when none)."""
        has = self.code[:, 0] >= 0
        titles = np.array([a.title for a in self.playbook.actions], dtype=object)
        owners = np.array([a.owner for a in self.playbook.actions], dtype=object)
        at = np.where(has, self.code[:, 0], 0)
        return (
            np.where(has, titles[at], _NONE).astype(object),
            np.where(has, owners[at], _NONE).astype(object),
            self.due[:, 0],
        )

    def first_zh(self) -> np.ndarray:
        """The Chinese title of each account's first action (None when none)."""
        has = self.code[:, 0] >= 0
        titles = np.array([a.said("title", "zh-CN") for a in self.playbook.actions], dtype=object)
        return np.where(has, titles[np.where(has, self.code[:, 0], 0)], _NONE).astype(object)


def evidence_fields(evidence: Evidence, a: int, saving: float, reduction: float
                    ) -> dict[str, Any]:
    """The saving and evidence keys of an action's record (None where unknown)."""

    def known(v: float) -> float | None:
        return round(v, 4) if np.isfinite(v) else None

    return {
        "expected_saving": round(saving, 2) if np.isfinite(saving) else None,
        "risk_reduction": known(reduction),
        "evidence": evidence.status[a],
        "effect": known(float(evidence.effect[a])),
        "effect_low": known(float(evidence.effect_low[a])),
        "effect_high": known(float(evidence.effect_high[a])),
        "evidence_accounts": int(evidence.accounts[a]),
    }


def recommend(
    playbook: Playbook,
    drivers: Drivers,
    values: Mapping[str, np.ndarray],
    tiers: np.ndarray,
    as_of: Any,
    phrasebook: Phrasebook,
    *,
    days_since_taken: np.ndarray | None = None,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    evidence: Evidence | None = None,
    probability: np.ndarray | None = None,
    stake: np.ndarray | None = None,
) -> Recommendations:
    """Match the playbook against every account's drivers, features, tier and history.

    Parameters
    ----------
    playbook
        The retention playbook.
    drivers
        The accounts' drivers (:func:`kam.serving.decisions.drivers.compute_drivers`).
    values
        Feature name -> float array over the accounts, for the trigger conditions. A condition
        on a feature absent from ``values`` (not in the data at all) is not checked.
    tiers
        Tier per account (``"A"``, ``"B"``, ``"C"``); ``None`` lets every tier's actions apply.
    as_of
        Scoring date, a scalar or one per account; due dates count from it.
    phrasebook
        Phrases the reason of an action triggered by conditions alone.
    days_since_taken
        (accounts x playbook actions) days since each action was last taken for the account,
        NaN when never (see :func:`days_since_taken`); actions inside their cool-down are not
        recommended.
    max_actions
        Actions kept per account.
    evidence
        What the actions history says of each action (:func:`evidence_for`); every action is
        untested when None.
    probability, stake
        Each account's defection probability and value at stake, for the expected saving
        (no saving without them).

    Returns
    -------
    Recommendations
    """
    n = len(drivers)
    evidence = evidence if evidence is not None else evidence_for(playbook)
    n_actions = len(playbook.actions)
    tiers = np.asarray(tiers, dtype=object)
    slot_ok = drivers.family_code >= 0
    # a driver slot's codes, shifted so that an empty slot (-1) indexes a trailing False
    fam_idx = np.where(slot_ok, drivers.family_code, len(drivers.families))
    feat_idx = np.where(slot_ok, drivers.feature_code, len(drivers.feature_names))
    cause_idx = np.where(slot_ok, drivers.cause_code, len(CAUSES))
    contribution = np.where(slot_ok, drivers.contribution, -np.inf)
    rows = np.arange(n)

    plan = action_plan(playbook, drivers.families, drivers.feature_names)
    # (accounts x actions) eligibility: tier, feature conditions, cool-down
    eligible = plan.tier_ok[:, _tier_codes(tiers)].T.copy()
    for condition, users in plan.conditions:
        if condition.feature in values:
            eligible[:, users] &= condition.holds(values, n)[:, None]
    if days_since_taken is not None:
        eligible &= ~(days_since_taken < plan.cool_down)
    eligible &= ~evidence.harmful[None, :]
    # (accounts x actions x slots) driver matches; the strongest matching slot is the reason
    k = contribution.shape[1]
    if k:
        match = (
            plan.family_ok[:, fam_idx] | plan.feature_ok[:, feat_idx] | plan.cause_ok[:, cause_idx]
        ).transpose(1, 0, 2)
        matched = np.where(match, contribution[:, None, :], -np.inf)
        slot = np.argmax(matched, axis=2)
        best = np.take_along_axis(matched, slot[:, :, None], axis=2)[:, :, 0]
    else:
        slot = np.zeros((n, n_actions), dtype=np.int64)
        best = np.full((n, n_actions), -np.inf)
    needs = plan.needs_driver[None, :]
    eligible &= ~needs | np.isfinite(best)
    score = np.where(eligible, np.where(needs, best, 0.0), -np.inf)
    # actions triggered by conditions alone give the top driver as the reason, if any
    first = np.where(slot_ok[:, 0], 0, -1)[:, None] if k else np.full((n, 1), -1)
    reason_slot = np.where(needs, slot, first)
    strength = drivers.cause_strength[:, plan.cause_index]

    if probability is None or stake is None:
        saving = reduction = np.full((n, n_actions), np.nan)
    else:
        saving, reduction = expected_saving(evidence, probability, stake, drivers.cause_strength)
    # supported actions first, by saving; then unproven ones, by saving; then the rest as before
    ranked = np.isfinite(score) & np.isfinite(saving)
    proven = evidence.supported[None, :]
    group = np.where(np.isfinite(score), np.where(ranked, np.where(proven, 0, 1), 2), 3)
    by_saving = np.where(ranked, saving, 0.0)
    position = np.broadcast_to(np.arange(n_actions), (n, n_actions))
    primary = np.where(np.isfinite(score), strength, -np.inf)
    order = np.lexsort((position, -score, -primary, -by_saving, group), axis=-1)[:, :max_actions]
    kept = np.take_along_axis(score, order, axis=1)
    code = np.where(np.isfinite(kept), order, -1)
    kept_saving = np.take_along_axis(saving, order, axis=1)
    kept_reduction = np.take_along_axis(reduction, order, axis=1)
    m = code.shape[1]

    reason = np.full((n, max_actions), None, dtype=object)
    reason_zh = np.full((n, max_actions), None, dtype=object)
    chinese = phrasebook.in_language("zh-CN")
    due = np.full((n, max_actions), np.datetime64("NaT"), dtype="datetime64[D]")
    best_score = np.full((n, max_actions), np.nan)
    base = _days(as_of, n)
    due_in = plan.due_in
    for s in range(m):
        has = code[:, s] >= 0
        at = np.where(has, code[:, s], 0)
        slot = reason_slot[rows, at]
        from_driver = has & (slot >= 0)
        reason[from_driver, s] = drivers.phrase[rows[from_driver], slot[from_driver]]
        if drivers.phrase_zh is not None:
            reason_zh[from_driver, s] = drivers.phrase_zh[rows[from_driver], slot[from_driver]]
        due[has, s] = base[has] + due_in[at[has]]
        best_score[has, s] = kept[has, s]
        # actions triggered by conditions alone: say the first condition with the figures
        for a in np.unique(at[has & ~from_driver]):
            who = np.flatnonzero(has & ~from_driver & (at == a))
            conditions = playbook.actions[a].trigger.conditions
            if conditions and conditions[0].feature in values:
                reason[who, s] = phrasebook.render(conditions[0].feature, values, who)
                reason_zh[who, s] = chinese.render(conditions[0].feature, values, who)
            else:  # no condition and no driver: the account's tier is the reason
                reason[who, s] = [tier_reason(t, "en") for t in tiers[who].tolist()]
                reason_zh[who, s] = [tier_reason(t, "zh-CN") for t in tiers[who].tolist()]
    out_saving = np.full((n, max_actions), np.nan)
    out_reduction = np.full((n, max_actions), np.nan)
    out_saving[:, :m] = np.where(code >= 0, kept_saving, np.nan)
    out_reduction[:, :m] = np.where(code >= 0, kept_reduction, np.nan)
    if m < max_actions:
        code = np.hstack([code, np.full((n, max_actions - m), -1, dtype=np.int64)])
    return Recommendations(
        playbook, code, reason, due, best_score, out_saving, out_reduction, evidence,
        reason_zh=reason_zh,
    )


def tier_reason(tier: str | None, language: str) -> str:
    """The reason of an action that neither a driver nor a condition triggered: the tier."""
    if language == "zh-CN":
        return f"{tier or '?'}类客户"
    return f"tier {tier or '?'} account"


@dataclass(frozen=True)
class ActionPlan:
    """What a playbook fixes for a given driver vocabulary, as (actions x ...) arrays.

    Attributes
    ----------
    tier_ok
        (actions x tiers + 1): whether the action applies to each tier (:data:`TIER_CODE`),
        then to an unknown tier (always).
    family_ok, feature_ok, cause_ok
        (actions x codes + 1): whether a driver of each family, feature or cause triggers the
        action; the last column, for an empty driver slot, is False.
    needs_driver
        Per action, whether a matching driver is required.
    conditions
        Each distinct trigger condition with the actions that use it.
    cool_down, cause_index, due_in
        Per action: cool-down days, code of the cause it addresses, days until due.
    families_of, features_of, causes_of
        Per action, as plain Python values for one row at a time: the driver family, feature
        and cause codes that trigger it.
    """

    tier_ok: np.ndarray
    family_ok: np.ndarray
    feature_ok: np.ndarray
    cause_ok: np.ndarray
    needs_driver: np.ndarray
    conditions: tuple[tuple[Condition, np.ndarray], ...]
    cool_down: np.ndarray
    cause_index: np.ndarray
    due_in: np.ndarray
    families_of: tuple[frozenset[int], ...]
    features_of: tuple[frozenset[int], ...]
    causes_of: tuple[frozenset[int], ...]


# Tier codes, the columns of ActionPlan.tier_ok; a missing or unknown tier has the last one.
TIER_CODE: dict[str, int] = {t: i for i, t in enumerate(TIERS)}
UNKNOWN_TIER = len(TIERS)
_PLANS: dict[tuple[int, tuple[str, ...], tuple[str, ...]], tuple[Playbook, ActionPlan]] = {}


def action_plan(
    playbook: Playbook, families: tuple[str, ...], features: tuple[str, ...]
) -> ActionPlan:
    """The plan of a playbook for a model's driver families and features, built once.

    The online path recommends for one row at a time, so what depends only on the playbook and
    the model is kept (a few plans at most).

    Parameters
    ----------
    playbook
        The retention playbook.
    families, features
        The driver families and feature names the drivers' codes index
        (:attr:`Drivers.families`, :attr:`Drivers.feature_names`).

    Returns
    -------
    ActionPlan
    """
    key = (id(playbook), tuple(families), tuple(features))
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is playbook:
        return hit[1]
    actions = playbook.actions
    tier_ok = np.zeros((len(actions), UNKNOWN_TIER + 1), dtype=bool)
    tier_ok[:, UNKNOWN_TIER] = True  # an unknown tier lets every action apply
    for a, action in enumerate(actions):
        tier_ok[a, [TIER_CODE[t] for t in action.tiers]] = True

    def padded(names: tuple[str, ...], wanted: Sequence[str]) -> np.ndarray:
        return np.append(np.isin(np.array(names, dtype=object), wanted), False)

    users: dict[Condition, list[int]] = {}
    for a, action in enumerate(actions):
        for condition in action.trigger.conditions:
            users.setdefault(condition, []).append(a)
    plan = ActionPlan(
        tier_ok=tier_ok,
        family_ok=np.array([padded(families, a.trigger.families) for a in actions]),
        feature_ok=np.array([padded(features, a.trigger.features) for a in actions]),
        cause_ok=np.array([padded(CAUSES, a.trigger.causes) for a in actions]),
        needs_driver=np.array([a.trigger.needs_driver for a in actions]),
        conditions=tuple((c, np.array(a)) for c, a in users.items()),
        cool_down=np.array([a.cool_down_days for a in actions], dtype=float),
        cause_index=np.array([CAUSES.index(a.cause) for a in actions]),
        due_in=np.array([a.due_in_days for a in actions], dtype="timedelta64[D]"),
        families_of=_codes(families, [a.trigger.families for a in actions]),
        features_of=_codes(features, [a.trigger.features for a in actions]),
        causes_of=_codes(CAUSES, [a.trigger.causes for a in actions]),
    )
    if len(_PLANS) >= 16:
        _PLANS.clear()
    _PLANS[key] = (playbook, plan)
    return plan


def _codes(
    names: tuple[str, ...], wanted: Sequence[Sequence[str]]
) -> tuple[frozenset[int], ...]:
    return tuple(frozenset(i for i, name in enumerate(names) if name in w) for w in wanted)


def _tier_codes(tiers: np.ndarray) -> np.ndarray:
    return np.array([TIER_CODE.get(t, UNKNOWN_TIER) for t in tiers.tolist()], dtype=np.int64)


def _days(as_of: Any, n: int) -> np.ndarray:
    if np.ndim(as_of) == 0:
        return np.full(n, np.datetime64(pd.Timestamp(as_of).date(), "D"))
    return pd.to_datetime(np.asarray(as_of)).to_numpy().astype("datetime64[D]")


def days_since_taken(
    con: Any, account_ids: np.ndarray, as_of: Any, playbook: Playbook
) -> np.ndarray | None:
    """Days since each playbook action was last taken for each account, as of ``as_of``.

    Reads the store's ``actions`` table (account_id, taken_at, action); only actions taken on or
    before as_of and within the longest cool-down count.

    Parameters
    ----------
    con
        Ibis connection to the store.
    account_ids
        The accounts, in the order of the result's rows.
    as_of
        The scoring date.
    playbook
        The playbook; the result's columns follow its actions.

    Returns
    -------
    numpy.ndarray or None
        (accounts x actions) days, NaN where not taken in the window; None when the store has
        no actions table.
    """
    if "actions" not in con.list_tables():
        return None
    day = pd.Timestamp(as_of).normalize()
    longest = max(a.cool_down_days for a in playbook.actions)
    t = con.table("actions")
    taken_day = t.taken_at.date()
    recent = t.filter(
        t.action.isin(list(playbook.ids)),
        taken_day <= day.date(),
        taken_day > (day - pd.Timedelta(days=longest)).date(),
    )
    last = recent.group_by(["account_id", "action"]).aggregate(last=recent.taken_at.max())
    frame = con.execute(last)
    out = np.full((len(account_ids), len(playbook.actions)), np.nan)
    if frame.empty:
        return out
    row_of = pd.Index(pd.Series(account_ids, dtype=object))
    rows = row_of.get_indexer(frame["account_id"].astype(object))
    cols = pd.Index(list(playbook.ids)).get_indexer(frame["action"])
    keep = (rows >= 0) & (cols >= 0)
    last_day = pd.to_datetime(frame["last"]).dt.normalize()
    days = (day - last_day).dt.days.to_numpy(dtype=float)
    out[rows[keep], cols[keep]] = days[keep]
    return out
