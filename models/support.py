"""The range of each feature on a model's training rows, and the scored rows beyond it.

Past the edge of its training rows a tree holds the last value it learned: an account older,
longer silent or scored at a time of year that no training row had is scored as if it stood at
that edge, and only the statistical bases (BG/NBD's probability and expected revenue) carry
over. On a short purchase log that is most accounts (a log of nine months with a 26-week
horizon trains on customers at most three months old, then scores customers six to nine months
old), so scoring says so instead of leaving the user to find out from the outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kam.models.feature_spec import FeatureSpec

# key of the training ranges in the scorer's meta
SUPPORT_META = "feature_support"
# a feature is reported when at least this share of the scored accounts lies beyond its range
NOTABLE_SHARE = 0.25


class ExtrapolationWarning(UserWarning):
    """Many scored accounts lie beyond every training row on some features."""


@dataclass(frozen=True)
class Beyond:
    """A feature on which many scored rows lie outside the training rows' range."""

    name: str
    share: float
    low: float
    high: float
    seen_low: float
    seen_high: float


def feature_support(spec: FeatureSpec, x: np.ndarray) -> dict[str, list[float]]:
    """Lowest and highest value of each numeric feature on the training matrix ``x`` (missing
    values ignored; features never known in training are left out)."""
    categorical = set(spec.categorical_indices)
    support = {}
    for i, name in enumerate(spec.names):
        column = x[:, i]
        known = column[np.isfinite(column)]
        if i in categorical or known.size == 0:
            continue
        support[name] = [float(known.min()), float(known.max())]
    return support


def beyond_support(
    spec: FeatureSpec,
    x: np.ndarray,
    support: Mapping[str, Sequence[float]],
    *,
    min_share: float = NOTABLE_SHARE,
) -> list[Beyond]:
    """Features on which at least ``min_share`` of the rows of ``x`` (with a known value) lie
    outside the training range ``support``, the largest share first."""
    found = []
    for i, name in enumerate(spec.names):
        if name not in support or len(x) == 0:
            continue
        low, high = support[name]
        column = x[:, i]
        known = column[np.isfinite(column)]
        if known.size == 0:
            continue
        share = float(np.mean((known < low) | (known > high)))
        if share >= min_share:
            found.append(
                Beyond(name, share, low, high, float(known.min()), float(known.max()))
            )
    return sorted(found, key=lambda b: (-b.share, b.name))


def describe(found: Sequence[Beyond], accounts: int, *, limit: int = 4) -> str:
    """One sentence naming the features (at most ``limit``) and how far the rows go beyond."""
    parts = [
        f"{b.name} {b.share:.0%} (trained on {_number(b.low)}..{_number(b.high)}, here "
        f"{_number(b.seen_low)}..{_number(b.seen_high)})"
        for b in found[:limit]
    ]
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return (
        f"of the {accounts:,} scored accounts, many lie beyond every training row on: "
        + "; ".join(parts) + more
        + ". The trees score them as at the edge of what they saw, and only the BG/NBD bases "
        "reach beyond it: check these scores' level against later outcomes"
    )


def support_of(meta: Mapping[str, Any]) -> dict[str, list[float]]:
    """The training ranges a scorer's meta holds (none in bundles saved before they were kept)."""
    saved = meta.get(SUPPORT_META) or {}
    return {str(name): [float(v) for v in bounds] for name, bounds in saved.items()}


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{round(value, 3) + 0.0:g}"
