"""Drivers of defection risk: SHAP contributions grouped by feature family, in business words.

The defection model's own SHAP values (LightGBM ``pred_contrib``, in log-odds) are summed by
feature family. The families that push an account's risk up most are its drivers; each is
phrased from the strongest feature inside the family (and the second strongest, when it
weighs at least half as much) with the account's own figures, and tied to the defection
cause the feature points to (from the phrasebook).

Everything is computed on arrays for all accounts at once; only the top drivers' phrases are
formatted row by row, one feature at a time. The one-account twin on plain floats is
:func:`kam.serving.decisions.one_row.row_drivers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kam.models.feature_spec import FeatureSpec
from kam.serving.decisions.phrasebook import Phrasebook
from kam.serving.decisions.vocabulary import (
    CAUSES,
    EVIDENCE_CODE,
    ROOT_CAUSES,
    cause_code,
)

# Families that shift the baseline risk but give a manager nothing to act on.
NOT_ACTIONABLE = ("account", "season")
DEFAULT_TOP = 3
# A second feature joins the phrase when it weighs at least this share of the strongest.
SECOND_FEATURE_SHARE = 0.5
# Families contributing less than this (log-odds) are not reported as drivers.
MIN_CONTRIBUTION = 0.01
# Root-cause evidence (log-odds) a symptom needs before it is put down to that cause.
EVIDENCE_MIN = 0.02
# The missing entry for np.where on object columns (numpy's typing takes no bare None)
_NONE = np.array(None, dtype=object)


@dataclass(frozen=True)
class Drivers:
    """Top risk drivers of each account, as (accounts x slots) arrays; slot 0 is the strongest.

    Empty slots (fewer families push risk up than there are slots) hold code -1, NaN and None.

    Attributes
    ----------
    families
        Driver family names (``families[code]``).
    feature_names
        Model feature names (``feature_names[code]``).
    family_code, feature_code, cause_code
        Integer codes per slot: family, strongest feature of the family, cause
        (index into :data:`kam.serving.decisions.vocabulary.CAUSES`).
    contribution
        Sum of the family's SHAP contributions, in log-odds of defection.
    phrase
        The driver in business words, with the account's figures.
    phrase_zh
        The same in Chinese, with the same figures.
    cause_strength
        (accounts x causes) summed positive contributions of the features pointing to each
        cause: how strongly each cause pushes the account's risk up.
    """

    families: tuple[str, ...]
    feature_names: tuple[str, ...]
    family_code: np.ndarray
    feature_code: np.ndarray
    cause_code: np.ndarray
    contribution: np.ndarray
    phrase: np.ndarray
    cause_strength: np.ndarray
    phrase_zh: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.contribution)

    def records(self, i: int) -> list[dict[str, object]]:
        """Account ``i``'s drivers as dicts: family, cause, feature, contribution, phrase,
        phrase_zh."""
        out: list[dict[str, object]] = []
        for s in range(self.contribution.shape[1]):
            code = int(self.family_code[i, s])
            if code < 0:
                break
            out.append(
                {
                    "family": self.families[code],
                    "cause": CAUSES[int(self.cause_code[i, s])],
                    "feature": self.feature_names[int(self.feature_code[i, s])],
                    "contribution": round(float(self.contribution[i, s]), 4),
                    "phrase": str(self.phrase[i, s]),
                    "phrase_zh": None if self.phrase_zh is None else str(self.phrase_zh[i, s]),
                }
            )
        return out

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        """Phrase and cause of each account's strongest driver (None where there is none)."""
        has = self.family_code[:, 0] >= 0
        cause = np.array(CAUSES, dtype=object)[np.where(has, self.cause_code[:, 0], 0)]
        return (
            np.where(has, self.phrase[:, 0], _NONE).astype(object),
            np.where(has, cause, _NONE).astype(object),
        )

    def top_zh(self) -> np.ndarray:
        """The Chinese phrase of each account's strongest driver (None where there is none)."""
        has = self.family_code[:, 0] >= 0
        if self.phrase_zh is None:
            return np.full(len(has), None, dtype=object)
        return np.where(has, self.phrase_zh[:, 0], _NONE).astype(object)


