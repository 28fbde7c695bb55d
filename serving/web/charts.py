"""The page's bar and line charts as inline SVG geometry, drawn by the templates.

Bar charts of value at risk by tier and region and of an account's drivers, and an account's
risk history as a line (the scatter is :mod:`kam.serving.web.scatter`). Everything is computed
here in SVG user units, so the page needs no chart script and the Content-Security-Policy can
forbid any from elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kam.serving.web.book import Book
from kam.serving.web.formats import Formats, finite
from kam.serving.web.labels import TIERS

REGION_BARS = 7  # regions drawn one by one; the rest are summed as "other regions"


@dataclass(frozen=True)
class Bar:
    """One bar of a horizontal bar chart, in SVG user units."""

    label: str
    value: float
    text: str
    y: float
    width: float
    css: str = ""
    note: str = ""


@dataclass(frozen=True)
class BarChart:
    """A horizontal bar chart."""

    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int
    bar_max: int
    title: str


def bar_chart(
    items: Sequence[tuple[str, float, str, str]],
    *,
    title: str,
    width: int = 400,
    label_width: int = 112,
    bar_max: int = 190,
    row: int = 26,
    notes: Sequence[str] | None = None,
) -> BarChart:
    """Bars for ``(label, value, text, css class)`` items, scaled to the largest value.

    Parameters
    ----------
    items
        One ``(label, value, text, css class)`` per bar, top to bottom.
    title
        The chart's accessible title.
    width, label_width, bar_max, row
        The chart's width, the labels' column, the longest bar and the height of a row, in
        SVG user units.
    notes
        A note per bar (shown on hover), if any.

    Returns
    -------
    BarChart
        The bars' geometry.
    """
    largest = max((abs(v) for _, v, _, _ in items), default=0.0)
    bars = tuple(
        Bar(
            label=label,
            value=value,
            text=text,
            y=i * row,
            width=round(bar_max * abs(value) / largest, 1) if largest > 0 else 0.0,
            css=css,
            note=notes[i] if notes else "",
        )
        for i, (label, value, text, css) in enumerate(items)
    )
    return BarChart(bars, width, max(len(bars), 1) * row + 4, label_width, bar_max, title)


@dataclass(frozen=True)
class Tick:
    """An axis tick: position and label."""

    at: float
    text: str


@dataclass(frozen=True)
class Point:
    """One account in the scatter."""

    x: float
    y: float
    css: str
    title: str


def tier_bars(book: Book, positions: np.ndarray, formats: Formats) -> BarChart:
    """Value at risk of the selected accounts by tier.

    Parameters
    ----------
    book
        The prepared book.
    positions
        The selected accounts.
    formats
        How the amounts are written.

    Returns
    -------
    BarChart
        One bar per tier, A to C.
    """
    risk = np.nan_to_num(book.value_at_risk[positions], nan=0.0)
    tiers = book.tier[positions]
    items = []
    for tier in TIERS:
        mask = tiers == tier
        total = float(risk[mask].sum())
        items.append((
            formats.say("Tier %(tier)s (%(n)s)", tier=tier, n=formats.count(mask.sum())),
            total, formats.money(total), f"tier-{tier}",
        ))
    return bar_chart(items, title=formats.say("Value at risk by tier"))


def region_bars(book: Book, positions: np.ndarray, formats: Formats) -> BarChart:
    """Value at risk of the selected accounts by region, largest first.

    Every region of the book gets its row, with zero when no selected account is in it, so the
    chart keeps its size (and the table its place) whatever the filters.

    Parameters
    ----------
    book
        The prepared book.
    positions
        The selected accounts.
    formats
        How the amounts are written.

    Returns
    -------
    BarChart
        :data:`REGION_BARS` regions, then one bar for the rest.
    """
    names = [r if isinstance(r, str) else formats.say("(no region)") for r in book.region]
    risk = np.nan_to_num(book.value_at_risk, nan=0.0)
    chosen = np.zeros(len(names), dtype=bool)
    chosen[positions] = True
    frame = pd.DataFrame({"region": names, "risk": np.where(chosen, risk, 0.0), "n": chosen})
    sums = frame.groupby("region", sort=True)[["risk", "n"]].sum()
    sums = sums.sort_values(["risk", "n"], ascending=False, kind="stable")
    rows = [(str(name), float(r.risk), int(r.n)) for name, r in sums.iterrows()]
    if len(rows) > REGION_BARS + 1:
        rest = rows[REGION_BARS:]
        rows = [
            *rows[:REGION_BARS],
            (formats.say("%(n)s other regions", n=len(rest)), sum(r[1] for r in rest),
             sum(r[2] for r in rest)),
        ]
    items = [
        (f"{name} ({formats.count(n)})", total, formats.money(total),
         "region other" if i == REGION_BARS
         else "region")
        for i, (name, total, n) in enumerate(rows)
    ]
    return bar_chart(items, title=formats.say("Value at risk by region"))


@dataclass(frozen=True)
class Line:
    """A small line chart of an account's defection risk over its past scores."""

    path: str
    points: tuple[Point, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int


def history_line(history: Sequence[Mapping[str, Any]], formats: Formats) -> Line | None:
    """Defection probability over the account's as_of dates, oldest first.

    Parameters
    ----------
    history
        The account's past scores, oldest first (``as_of``, ``defection_probability``,
        ``value_at_risk``).
    formats
        How tick labels and hover titles are written.

    Returns
    -------
    Line or None
        The line's path, points and axes; None without history.
    """
    if not history:
        return None
    width, height, left, right, top, bottom = 440, 180, 42, 416, 12, 150
    days = [pd.Timestamp(h["as_of"]) for h in history]
    probabilities = [finite(h.get("defection_probability")) or 0.0 for h in history]
    # four equal steps of a round size that cover the highest risk with some headroom
    wanted = max(probabilities) * 1.1
    ceiling = next((4 * s for s in (0.01, 0.02, 0.05, 0.1, 0.2) if 4 * s >= wanted), 1.0)
    first, last = days[0], days[-1]
    span = max((last - first).days, 1)

    def x_of(day: pd.Timestamp) -> float:
        if len(days) == 1:
            return (left + right) / 2
        return round(left + (day - first).days / span * (right - left), 1)

    def y_of(p: float) -> float:
        return round(bottom - min(p, ceiling) / ceiling * (bottom - top), 1)

    points = tuple(
        Point(
            x=x_of(d),
            y=y_of(p),
            css="",
            title=formats.say(
                "%(day)s: risk %(risk)s, value at risk %(at_risk)s", day=formats.day(d),
                risk=formats.pct(p), at_risk=formats.money(h.get("value_at_risk")),
            ),
        )
        for d, p, h in zip(days, probabilities, history, strict=True)
    )
    path = "M" + " L".join(f"{p.x},{p.y}" for p in points)
    # at most six date labels, always the first and the last
    every = max(1, math.ceil(len(days) / 6))
    chosen = sorted({*range(0, len(days), every), len(days) - 1})
    x_ticks = tuple(Tick(x_of(days[i]), formats.iso(days[i])) for i in chosen)
    y_ticks = tuple(Tick(y_of(ceiling * k / 4), formats.pct(ceiling * k / 4, 0)) for k in range(5))
    return Line(path, points, x_ticks, y_ticks, width, height, left, right, top, bottom)
