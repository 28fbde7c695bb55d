"""Calendar periods such as ``365d``, ``26w``, ``6mo`` or ``1y`` used for horizons and windows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import ibis.expr.types as ir

_PATTERN = re.compile(r"^\s*(\d+)\s*(d|w|mo|m|y)\s*$", re.IGNORECASE)
_UNITS = {"d": "day", "w": "week", "mo": "month", "m": "month", "y": "year"}


@dataclass(frozen=True)
class Period:
    """A length of calendar time: a number of days, weeks, months or years."""

    count: int
    unit: str  # one of day, week, month, year

    @classmethod
    def parse(cls, text: str | Period) -> Period:
        """Parse ``365d``, ``26w``, ``6mo`` (or ``6m``) or ``1y``."""
        if isinstance(text, Period):
            return text
        match = _PATTERN.match(str(text))
        if not match or int(match.group(1)) <= 0:
            raise ValueError(
                f"cannot read period {text!r}: use a positive number followed by "
                "d (days), w (weeks), mo (months) or y (years), e.g. 365d, 26w, 6mo, 1y"
            )
        return cls(int(match.group(1)), _UNITS[match.group(2).lower()])

    def offset(self) -> pd.DateOffset:
        """The period as a pandas offset (calendar-aware for months and years)."""
        if self.unit == "day":
            return pd.DateOffset(days=self.count)
        if self.unit == "week":
            return pd.DateOffset(weeks=self.count)
        if self.unit == "month":
            return pd.DateOffset(months=self.count)
        return pd.DateOffset(years=self.count)

    def ibis_interval(self) -> ir.IntervalScalar:
        """The period as an ibis interval literal."""
        import ibis

        unit = {"day": "days", "week": "weeks", "month": "months", "year": "years"}[self.unit]
        return ibis.interval(**{unit: self.count})

    def approx_days(self) -> float:
        """Approximate length in days (for rates and annualisation)."""
        per = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "year": 365.25}[self.unit]
        return self.count * per

    def __str__(self) -> str:
        suffix = {"day": "d", "week": "w", "month": "mo", "year": "y"}[self.unit]
        return f"{self.count}{suffix}"


# The activity window that takes every account with an order on or before as_of, however old.
EVER = "ever"


def parse_window(value: Period | str | None) -> Period | None:
    """An activity window: a period such as ``365d``, or None for ``ever`` (or None itself)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == EVER):
        return None
    return Period.parse(value)


def format_window(window: Period | None) -> str:
    """The text :func:`parse_window` reads back: ``365d``, or ``ever`` for None."""
    return EVER if window is None else str(window)