def driver_families(spec: FeatureSpec, exclude: Sequence[str] = NOT_ACTIONABLE) -> list[str]:
    """The spec's feature families that can drive risk, in the spec's order."""
    families = [spec.families.get(n, "other") for n in spec.names]
    return [f for f in dict.fromkeys(families) if f not in exclude]


def compute_drivers(
    contributions: np.ndarray,
    spec: FeatureSpec,
    values: Mapping[str, np.ndarray],
    phrasebook: Phrasebook,
    *,
    top: int = DEFAULT_TOP,
    exclude_families: Sequence[str] = NOT_ACTIONABLE,
    min_contribution: float = MIN_CONTRIBUTION,
) -> Drivers:
    """Group SHAP contributions by family and phrase the families that push risk up.

    Each driver's cause is the cause of its strongest feature for this account (see
    :func:`feature_causes`); ``cause_strength`` sums, by the cause they point to, the
    contributions of the driving features that push risk up.

    Parameters
    ----------
    contributions
        ``Scorer.contributions(x)``: (accounts x (features + 1)) log-odds, last column bias.
    spec
        The model's feature spec (names and families).
    values
        Feature name -> float array over the same accounts, for the phrases' figures (may hold
        catalog features the model does not use).
    phrasebook
        The phrase catalog.
    top
        Number of driver slots per account.
    exclude_families
        Families never reported as drivers (account profile, season).
    min_contribution
        A family drives risk only when its summed contribution exceeds this (log-odds).

    Returns
    -------
    Drivers
    """
    plan = driver_plan(spec, phrasebook, tuple(exclude_families))
    names = plan.names
    contrib = np.asarray(contributions, dtype=float)[:, : len(names)]
    n = len(contrib)
    cause_of = feature_causes(contrib, plan, values, phrasebook)

    nf = len(plan.families)
    family_sum, best, top1, top2, runner_up = _strongest_by_family(contrib, plan)
    joins = (top2 > 0) & (top2 >= SECOND_FEATURE_SHARE * top1)
    second = np.where(joins, runner_up, -1)

    k = min(top, nf)
    if k:
        slot_family = np.argsort(-family_sum, axis=1, kind="stable")[:, :k]
    else:
        slot_family = np.zeros((n, 0), dtype=np.int64)
    slot_contrib = np.take_along_axis(family_sum, slot_family, axis=1)
    valid = slot_contrib > min_contribution
    slot_best = np.take_along_axis(best, slot_family, axis=1)
    slot_second = np.take_along_axis(second, slot_family, axis=1)
    slot_cause = np.take_along_axis(cause_of, slot_best, axis=1)

    phrase = np.full((n, top), None, dtype=object)
    phrase_zh = np.full((n, top), None, dtype=object)
    chinese = phrasebook.in_language("zh-CN")
    family_code = np.full((n, top), -1, dtype=np.int64)
    feature_code = np.full((n, top), -1, dtype=np.int64)
    cause_code = np.full((n, top), -1, dtype=np.int64)
    contribution = np.full((n, top), np.nan)
    family_code[:, :k] = np.where(valid, slot_family, -1)
    feature_code[:, :k] = np.where(valid, slot_best, -1)
    cause_code[:, :k] = np.where(valid, slot_cause, -1)
    contribution[:, :k] = np.where(valid, slot_contrib, np.nan)
    for s in range(k):
        phrase[:, s] = _phrase_slot(
            valid[:, s], slot_best[:, s], slot_second[:, s], names, values, phrasebook
        )
        phrase_zh[:, s] = _phrase_slot(
            valid[:, s], slot_best[:, s], slot_second[:, s], names, values, chinese
        )

    return Drivers(
        families=plan.families,
        feature_names=names,
        family_code=family_code,
        feature_code=feature_code,
        cause_code=cause_code,
        contribution=contribution,
        phrase=phrase,
        # how strongly each cause drives the risk up: what pulls risk down does not offset it
        cause_strength=_sum_by_cause(
            np.clip(contrib, 0.0, None), cause_of, plan.driving, len(CAUSES)
        ),
        phrase_zh=phrase_zh,
    )


