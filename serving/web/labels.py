"""Words the managers' page shows for the codes in the scores: tiers, families, causes, owners.

The codes and their words are defined once, in :mod:`kam.serving.decisions.vocabulary`; this
module adds what only the page shows (the quadrants).
"""

from __future__ import annotations

from kam.serving.decisions.vocabulary import (
    CAUSE_LABELS,
    FAMILY_LABELS,
    OWNER_LABELS,
    TECHNIQUE_LABELS,
    TIERS,
)

__all__ = [
    "CAUSE_LABELS",
    "FAMILY_LABELS",
    "OWNER_LABELS",
    "QUADRANTS",
    "TECHNIQUE_LABELS",
    "TIERS",
]

# The quadrants managers sort accounts into, by risk and value.
QUADRANTS = {
    "rescue": "high risk, high value: act now",
    "keep": "low risk, high value: protect",
    "let_go": "high risk, low value: serve at low cost",
    "grow": "low risk, low value: develop",
}
