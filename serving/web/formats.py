"""How the managers' page writes numbers, shares, amounts and dates, in the page's language.

Babel writes them per locale: ``¥1,234,567`` and ``2025-12-31`` in English; in Chinese large
amounts in 万 and 亿 (``¥123.5万``, ``¥1.23亿``), as managers read them, and dates as
``2025年12月31日``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from babel.dates import format_date
from babel.numbers import format_compact_decimal, format_decimal
from fastapi import Request

from kam.serving.i18n.languages import LOCALES
from kam.serving.i18n.messages import translator

# The currency comes from ``settings.currency`` when the service settings define one.
DEFAULT_CURRENCY = "¥"
# From here on, Chinese amounts are written in 万 (ten thousands) and 亿 (hundred millions).
WAN_FROM = 100_000


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
    """How numbers, shares and dates are written on the page, in one language."""

    currency: str = DEFAULT_CURRENCY
    language: str = "en"

    @property
    def locale(self) -> str:
        return LOCALES.get(self.language, "en")

    def say(self, message: str, /, **fields: Any) -> str:
        """A message of the catalogs in the page's language, ``%(name)s`` fields filled."""
        return translator(self.language).gettext(message, **fields)

    def money(self, value: Any) -> str:
        """Whole currency units: ``¥1,234,567``; in Chinese ``¥123.5万`` from 100,000 up."""
        number = finite(value)
        if number is None:
            return "–"
        sign = "−" if number < -0.5 else ""
        size = abs(number)
        if self.language == "zh-CN" and size >= WAN_FROM:
            digits = 2 if size >= 1e8 else 1
            text = format_compact_decimal(size, locale=self.locale, fraction_digits=digits)
            return f"{sign}{self.currency}{text}"
        return f"{sign}{self.currency}{format_decimal(round(size), '#,##0', locale=self.locale)}"

    def compact(self, value: Any) -> str:
        """A short amount for chart axes: ``¥35k``, ``¥1.2M``; in Chinese ``¥3.5万``."""
        number = finite(value)
        if number is None:
            return "–"
        if self.language == "zh-CN":
            if abs(number) < 10_000:
                whole = format_decimal(round(number), "#,##0", locale=self.locale)
                return f"{self.currency}{whole}"
            text = format_compact_decimal(number, locale=self.locale, fraction_digits=1)
            return f"{self.currency}{text}"
        for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(number) >= size:
                scaled = number / size
                text = f"{scaled:.0f}" if abs(scaled) >= 10 else f"{scaled:.1f}".rstrip("0")
                return f"{self.currency}{text.rstrip('.')}{suffix}"
        return f"{self.currency}{number:,.0f}"

    def pct(self, value: Any, digits: int = 1) -> str:
        """A share 0..1 as a percentage: ``37.5%``."""
        number = finite(value)
        if number is None:
            return "–"
        pattern = "0." + "0" * digits if digits else "0"
        return f"{format_decimal(number * 100, pattern, locale=self.locale)}%"

    def count(self, value: Any) -> str:
        """A whole number with thousands separators."""
        number = finite(value)
        return "–" if number is None else format_decimal(round(number), "#,##0", locale=self.locale)

    def day(self, value: Any) -> str:
        """A date: ``2025-12-31`` in English, ``2025年12月31日`` in Chinese."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError):
            return str(value)
        if self.language == "zh-CN" and not pd.isna(stamp):
            return format_date(stamp.date(), format="long", locale=self.locale)
        return "–" if pd.isna(stamp) else stamp.date().isoformat()

    @staticmethod
    def iso(value: Any) -> str:
        """A date as ``YYYY-MM-DD``, for machine-readable attributes (``<time datetime>``)."""
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError):
            return ""
        return "" if pd.isna(stamp) else stamp.date().isoformat()


def currency_of(request: Request) -> str:
    """The currency symbol of the service settings, else :data:`DEFAULT_CURRENCY`."""
    settings = request.app.state.settings
    return str(getattr(settings, "currency", None) or DEFAULT_CURRENCY)
