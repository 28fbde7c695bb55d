"""Words the managers' page shows for the codes in the scores: tiers, families, causes, owners.

Each label table is a dict keyed by the code stored with the scores, so a shared vocabulary of
codes can replace the keys without touching the pages.
"""

from __future__ import annotations

TIERS = ("A", "B", "C")

FAMILY_LABELS = {
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
CAUSE_LABELS = {
    "competitor_price": "a competitor wins on price or offer",
    "unmet_needs": "product or supply no longer meets needs",
    "unresolved_complaints": "complaints not resolved in time",
    "relationship": "thin relationship (single-threaded, no senior contact)",
}
TECHNIQUE_LABELS = {
    "build_relationship_network": "Build a strong relationship network",
    "raise_relationship_level": "Raise the relationship level",
    "influence_purchasing_standard": "Influence the purchasing standard",
    "guarantee_product_quality": "Guarantee product quality",
    "raise_service_level": "Raise the service level",
    "guarantee_priority_supply": "Guarantee priority supply",
    "keep_communication_open": "Keep communication channels open",
    "differentiated_service": "Differentiated service by tier",
}
OWNER_LABELS = {
    "AR": "account responsible",
    "SR": "solution responsible",
    "FR": "fulfilment responsible",
    "executive sponsor": "executive sponsor",
}
# The quadrants managers sort accounts into, by risk and value.
QUADRANTS = {
    "rescue": "high risk, high value: act now",
    "keep": "low risk, high value: protect",
    "let_go": "high risk, low value: serve at low cost",
    "grow": "low risk, low value: develop",
}