@dataclass(frozen=True)
class DriverPlan:
    """What a (feature spec, phrasebook) pair fixes once: families, columns and causes.

    Attributes
    ----------
    names, families
        The model's feature names, in column order; the driver families (less the excluded).
    columns, member
        Per family, the codes of its features; the same as a (families x features) mask.
    driving
        Per feature, whether its family can drive risk.
    base_cause
        Per feature, its cause code unless the phrasing that applies says otherwise.
    conditional
        The features whose cause depends on the phrasing that applies.
    fallback
        Per feature, the cause a symptom takes when the evidence is not clear.
    family_of, base_causes, fallbacks
        The same facts as plain Python values, for one row at a time: each feature's driver
        family code (-1 when not driving), base cause and fallback cause.
    """

    names: tuple[str, ...]
    families: tuple[str, ...]
    columns: tuple[np.ndarray, ...]
    driving: np.ndarray
    member: np.ndarray
    base_cause: np.ndarray
    conditional: tuple[int, ...]
    fallback: np.ndarray
    family_of: tuple[int, ...]
    base_causes: tuple[int, ...]
    fallbacks: tuple[int, ...]


_PLANS: dict[tuple[int, int, tuple[str, ...]], tuple[FeatureSpec, Phrasebook, DriverPlan]] = {}


def driver_plan(
    spec: FeatureSpec, phrasebook: Phrasebook, exclude: tuple[str, ...]
) -> DriverPlan:
    """The plan of a feature spec and phrasebook, built once and then reused.

    The online path scores one row at a time, so a few plans are kept.

    Parameters
    ----------
    spec
        The model's feature spec.
    phrasebook
        The phrase catalog.
    exclude
        Families never reported as drivers.

    Returns
    -------
    DriverPlan
    """
    key = (id(spec), id(phrasebook), exclude)
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is spec and hit[1] is phrasebook:
        return hit[2]
    names = tuple(spec.names)
    families = tuple(driver_families(spec, exclude))
    member = [spec.families.get(name, "other") for name in names]
    base = np.empty(len(names), dtype=np.int64)
    fallback = np.empty(len(names), dtype=np.int64)
    conditional = []
    for j, name in enumerate(names):
        base[j] = cause_code(phrasebook.causes.get(name, "relationship"))
        fallback[j] = CAUSES.index(phrasebook.otherwise.get(name, "relationship"))
        if any(p.cause for p in phrasebook.phrasings.get(name, ())):
            conditional.append(j)
    plan = DriverPlan(
        names=names,
        families=families,
        columns=tuple(
            np.array([j for j, f in enumerate(member) if f == fam], dtype=np.int64)
            for fam in families
        ),
        driving=np.isin(np.array(member, dtype=object), families),
        member=np.array([[f == fam for f in member] for fam in families], dtype=bool).reshape(
            len(families), len(names)
        ),
        base_cause=base,
        conditional=tuple(conditional),
        fallback=fallback,
        family_of=tuple(families.index(f) if f in families else -1 for f in member),
        base_causes=tuple(base.tolist()),
        fallbacks=tuple(fallback.tolist()),
    )
    if len(_PLANS) >= 16:
        _PLANS.clear()
    _PLANS[key] = (spec, phrasebook, plan)
    return plan


# Below this many accounts the strongest features are found in one pass over an
# (accounts x families x features) array; above, family by family to bound the memory.
_ONE_PASS_ROWS = 256


