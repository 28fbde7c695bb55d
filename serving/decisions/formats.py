"""How a figure is written inside a phrase: the placeholder formats of the phrase catalog.

A phrasing's template (``"no order for {recency_days:days} days"``) is split into
:class:`Piece` objects: literal text, and placeholders naming a feature, a format of
:data:`FORMATS` and optionally a noun that agrees with the number (``{complaints_open:count:
complaint}`` says "1 complaint", "2 complaints").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _whole(v: float) -> str:
    return f"{round(v):,d}"


def _money(v: float) -> str:
    a = abs(v)
    sign = "-" if v < 0 else ""
    if a >= 1e6:
        return f"{sign}{a / 1e6:.1f}m"
    if a >= 1e4:
        return f"{sign}{a / 1e3:.0f}k"
    if a >= 1e3:
        return f"{sign}{a / 1e3:.1f}k"
    return f"{sign}{a:.0f}"


def _points(v: float) -> str:
    a = abs(v) * 100
    return f"{a:.0f}" if a >= 1 else f"{a:.1f}"


def _change(v: float) -> str:
    # symmetric change s = (now - before) / (|now| + |before|); plain change = 2s / (1 - s)
    if v >= 1:
        return "from nothing"
    plain = abs(2 * v / (1 - v)) * 100
    return f"{plain:,.0f}%"


def _money_zh(v: float) -> str:
    # Chinese managers read large amounts in 万 (10^4) and 亿 (10^8)
    a = abs(v)
    sign = "-" if v < 0 else ""
    if a >= 1e8:
        return f"{sign}{a / 1e8:.1f}亿"
    if a >= 1e6:
        return f"{sign}{a / 1e4:.0f}万"
    if a >= 1e4:
        return f"{sign}{a / 1e4:.1f}万"
    return f"{sign}{a:,.0f}"


def _change_zh(v: float) -> str:
    return "从无到有" if v >= 1 else _change(v)


_FORMATS: dict[str, Callable[[float], str]] = {
    "days": _whole,
    "count": _whole,
    "pct": lambda v: f"{v * 100:.0f}%",
    "points": _points,
    "change": _change,
    "money": _money,
    "ratio": lambda v: f"{v:.1f}",
    "num": lambda v: f"{v:.1f}",
    "signed": lambda v: f"{v:+.2f}",
    "abs": lambda v: f"{abs(v):.2f}",
    "years": lambda v: f"{v / 365.25:.1f}",
    "months12": lambda v: f"{round(v * 12):d}",
}
FORMATS: tuple[str, ...] = tuple(_FORMATS)
# Decimals a figure is rounded to before it is written or compared (far below any format's
# precision and any threshold of the catalog or the playbook)
SETTLE_DIGITS = 9
_SCALE = 10.0**SETTLE_DIGITS


def settled(value: float) -> float:
    """``value`` rounded to :data:`SETTLE_DIGITS` decimals, negative zero made zero.

    The same figure summed in another order (DuckDB's threads, Spark) differs in its last bits:
    a mean sentiment of exactly 0 comes out as -1e-17 in one run and +1e-17 in the next.
    Settled, it reads and compares the same in both. Python's ``round`` and numpy's ``rint``
    both round half to even, so :func:`settled_array` gives the same figures.
    """
    scaled = value * _SCALE
    if not math.isfinite(scaled):  # missing, infinite, or too large to carry decimals at all
        return value
    return round(scaled) / _SCALE + 0.0


def settled_array(values: np.ndarray) -> np.ndarray:
    """:func:`settled` on every value."""
    values = np.asarray(values, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = values * _SCALE
        return np.where(np.isfinite(scaled), np.rint(scaled) / _SCALE + 0.0, values)


# Where a language writes a figure otherwise than English (language tag -> format -> writer)
_LOCAL: dict[str, dict[str, Callable[[float], str]]] = {
    "zh-CN": {"money": _money_zh, "change": _change_zh},
}


def _noun(count: str, noun: str, language: str = "en") -> str:
    if language != "en":  # Chinese nouns do not inflect and take no space: "3次投诉"
        return f"{count}{noun}"
    singular, _, plural = noun.partition("|")
    return f"{count} {singular if count == '1' else (plural or singular + 's')}"


@dataclass(frozen=True)
class Piece:
    """A literal text piece, or a placeholder (feature, format, noun) in a language."""

    literal: str = ""
    feature: str | None = None
    fmt: str = ""
    noun: str = ""
    language: str = "en"

    def say(self, value: float) -> str:
        """The placeholder filled with ``value``.

        Parameters
        ----------
        value
            The account's figure (never NaN: a phrasing is used only where its placeholders
            have values).

        Returns
        -------
        str
            The figure in the piece's format, followed by its noun when it has one.
        """
        return self.sayer()(value)

    def sayer(self) -> Callable[[float], str]:
        """:meth:`say` as one function, looked up once for a whole column of values."""
        raw = _LOCAL.get(self.language, {}).get(self.fmt) or _FORMATS[self.fmt]

        def writer(value: float) -> str:
            # settled first, a figure cannot straddle a rounding boundary and read differently
            return raw(settled(value))

        if not self.noun:
            return writer
        noun, language = self.noun, self.language
        return lambda value: _noun(writer(value), noun, language)
