"""The words the decision rules speak: causes, techniques, owners, tiers, families and stages.

Each code is defined here once, with its English label where managers read one; the phrase
catalog, the playbook, the API schemas and the web pages import them from here. The ``Literal``
types validate catalog files and requests; the tuples (in the same order) give the integer codes
the vectorised rules use (``CAUSES[code]``).

The feature families are the exception: every feature's family is set in the feature catalog
(``features/catalog.py``), so :data:`FAMILIES` is read from there and only the labels live here.
The simulator (``features/synthetic/catalog.py``) keeps its own copy of the causes and owners,
as ``features`` must not import ``serving``; the tests hold the two equal.
"""

from __future__ import annotations

from typing import Literal, get_args

from kam.features.catalog import families

# The defection causes a driver points to: the three root causes of DOMAIN §2 and the
# relationship aggravators (single-threaded, no senior contact, turnover).
Cause = Literal["competitor_price", "unmet_needs", "unresolved_complaints", "relationship"]
CAUSES: tuple[str, ...] = get_args(Cause)
# The three root causes, the codes 0-2 (the order of CAUSES is relied on).
ROOT_CAUSES: tuple[str, ...] = CAUSES[:3]
CAUSE_LABELS: dict[str, str] = {
    "competitor_price": "a competitor wins on price or offer",
    "unmet_needs": "product or supply no longer meets needs",
    "unresolved_complaints": "complaints not resolved in time",
    "relationship": "thin relationship (single-threaded, no senior contact)",
}
# Symptoms (falling spend, sour contact sentiment) point to no cause of their own: they take the
# cause the account's root-cause evidence shows. In cause-code arrays they hold EVIDENCE_CODE
# until that is settled.
Evidence = Literal["evidence"]
EVIDENCE: str = get_args(Evidence)[0]
EVIDENCE_CODE = -2


def cause_code(cause: str) -> int:
    """The integer code of a cause name: its index in :data:`CAUSES`.

    Parameters
    ----------
    cause
        A name of :data:`CAUSES`, or :data:`EVIDENCE`.

    Returns
    -------
    int
        The index, or :data:`EVIDENCE_CODE` for ``evidence``.
    """
    return EVIDENCE_CODE if cause == EVIDENCE else CAUSES.index(cause)


# The seven retention techniques of key-account management, plus differentiated service by tier.
Technique = Literal[
    "build_relationship_network",
    "raise_relationship_level",
    "influence_purchasing_standard",
    "guarantee_product_quality",
    "raise_service_level",
    "guarantee_priority_supply",
    "keep_communication_open",
    "differentiated_service",
]
TECHNIQUES: tuple[str, ...] = get_args(Technique)
TECHNIQUE_LABELS: dict[str, str] = {
    "build_relationship_network": "Build a strong relationship network",
    "raise_relationship_level": "Raise the relationship level",
    "influence_purchasing_standard": "Influence the purchasing standard",
    "guarantee_product_quality": "Guarantee product quality",
    "raise_service_level": "Raise the service level",
    "guarantee_priority_supply": "Guarantee priority supply",
    "keep_communication_open": "Keep communication channels open",
    "differentiated_service": "Differentiated service by tier",
}

# Who owns an action: the iron triangle of account, solution and fulfilment responsible, or an
# executive sponsor.
Owner = Literal["AR", "SR", "FR", "executive sponsor"]
OWNERS: tuple[str, ...] = get_args(Owner)
OWNER_LABELS: dict[str, str] = {
    "AR": "account responsible",
    "SR": "solution responsible",
    "FR": "fulfilment responsible",
    "executive sponsor": "executive sponsor",
}

# A/B/C by cumulative share of predicted value (see stages.assign_tiers); the code is its label.
Tier = Literal["A", "B", "C"]
TIERS: tuple[str, ...] = get_args(Tier)

FAMILIES: tuple[str, ...] = tuple(families())
FAMILY_LABELS: dict[str, str] = {
    "spend": "Spend",
    "rhythm": "Order rhythm",
    "breadth": "Product breadth",
    "price": "Price and margin",
    "relationship": "Relationship",
    "service": "Service and complaints",
    "supply": "Supply and delivery",
    "account": "Account profile",
    "season": "Season",
}

# The relationship model's development stages (see stages.relationship_stage).
Stage = Literal[
    "exploratory",
    "basic",
    "co-operative",
    "interdependent",
    "integrated",
    "disintegrating",
]
STAGES: tuple[str, ...] = get_args(Stage)
STAGE_LABELS: dict[str, str] = {
    "exploratory": "first year of buying",
    "basic": "one seller, one buyer",
    "co-operative": "several people or buyer roles in contact",
    "interdependent": "several buyer roles, executive contact, years of buying",
    "integrated": "most buyer roles and recent executive contact, three years or more",
    "disintegrating": "spend eroding or orders stopped",
}
