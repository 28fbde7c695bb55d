"""Words the managers' page shows for the codes in the scores: tiers, families, causes, owners.

The codes and their words in each language are defined once, in
:mod:`kam.serving.decisions.vocabulary`; this module adds what only the page shows (the
quadrants).
"""

from __future__ import annotations

from kam.serving.decisions.vocabulary import (
    CAUSE_LABELS,
    FAMILY_LABELS,
    LABELS,
    OWNER_LABELS,
    TECHNIQUE_LABELS,
    TIERS,
)
from kam.serving.i18n.messages import N_

__all__ = [
    "CAUSE_LABELS",
    "FAMILY_LABELS",
    "LABELS",
    "OWNER_LABELS",
    "QUADRANTS",
    "QUADRANT_NAMES",
    "TECHNIQUE_LABELS",
    "TIERS",
]

# The quadrants managers sort accounts into, by risk and value (translated where shown).
QUADRANTS = {
    "rescue": N_("high risk, high value: act now"),
    "keep": N_("low risk, high value: protect"),
    "let_go": N_("high risk, low value: serve at low cost"),
    "grow": N_("low risk, low value: develop"),
}
# The data contract's complaint categories and severities, as the page shows them
COMPLAINT_WORDS = (
    N_("quality"), N_("delivery"), N_("billing"), N_("service"), N_("price"), N_("other"),
    N_("low"), N_("medium"), N_("high"), N_("critical"),
)
QUADRANT_NAMES = {
    "rescue": N_("rescue"),
    "keep": N_("keep"),
    "let_go": N_("let go"),
    "grow": N_("grow"),
}