def _strongest_by_family(
    contrib: np.ndarray, plan: DriverPlan
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per account and family: summed contribution, strongest and runner-up feature (codes,
    -1 when the family has one feature) and their contributions."""
    n, nf = len(contrib), len(plan.families)
    if n <= _ONE_PASS_ROWS:
        masked = np.where(plan.member[None, :, :], contrib[:, None, :], -np.inf)
        order = np.argsort(-masked, axis=2, kind="stable")[:, :, :2]
        top = np.take_along_axis(masked, order, axis=2)
        runner = np.where(np.isfinite(top[:, :, 1]), order[:, :, 1], -1)
        family_sum = contrib @ plan.member.T.astype(float)
        return family_sum, order[:, :, 0], top[:, :, 0], top[:, :, 1], runner
    family_sum = np.zeros((n, nf))
    best = np.zeros((n, nf), dtype=np.int64)
    runner = np.full((n, nf), -1, dtype=np.int64)
    top1 = np.zeros((n, nf))
    top2 = np.full((n, nf), -np.inf)
    rows = np.arange(n)
    for j, cols in enumerate(plan.columns):
        block = contrib[:, cols]
        family_sum[:, j] = block.sum(axis=1)
        if len(cols) == 1:
            best[:, j] = cols[0]
            top1[:, j] = block[:, 0]
            continue
        order = np.argsort(-block, axis=1, kind="stable")[:, :2]
        best[:, j] = cols[order[:, 0]]
        runner[:, j] = cols[order[:, 1]]
        top1[:, j] = block[rows, order[:, 0]]
        top2[:, j] = block[rows, order[:, 1]]
    return family_sum, best, top1, top2, runner


def _sum_by_cause(
    contrib: np.ndarray, cause_of: np.ndarray, driving: np.ndarray, k: int
) -> np.ndarray:
    """(accounts x k) sums of the driving features' contributions by their cause code."""
    onehot = cause_of[:, :, None] == np.arange(k)
    return np.einsum("np,npc->nc", np.where(driving, contrib, 0.0), onehot)


def feature_causes(
    contrib: np.ndarray,
    plan: DriverPlan,
    values: Mapping[str, np.ndarray],
    phrasebook: Phrasebook,
) -> np.ndarray:
    """The cause each feature points to for each account: (accounts x features) cause codes.

    Fixed causes come from the phrasebook, conditional ones from the phrasing that applies to
    the account. Symptoms (``evidence``) take the root cause whose features push the account's
    risk up most, net of those that pull it down, when that push exceeds
    :data:`EVIDENCE_MIN`; otherwise their ``otherwise`` cause.
    """
    n = len(contrib)
    cause_of = np.repeat(plan.base_cause[None, :], n, axis=0)
    for j in plan.conditional:
        cause_of[:, j] = phrasebook.cause_codes(plan.names[j], values, n)
    symptom = cause_of == EVIDENCE_CODE
    if symptom.any():
        evidence = _sum_by_cause(contrib, cause_of, plan.driving, len(ROOT_CAUSES))
        strongest = np.argmax(evidence, axis=1)
        clear = evidence[np.arange(n), strongest] > EVIDENCE_MIN
        follows = np.where(clear[:, None], strongest[:, None], plan.fallback[None, :])
        cause_of = np.where(symptom, follows, cause_of)
    return cause_of


def _phrase_slot(
    valid: np.ndarray,
    best: np.ndarray,
    second: np.ndarray,
    names: Sequence[str],
    values: Mapping[str, np.ndarray],
    phrasebook: Phrasebook,
) -> np.ndarray:
    """Phrases of one driver slot, rendered one feature at a time."""
    out = np.full(len(valid), None, dtype=object)
    rows = np.flatnonzero(valid)
    if not rows.size:
        return out
    for code in np.unique(best[rows]):
        at = rows[best[rows] == code]
        out[at] = phrasebook.render(names[code], values, at)
    extra = rows[second[rows] >= 0]
    for code in np.unique(second[extra]):
        at = extra[second[extra] == code]
        # the runner-up joins only when it says something: a real phrasing, new parts only
        said = phrasebook.choose(names[code], values, at) >= 0
        at = at[said]
        more = phrasebook.render(names[code], values, at)
        out[at] = [
            join_phrases(a, b, phrasebook.separator)
            for a, b in zip(out[at].tolist(), more.tolist(), strict=True)
        ]
    return out


def join_phrases(first: str, second: str, separator: str = "; ") -> str:
    """The strongest feature's phrase followed by the parts of the runner-up's it lacks.

    Parameters
    ----------
    first, second
        Phrases of the strongest feature and of the runner-up; parts are separated by
        ``separator`` (the language's: ``"; "`` in English, ``"；"`` in Chinese).

    Returns
    -------
    str
    """
    parts = first.split(separator)
    new = [p for p in second.split(separator) if p not in parts]
    return separator.join(parts + new)
