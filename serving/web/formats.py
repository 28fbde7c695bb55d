"""How the managers' page writes numbers, shares, amounts and dates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from fastapi import Request

# The currency comes from ``settings.currency`` when the service settings define one.
DEFAULT_CURRENCY = "¥"


def finite(value: Any) -> float | None:
    """A finite float, or None for missing, NaN and infinite values."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Formats:
    """How numbers, shares and dates are written on the page."""

    currency: str = DEFAULT_CURRENCY

    def money(self, value: Any) -> str:
        """Whole currency units with thousands separators: ``¥1,234,567``."""
        number = finite(value)
        if number is None:
            return "–"
        sign = "−" if number < -0.5 else ""
        return f"{sign}{self.currency}{abs(number):,.0f}"

    def compact(self, value: Any) -> str:
        """A short amount for chart axes: ``¥35k``, ``¥1.2M``."""
        number = finite(value)
        if number is None:
            return "–"
        for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(number) >= size:
                scaled = number / size
                text = f"{scaled:.0f}" if abs(scaled) >= 10 else f"{scaled:.1f}".rstrip("0")
                return f"{self.currency}{text.rstrip('.')}{suffix}"
        return f"{self.currency}{number:,.0f}"

    @staticmethod
    def pct(value: Any, digits: int = 1) -> str:
        """A share 0..1 as a percentage: ``37.5%``."""
        number = finite(value)
        return "–" if number is None else f"{number * 100:.{digits}f}%"

    @staticmethod
    def count(value: Any) -> str:
        """A whole number with thousands separators."""
        number = finite(value)
        return "–" if number is None else f"{number:,.0f}"

    @staticmethod
    def day(value: Any) -> str:
        """A date as ``YYYY-MM-DD``."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError):
            return str(value)
        return "–" if pd.isna(stamp) else stamp.date().isoformat()


def currency_of(request: Request) -> str:
    """The currency symbol of the service settings, else :data:`DEFAULT_CURRENCY`."""
    settings = request.app.state.settings
    return str(getattr(settings, "currency", None) or DEFAULT_CURRENCY)
