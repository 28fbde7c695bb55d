"""The risk-against-value scatter, with the managers' four quadrants, as inline SVG geometry.

Value at stake runs along a log axis and defection risk up; the splits between quadrants are
the book's (its expected defection rate, and the stake of the accounts holding 80% of it), so
the axes and quadrants stay put whatever the filters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kam.serving.web.book import Book
from kam.serving.web.charts import Point, Tick
from kam.serving.web.formats import Formats
from kam.serving.web.labels import QUADRANT_NAMES, QUADRANTS, TIERS

SCATTER_POINTS = 1500  # beyond this the scatter shows the accounts with most value at risk


@dataclass(frozen=True)
class Quadrant:
    """One quadrant of the scatter, and the selected accounts it holds."""

    key: str
    label: str
    meaning: str
    accounts: int
    value_at_risk: float
    x: float
    y: float
    width: float
    height: float
    label_x: float
    label_y: float
    anchor: str


@dataclass(frozen=True)
class Scatter:
    """Risk against value, with the managers' four quadrants."""

    points: tuple[Point, ...]
    quadrants: tuple[Quadrant, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    split_x: float
    split_y: float
    left: int
    right: int
    top: int
    bottom: int
    width: int
    height: int
    shown: int
    total: int
    risk_split: float
    value_split: float


SCATTER_BOX = {"width": 400, "height": 262, "left": 54, "right": 390, "top": 10, "bottom": 222}


def quadrant_of(probability: float | None, stake: float | None, book: Book) -> str | None:
    """The account's quadrant: rescue, keep, let_go or grow.

    Parameters
    ----------
    probability, stake
        The account's defection probability and value at stake.
    book
        The book whose risk and value splits define the quadrants.

    Returns
    -------
    str or None
        The quadrant's key (:data:`kam.serving.web.labels.QUADRANTS`); None when either
        figure is missing.
    """
    if probability is None or stake is None:
        return None
    high_risk = probability >= book.risk_split
    high_value = stake >= book.value_split
    if high_risk:
        return "rescue" if high_value else "let_go"
    return "keep" if high_value else "grow"


def scatter(book: Book, positions: np.ndarray, formats: Formats) -> Scatter:
    """The scatter of the selected accounts; axes are the whole book's, so they stay put.

    Parameters
    ----------
    book
        The prepared book.
    positions
        The selected accounts, in at-risk order.
    formats
        How tick labels and hover titles are written.

    Returns
    -------
    Scatter
        Up to :data:`SCATTER_POINTS` points, the quadrants with the selected accounts' counts
        and value at risk, and the axes.
    """
    box = SCATTER_BOX
    left, right, top, bottom = box["left"], box["right"], box["top"], box["bottom"]
    low, high = book.stake_range
    lo, hi = math.log10(low), math.log10(high)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1

    def x_of(stake: np.ndarray) -> np.ndarray:
        logged = np.log10(np.clip(np.nan_to_num(stake, nan=low), low, high))
        return left + (logged - lo) / (hi - lo) * (right - left)

    def y_of(p: np.ndarray) -> np.ndarray:
        clipped = np.clip(np.nan_to_num(p, nan=0.0), 0.0, book.risk_top)
        return bottom - clipped / book.risk_top * (bottom - top)

    # draw the most valuable-at-risk accounts when there are too many to show
    shown = np.sort(positions)[:SCATTER_POINTS]
    frame = book.table.frame
    names = frame["name"].to_numpy(dtype=object) if "name" in frame.columns else None
    ids = frame["account_id"].to_numpy(dtype=object)
    xs, ys = x_of(book.stake[shown]), y_of(book.probability[shown])
    points = []
    # largest value at risk drawn last, on top
    for j in range(len(shown) - 1, -1, -1):
        at = shown[j]
        tier = book.tier[at]
        label = names[at] if names is not None and isinstance(names[at], str) else ids[at]
        points.append(
            Point(
                x=round(float(xs[j]), 1),
                y=round(float(ys[j]), 1),
                css=f"tier-{tier}" if tier in TIERS else "tier-none",
                title=formats.say(
                    "%(name)s (%(id)s): risk %(risk)s, value at stake %(stake)s, "
                    "at risk %(at_risk)s",
                    name=label, id=ids[at], risk=formats.pct(book.probability[at]),
                    stake=formats.money(book.stake[at]),
                    at_risk=formats.money(book.value_at_risk[at]),
                ),
            )
        )
    split_x = round(float(x_of(np.array([max(book.value_split, low)]))[0]), 1)
    split_y = round(float(y_of(np.array([book.risk_split]))[0]), 1)
    high_risk = np.nan_to_num(book.probability[positions], nan=0.0) >= book.risk_split
    high_value = np.nan_to_num(book.stake[positions], nan=0.0) >= book.value_split
    at_risk = np.nan_to_num(book.value_at_risk[positions], nan=0.0)
    cells = {
        "rescue": (high_risk & high_value, split_x, top, right - split_x, split_y - top,
                   right - 4, top + 13, "end"),
        "keep": (~high_risk & high_value, split_x, split_y, right - split_x, bottom - split_y,
                 right - 4, bottom - 6, "end"),
        "let_go": (high_risk & ~high_value, left, top, split_x - left, split_y - top,
                   left + 4, top + 13, "start"),
        "grow": (~high_risk & ~high_value, left, split_y, split_x - left, bottom - split_y,
                 left + 4, bottom - 6, "start"),
    }
    quadrants = tuple(
        Quadrant(
            key=key,
            label=formats.say(QUADRANT_NAMES[key]),
            meaning=formats.say(QUADRANTS[key]),
            accounts=int(mask.sum()),
            value_at_risk=float(at_risk[mask].sum()),
            x=x, y=y, width=max(w, 0.0), height=max(h, 0.0),
            label_x=lx, label_y=ly, anchor=anchor,
        )
        for key, (mask, x, y, w, h, lx, ly, anchor) in cells.items()
    )
    x_ticks = []
    for power in range(math.ceil(lo), math.floor(hi) + 1):
        at = float(x_of(np.array([10.0**power]))[0])
        x_ticks.append(Tick(round(at, 1), formats.compact(10.0**power)))
    steps = 4
    y_ticks = tuple(
        Tick(round(float(y_of(np.array([book.risk_top * k / steps]))[0]), 1),
             formats.pct(book.risk_top * k / steps, 0))
        for k in range(steps + 1)
    )
    return Scatter(
        points=tuple(points),
        quadrants=quadrants,
        x_ticks=tuple(x_ticks),
        y_ticks=y_ticks,
        split_x=split_x,
        split_y=split_y,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        width=box["width"],
        height=box["height"],
        shown=len(shown),
        total=len(positions),
        risk_split=book.risk_split,
        value_split=book.value_split,
    )
