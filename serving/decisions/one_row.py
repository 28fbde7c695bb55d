"""One-row twins of the decision rules: the same rules for one account, on plain floats.

The vectorised rules (:mod:`~kam.serving.decisions.drivers`,
:mod:`~kam.serving.decisions.recommend`, :mod:`~kam.serving.decisions.stages`,
:mod:`~kam.serving.decisions.phrasebook`, :mod:`~kam.serving.decisions.conditions`) are the
reference. Scoring one posted row, numpy's fixed cost per call outweighs the arithmetic many
times over: a row explained here costs about a third of the vectorised path (README, "Serving
speed"). Small batches of posted rows (``kam.models.scorer.SINGLE_ROW_MAX`` rows at most) are
therefore explained here, row by row.

Each function names the rule it mirrors, and ``tests/serving/decisions/
test_one_row_conformance.py`` holds every pair equal on every account of a simulated book, also
with figures blanked out. A change to a rule is made in both places.

A ``row`` maps feature names to floats (NaN = no value); a feature absent from it is not in the
data at all, as a feature absent from the vectorised ``values``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kam.models.feature_spec import FeatureSpec
from kam.serving.decisions.conditions import OPERATORS, Condition
from kam.serving.decisions.drivers import (
    DEFAULT_TOP,
    EVIDENCE_MIN,
    MIN_CONTRIBUTION,
    NOT_ACTIONABLE,
    SECOND_FEATURE_SHARE,
    DriverPlan,
    driver_plan,
    join_phrases,
)
from kam.serving.decisions.evidence import SUPPORTED, Evidence, evidence_for, saving_one
from kam.serving.decisions.formats import settled
from kam.serving.decisions.phrasebook import Phrasebook, Phrasing, describe
from kam.serving.decisions.playbook import Playbook
from kam.serving.decisions.recommend import (
    DEFAULT_MAX_ACTIONS,
    TIER_CODE,
    UNKNOWN_TIER,
    action_plan,
    evidence_fields,
    tier_reason,
)
from kam.serving.decisions.stages import (
    ERODING_QUARTER,
    ERODING_YEAR,
    STOPPED_OVERDUE,
    YEAR_DAYS,
)
from kam.serving.decisions.vocabulary import CAUSES, EVIDENCE_CODE, ROOT_CAUSES, cause_code


# ------------------------------------------------------------------------------------------------
# Conditions and phrases
# ------------------------------------------------------------------------------------------------
def holds_one(condition: Condition, row: Mapping[str, float]) -> bool:
    """One-row twin of :meth:`kam.serving.decisions.conditions.Condition.holds`.

    Parameters
    ----------
    condition, row
        The condition, and feature name -> float (NaN = no value).

    Returns
    -------
    bool
        Whether it holds; false when the feature is absent from ``row``.
    """
    v = row.get(condition.feature)
    if v is None:
        return False
    if condition.op == "missing":
        return math.isnan(v)
    # Python's comparisons are false on NaN, as numpy's are; "!=" is the exception
    holds = OPERATORS[condition.op][1](settled(v), condition.value)
    return holds and not (condition.op == "!=" and math.isnan(v))


def render_phrasing_one(phrasing: Phrasing, row: Mapping[str, float]) -> str:
    """One-row twin of :meth:`kam.serving.decisions.phrasebook.Phrasing.render`.

    Parameters
    ----------
    phrasing
        The phrasing; all its placeholders must have values in ``row``.
    row
        Feature name -> float.

    Returns
    -------
    str
    """
    return "".join(
        piece.literal if piece.feature is None else piece.say(row[piece.feature])
        for piece in phrasing.pieces
    )


def choose_one(phrasebook: Phrasebook, feature: str, row: Mapping[str, float]) -> int:
    """One-row twin of :meth:`kam.serving.decisions.phrasebook.Phrasebook.choose`.

    Parameters
    ----------
    phrasebook, feature
        The phrase catalog and the feature to phrase.
    row
        Feature name -> float (NaN = no value).

    Returns
    -------
    int
        Index of the first phrasing whose conditions hold and whose placeholders all have
        values; -1 for the generic description.
    """
    for k, phrasing in enumerate(phrasebook.phrasings.get(feature, ())):
        if any(name not in row for name in phrasing.uses):
            continue
        if all(holds_one(c, row) for c in phrasing.conditions) and not any(
            math.isnan(row[name]) for name in phrasing.uses
        ):
            return k
    return -1


def render_one(phrasebook: Phrasebook, feature: str, row: Mapping[str, float]) -> str:
    """One-row twin of :meth:`kam.serving.decisions.phrasebook.Phrasebook.render`.

    Parameters
    ----------
    phrasebook, feature
        The phrase catalog and the feature to phrase.
    row
        Feature name -> float (NaN = no value).

    Returns
    -------
    str
        The phrase with the account's figures, or the catalog description with the value.
    """
    k = choose_one(phrasebook, feature, row)
    if k >= 0:
        return render_phrasing_one(phrasebook.phrasings[feature][k], row)
    return describe(feature, row.get(feature), phrasebook)


def cause_code_one(phrasebook: Phrasebook, feature: str, row: Mapping[str, float]) -> int:
    """One-row twin of :meth:`kam.serving.decisions.phrasebook.Phrasebook.cause_codes`.

    Parameters
    ----------
    phrasebook, feature
        The phrase catalog and the feature.
    row
        Feature name -> float (NaN = no value).

    Returns
    -------
    int
        Index into :data:`kam.serving.decisions.vocabulary.CAUSES`, or ``EVIDENCE_CODE``
        where the cause follows the evidence.
    """
    phrasings = phrasebook.phrasings.get(feature, ())
    if any(p.cause for p in phrasings):
        k = choose_one(phrasebook, feature, row)
        cause = phrasings[k].cause if k >= 0 else None
        if cause:
            return cause_code(cause)
    return cause_code(phrasebook.causes.get(feature, "relationship"))


# ------------------------------------------------------------------------------------------------
# Drivers
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowDriver:
    """One driver of one account: a slot of :class:`~kam.serving.decisions.drivers.Drivers`,
    as plain values (family, feature and cause codes, contribution, phrase)."""

    family: int
    feature: int
    cause: int
    contribution: float
    phrase: str
    phrase_zh: str | None = None


@dataclass(frozen=True)
class RowDrivers:
    """The drivers of one account: what :class:`~kam.serving.decisions.drivers.Drivers` holds
    for one row, without arrays."""

    families: tuple[str, ...]
    feature_names: tuple[str, ...]
    slots: tuple[RowDriver, ...]
    cause_strength: tuple[float, ...]

    def records(self) -> list[dict[str, object]]:
        """One-row twin of :meth:`kam.serving.decisions.drivers.Drivers.records`.

        Returns
        -------
        list of dict
            Per driver: family, cause, feature, contribution, phrase, phrase_zh.
        """
        return [
            {
                "family": self.families[d.family],
                "cause": CAUSES[d.cause],
                "feature": self.feature_names[d.feature],
                "contribution": round(d.contribution, 4),
                "phrase": d.phrase,
                "phrase_zh": d.phrase_zh,
            }
            for d in self.slots
        ]


def feature_causes_one(
    contrib: Sequence[float],
    plan: DriverPlan,
    row: Mapping[str, float],
    phrasebook: Phrasebook,
) -> list[int]:
    """One-row twin of :func:`kam.serving.decisions.drivers.feature_causes`.

    Parameters
    ----------
    contrib
        The account's contribution of each of ``plan.names``.
    plan
        :func:`kam.serving.decisions.drivers.driver_plan` of the model and phrasebook.
    row
        Feature name -> float (NaN = no value).
    phrasebook
        The phrase catalog.

    Returns
    -------
    list of int
        The cause code each feature points to for this account.
    """
    cause_of = list(plan.base_causes)
    for j in plan.conditional:
        cause_of[j] = cause_code_one(phrasebook, plan.names[j], row)
    if EVIDENCE_CODE in cause_of:
        evidence = [0.0] * len(ROOT_CAUSES)
        for j, c in enumerate(contrib):
            cause = cause_of[j]
            if plan.family_of[j] >= 0 and 0 <= cause < len(ROOT_CAUSES):
                evidence[cause] += c
        # the first of equal maxima, as numpy's argmax
        strongest = max(range(len(evidence)), key=evidence.__getitem__)
        clear = evidence[strongest] > EVIDENCE_MIN
        for j, cause in enumerate(cause_of):
            if cause == EVIDENCE_CODE:
                cause_of[j] = strongest if clear else plan.fallbacks[j]
    return cause_of


def row_drivers(
    contributions: Sequence[float],
    spec: FeatureSpec,
    row: Mapping[str, float],
    phrasebook: Phrasebook,
    *,
    top: int = DEFAULT_TOP,
    exclude_families: Sequence[str] = NOT_ACTIONABLE,
    min_contribution: float = MIN_CONTRIBUTION,
) -> RowDrivers:
    """One-row twin of :func:`kam.serving.decisions.drivers.compute_drivers`.

    Parameters
    ----------
    contributions
        One row of ``Scorer.contributions`` (features, then the bias).
    spec, phrasebook, top, exclude_families, min_contribution
        As for :func:`~kam.serving.decisions.drivers.compute_drivers`.
    row
        Feature name -> float (NaN = no value), for the phrases' figures.

    Returns
    -------
    RowDrivers
    """
    plan = driver_plan(spec, phrasebook, tuple(exclude_families))
    chinese = phrasebook.in_language("zh-CN")
    names = plan.names
    contrib = [float(c) for c in contributions[: len(names)]]
    cause_of = feature_causes_one(contrib, plan, row, phrasebook)

    nf = len(plan.families)
    family_sum = [0.0] * nf
    best = [-1] * nf  # strongest feature of each family, then the runner-up
    runner = [-1] * nf
    for j, c in enumerate(contrib):
        f = plan.family_of[j]
        if f < 0:
            continue
        family_sum[f] += c
        b = best[f]
        if b < 0 or c > contrib[b]:
            best[f], runner[f] = j, b
        elif runner[f] < 0 or c > contrib[runner[f]]:
            runner[f] = j

    slots: list[RowDriver] = []
    # stable descending order, as numpy's stable argsort of the negated sums
    for f in sorted(range(nf), key=lambda f: -family_sum[f])[: min(top, nf)]:
        if not family_sum[f] > min_contribution:
            break
        b, r = best[f], runner[f]
        phrase = render_one(phrasebook, names[b], row)
        phrase_zh = render_one(chinese, names[b], row)
        joins = r >= 0 and contrib[r] > 0 and contrib[r] >= SECOND_FEATURE_SHARE * contrib[b]
        # the runner-up joins only when it says something: a real phrasing, new parts only
        if joins and choose_one(phrasebook, names[r], row) >= 0:
            phrase = join_phrases(phrase, render_one(phrasebook, names[r], row))
            phrase_zh = join_phrases(
                phrase_zh, render_one(chinese, names[r], row), chinese.separator
            )
        slots.append(RowDriver(f, b, cause_of[b], family_sum[f], phrase, phrase_zh))

    strength = [0.0] * len(CAUSES)
    for j, c in enumerate(contrib):
        if plan.family_of[j] >= 0 and c > 0:
            strength[cause_of[j]] += c
    return RowDrivers(plan.families, names, tuple(slots), tuple(strength))


# ------------------------------------------------------------------------------------------------
# Recommended actions
# ------------------------------------------------------------------------------------------------
def recommend_row(
    playbook: Playbook,
    drivers: RowDrivers,
    row: Mapping[str, float],
    tier: str | None,
    as_of: dt.date,
    phrasebook: Phrasebook,
    *,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    evidence: Evidence | None = None,
    probability: float = math.nan,
    stake: float = math.nan,
) -> list[dict[str, Any]]:
    """One-row twin of :func:`kam.serving.decisions.recommend.recommend`, without history.

    The same matching and ranking; returns what
    :meth:`~kam.serving.decisions.recommend.Recommendations.records` gives for the account.

    Parameters
    ----------
    playbook, phrasebook, max_actions
        As for :func:`~kam.serving.decisions.recommend.recommend`.
    drivers
        The account's drivers (:func:`row_drivers`).
    row
        Feature name -> float (NaN = no value), for the trigger conditions and the reasons.
    tier
        The account's tier; None lets every tier's actions apply.
    as_of
        Scoring date; due dates count from it.
    evidence, probability, stake
        The actions' effect evidence, and the account's defection probability and value at
        stake, for the expected savings.

    Returns
    -------
    list of dict
        Per action: action_id, title, technique, owner, due_date, reason, cause, title_zh,
        reason_zh, and the expected saving with its evidence.
    """
    plan = action_plan(playbook, drivers.families, drivers.feature_names)
    evidence = evidence if evidence is not None else evidence_for(playbook)
    tier_code = TIER_CODE.get(tier, UNKNOWN_TIER)  # type: ignore[arg-type]
    holds = {c: holds_one(c, row) for c, _ in plan.conditions if c.feature in row}
    ranked: list[tuple[int, float, float, float, int, int, float, float]] = []
    for a, action in enumerate(playbook.actions):
        if not plan.tier_ok[a, tier_code] or evidence.status[a] == "harms":
            continue
        if not all(holds.get(c, True) for c in action.trigger.conditions):
            continue
        # the strongest of the account's drivers that triggers the action (first on ties)
        slot, best = -1, -math.inf
        for s, d in enumerate(drivers.slots):
            if (
                d.family in plan.families_of[a]
                or d.feature in plan.features_of[a]
                or d.cause in plan.causes_of[a]
            ) and d.contribution > best:
                slot, best = s, d.contribution
        needs = action.trigger.needs_driver
        if needs and slot < 0:
            continue
        score = best if needs else 0.0
        # conditions alone: the top driver, if any, is the reason
        reason_slot = slot if needs else (0 if drivers.slots else -1)
        primary = drivers.cause_strength[plan.cause_index[a]]
        saving, reduction = saving_one(evidence, a, probability, stake, drivers.cause_strength)
        known = math.isfinite(saving)
        group = (0 if evidence.status[a] == SUPPORTED else 1) if known else 2
        ranked.append((group, -saving if known else 0.0, -primary, -score, a,
                       reason_slot, saving, reduction))
    out: list[dict[str, Any]] = []
    for _, _, _, _, a, reason_slot, saving, reduction in sorted(ranked)[:max_actions]:
        action = playbook.actions[a]
        if reason_slot >= 0:
            reason = drivers.slots[reason_slot].phrase
            reason_zh = drivers.slots[reason_slot].phrase_zh
        else:
            conditions = action.trigger.conditions
            if conditions and conditions[0].feature in row:
                reason = render_one(phrasebook, conditions[0].feature, row)
                reason_zh = render_one(
                    phrasebook.in_language("zh-CN"), conditions[0].feature, row
                )
            else:
                reason = tier_reason(tier, "en")
                reason_zh = tier_reason(tier, "zh-CN")
        out.append(
            {
                "action_id": action.id,
                "title": action.title,
                "technique": action.technique,
                "owner": action.owner,
                "due_date": (as_of + dt.timedelta(days=action.due_in_days)).isoformat(),
                "reason": reason,
                "cause": action.cause,
                "title_zh": action.said("title", "zh-CN"),
                "reason_zh": reason_zh,
                **evidence_fields(evidence, a, saving, reduction),
            }
        )
    return out


# ------------------------------------------------------------------------------------------------
# Relationship stage
# ------------------------------------------------------------------------------------------------
def relationship_stage_one(row: Mapping[str, float]) -> str:
    """One-row twin of :func:`kam.serving.decisions.stages.relationship_stage`.

    The same rules in the same order; a comparison with a missing value is false, as there.

    Parameters
    ----------
    row
        Feature name -> float (NaN = no value); absent features count as unknown.

    Returns
    -------
    str
        The stage name.
    """
    nan = math.nan
    tenure = row.get("tenure_days", nan)
    eroding = (
        row.get("revenue_yoy_90d", nan) <= ERODING_QUARTER
        and row.get("revenue_change_365d", nan) <= ERODING_YEAR
    ) or row.get("overdue_ratio", nan) >= STOPPED_OVERDUE
    if eroding:
        return "disintegrating"
    if tenure < YEAR_DAYS:
        return "exploratory"
    roles = row.get("contact_roles_180d", nan)
    if not math.isnan(roles):
        executive = row.get("executive_contact_recency_days", nan)
        if roles >= 5 and executive <= 90 and tenure >= 3 * YEAR_DAYS:
            return "integrated"
        if roles >= 3 and executive <= 180 and tenure >= 2 * YEAR_DAYS:
            return "interdependent"
        if roles >= 2 or row.get("contacts_180d", nan) >= 3:
            return "co-operative"
        return "basic"
    months = row.get("active_months_share_12m", nan)
    if tenure >= 3 * YEAR_DAYS and months >= 0.75 and row.get("categories_365d", nan) >= 3:
        return "interdependent"
    if tenure >= 2 * YEAR_DAYS and months >= 0.5:
        return "co-operative"
    return "basic"
