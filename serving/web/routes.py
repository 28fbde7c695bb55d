"""The ranked at-risk web page for managers: the list, account pages, CSV export and sign-in.

Pages are rendered on the server from the scores already in memory (``app.state.serving``).
The filters, sort order and page live in the URL, so a view can be shared as a link, and the
filter parameters are those of ``GET /v1/at-risk``: the same query selects the same accounts on
the page, in the CSV export and in the API. Charts are inline SVG drawn here; every asset comes
from this app (no CDN), which lets the Content-Security-Policy allow nothing else. An account
page adds the account's score history and its last year of orders, contacts and complaints,
read from the store.

When API keys are configured, a browser signs in once with a key (``/login``); the key is kept
in an HttpOnly, SameSite=Strict cookie and checked exactly like the ``X-API-Key`` header.

Wire it into the app with ``app.include_router(router)``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from kam.features.store import connect
from kam.serving.api.auth import ApiKeys, Role
from kam.serving.decisions.vocabulary import (
    CAUSE_LABELS,
    FAMILY_LABELS,
    OWNER_LABELS,
    TECHNIQUE_LABELS,
    TIERS,
)
from kam.serving.scoring.batch import SCORES_TABLE
from kam.serving.state import ScoreTable, ServingState

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Settings of the page. The currency comes from ``settings.currency`` when the service settings
# define one; otherwise yuan.
# ------------------------------------------------------------------------------------------------
DEFAULT_CURRENCY = "¥"
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
TOP_ACCOUNTS = 20  # the header's concentration figure: share of value at risk in the top 20
SCATTER_POINTS = 1500  # beyond this the scatter shows the accounts with most value at risk
REGION_BARS = 7  # regions drawn one by one; the rest are summed as "other regions"
PARETO_SHARE = 0.8  # "high value": the largest accounts that together hold 80% of the stake
ACTIVITY_DAYS = 365
HISTORY_POINTS = 24
MAX_QUERY_TEXT = 200
MAX_LOGIN_BODY = 4096
SESSION_SECONDS = 8 * 3600  # a working day; then sign in again

KEY_COOKIE = "kam_key"
# No secret: says a key cookie was set, so that a link followed from another site (which does
# not carry the SameSite=Strict key cookie) can be re-requested from this site, which does.
HINT_COOKIE = "kam_signed_in"
API_KEY_HEADER = "X-API-Key"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
NO_STORE = {"Cache-Control": "no-store"}
STATIC_TYPES = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}

# column key -> (heading, default direction when first sorted by it)
SORTS: dict[str, tuple[str, str]] = {
    "account": ("Account", "asc"),
    "tier": ("Tier", "asc"),
    "region": ("Region", "asc"),
    "manager": ("Manager", "asc"),
    "probability": ("Defection risk", "desc"),
    "value": ("Predicted value", "desc"),
    "value_at_risk": ("Value at risk", "desc"),
    "driver": ("Top driver", "asc"),
    "action": ("First action", "asc"),
}
DEFAULT_SORT = "value_at_risk"

# The quadrants managers sort accounts into, by risk and value.
QUADRANTS = {
    "rescue": "high risk, high value: act now",
    "keep": "low risk, high value: protect",
    "let_go": "high risk, low value: serve at low cost",
    "grow": "low risk, low value: develop",
}

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


# ------------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
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
        number = _number(value)
        if number is None:
            return "–"
        sign = "−" if number < -0.5 else ""
        return f"{sign}{self.currency}{abs(number):,.0f}"

    def compact(self, value: Any) -> str:
        """A short amount for chart axes: ``¥35k``, ``¥1.2M``."""
        number = _number(value)
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
        number = _number(value)
        return "–" if number is None else f"{number * 100:.{digits}f}%"

    @staticmethod
    def count(value: Any) -> str:
        """A whole number with thousands separators."""
        number = _number(value)
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


def _currency(request: Request) -> str:
    settings = request.app.state.settings
    return str(getattr(settings, "currency", None) or DEFAULT_CURRENCY)


# ------------------------------------------------------------------------------------------------
# The list's query: filters, sort and page, read from and written back to the URL
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ListQuery:
    """What the list shows: the filters of ``GET /v1/at-risk`` plus search, sort and page."""

    tiers: tuple[str, ...] = ()
    region: str | None = None
    account_manager: str | None = None
    min_value_at_risk: float | None = None
    q: str | None = None
    sort: str = DEFAULT_SORT
    direction: str = "desc"
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE

    @property
    def filtered(self) -> bool:
        return bool(
            self.tiers or self.region or self.account_manager or self.q
            or self.min_value_at_risk is not None
        )

    @property
    def min_text(self) -> str:
        """The minimum value at risk as typed: ``250000``, not ``250000.0`` or ``2.5e+05``."""
        value = self.min_value_at_risk
        if value is None:
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)

    def params(self, *, paging: bool = True) -> list[tuple[str, str]]:
        """Query parameters of this view, leaving out defaults so links stay short."""
        out: list[tuple[str, str]] = [("tier", t) for t in self.tiers]
        if self.region:
            out.append(("region", self.region))
        if self.account_manager:
            out.append(("account_manager", self.account_manager))
        if self.min_value_at_risk is not None:
            out.append(("min_value_at_risk", self.min_text))
        if self.q:
            out.append(("q", self.q))
        if self.sort != DEFAULT_SORT or self.direction != SORTS[DEFAULT_SORT][1]:
            out += [("sort", self.sort), ("dir", self.direction)]
        if paging:
            if self.size != DEFAULT_PAGE_SIZE:
                out.append(("size", str(self.size)))
            if self.page != 1:
                out.append(("page", str(self.page)))
        return out

    def url(self, path: str = "/", *, fragment: str = "", paging: bool = True) -> str:
        """The URL of this view."""
        query = urlencode(self.params(paging=paging))
        return path + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")

    def sorted_by(self, column: str) -> ListQuery:
        """This view sorted by ``column``: the other direction when it is already the sort."""
        if column == self.sort:
            direction = "asc" if self.direction == "desc" else "desc"
        else:
            direction = SORTS[column][1]
        return replace(self, sort=column, direction=direction, page=1)


def parse_list_query(params: Any) -> tuple[ListQuery, list[str]]:
    """The list's query from URL parameters, and a message for each value that was ignored.

    The page is lenient (a bad value is dropped and named); the export refuses instead.
    """
    problems: list[str] = []
    tiers: list[str] = []
    for raw in params.getlist("tier"):
        tier = raw.strip().upper()
        if not tier:
            continue
        if tier in TIERS:
            if tier not in tiers:
                tiers.append(tier)
        else:
            problems.append(f"tier {raw!r} is not A, B or C")

    def text(name: str) -> str | None:
        value = (params.get(name) or "").strip()
        if len(value) > MAX_QUERY_TEXT:
            problems.append(f"{name} is longer than {MAX_QUERY_TEXT} characters")
            return None
        return value or None

    minimum: float | None = None
    raw_min = (params.get("min_value_at_risk") or "").strip().replace(",", "")
    if raw_min:
        try:
            minimum = float(raw_min)
        except ValueError:
            problems.append(f"min_value_at_risk {raw_min!r} is not a number")
        else:
            if not math.isfinite(minimum) or minimum < 0:
                problems.append(f"min_value_at_risk {raw_min!r} must be zero or more")
                minimum = None

    sort = params.get("sort") or DEFAULT_SORT
    if sort not in SORTS:
        problems.append(f"cannot sort by {sort!r}")
        sort = DEFAULT_SORT
    direction = params.get("dir") or SORTS[sort][1]
    if direction not in {"asc", "desc"}:
        problems.append(f"dir {direction!r} is not asc or desc")
        direction = SORTS[sort][1]

    def whole(name: str, default: int, allowed: Sequence[int] | None = None) -> int:
        raw = params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            problems.append(f"{name} {raw!r} is not a whole number")
            return default
        if value < 1 or (allowed is not None and value not in allowed):
            problems.append(f"{name} {raw!r} is out of range")
            return default
        return value

    query = ListQuery(
        tiers=tuple(sorted(tiers)),
        region=text("region"),
        account_manager=text("account_manager"),
        min_value_at_risk=minimum,
        q=text("q"),
        sort=sort,
        direction=direction,
        page=whole("page", 1),
        size=whole("size", DEFAULT_PAGE_SIZE, PAGE_SIZES),
    )
    return query, problems


# ------------------------------------------------------------------------------------------------
# The book: what the list needs from a score table, prepared once per loaded table
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """Header figures over every scored account."""

    accounts: int
    value_at_risk: float
    value_at_stake: float
    tier_counts: Mapping[str, int]
    top_accounts: int
    top_share: float | None


@dataclass(frozen=True)
class Book:
    """A loaded score table with its search text, sort keys and choices, ready for the list."""

    table: ScoreTable
    search: np.ndarray = field(repr=False)
    keys: Mapping[str, np.ndarray] = field(repr=False)
    probability: np.ndarray = field(repr=False)
    stake: np.ndarray = field(repr=False)
    value_at_risk: np.ndarray = field(repr=False)
    tier: np.ndarray = field(repr=False)
    region: np.ndarray = field(repr=False)
    regions: tuple[str, ...]
    managers: tuple[str, ...]
    risk_split: float
    value_split: float
    stake_range: tuple[float, float]
    risk_top: float
    summary: Summary

    @classmethod
    def of(cls, table: ScoreTable) -> Book:
        """Prepare a score table for the list."""
        frame = table.frame
        n = len(frame)

        def texts(column: str) -> list[str | None]:
            if column not in frame.columns:
                return [None] * n
            return [
                None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)
                for v in frame[column].tolist()
            ]

        def numbers(column: str) -> np.ndarray:
            if column not in frame.columns:
                return np.full(n, np.nan)
            return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)

        ids = [str(v) for v in frame["account_id"].tolist()]
        names = texts("name")
        regions = texts("region")
        managers = texts("account_manager")
        causes = texts("top_driver_cause")
        phrases = texts("top_driver")
        probability = numbers("defection_probability")
        stake = numbers("value_at_stake")
        risk = numbers("value_at_risk")
        if "first_action_due" in frame.columns:
            due = pd.to_datetime(frame["first_action_due"], errors="coerce")
            due_days = (due - pd.Timestamp("1970-01-01")).dt.days.to_numpy(
                dtype=float, na_value=np.nan
            )
        else:
            due_days = np.full(n, np.nan)
        keys = {
            "account": _text_key([nm or i for nm, i in zip(names, ids, strict=True)]),
            "tier": _text_key(texts("tier")),
            "region": _text_key(regions),
            "manager": _text_key(managers),
            "probability": probability,
            "value": numbers("value"),
            "value_at_risk": risk,
            "driver": _text_key(
                [f"{c or ''}|{p}" if p else None for c, p in zip(causes, phrases, strict=True)]
            ),
            "action": due_days,
        }
        search = np.array(
            [f"{(nm or '').casefold()} {i.casefold()}" for nm, i in zip(names, ids, strict=True)],
            dtype=str,
        )
        known_risk = np.nan_to_num(risk, nan=0.0)
        total_risk = float(known_risk.sum())
        top = min(TOP_ACCOUNTS, n)
        # the table is in at-risk order: the first rows hold the most value at risk
        top_share = float(known_risk[:top].sum() / total_risk) if total_risk > 0 else None
        tier = np.array(texts("tier"), dtype=object)
        counts = {t: int((tier == t).sum()) for t in TIERS}
        positive = stake[np.isfinite(stake) & (stake > 0)]
        stake_range = (
            (float(positive.min()), float(positive.max())) if positive.size else (1.0, 10.0)
        )
        finite_p = probability[np.isfinite(probability)]
        mean_risk = float(finite_p.mean()) if finite_p.size else 0.5
        highest = float(finite_p.max()) if finite_p.size else 1.0
        # the scatter's risk axis ends at the next 10% above the highest risk
        risk_top = min(1.0, math.ceil(max(highest, 2 * mean_risk, 0.05) * 10) / 10)
        return cls(
            table=table,
            search=search,
            keys=keys,
            probability=probability,
            stake=stake,
            value_at_risk=risk,
            tier=tier,
            region=np.array(regions, dtype=object),
            regions=_choices(regions),
            managers=_choices(managers),
            # high risk: above the book's expected defection rate (calibrated probabilities)
            risk_split=mean_risk,
            value_split=_pareto_cut(stake, PARETO_SHARE),
            stake_range=stake_range,
            risk_top=risk_top,
            summary=Summary(
                accounts=n,
                value_at_risk=total_risk,
                value_at_stake=float(np.nan_to_num(stake, nan=0.0).sum()),
                tier_counts=counts,
                top_accounts=top,
                top_share=top_share,
            ),
        )

    def select(self, query: ListQuery) -> np.ndarray:
        """Positions of the accounts the query selects, in the query's sort order.

        The filters are the score table's own (those of ``GET /v1/at-risk``), then the search.
        """
        positions = self.table.select(
            tiers=list(query.tiers) or None,
            region=query.region,
            account_manager=query.account_manager,
            min_value_at_risk=query.min_value_at_risk,
        )
        if query.q:
            hits = np.char.find(self.search[positions], query.q.casefold()) >= 0
            positions = positions[hits]
        return self.order(positions, query.sort, query.direction)

    def order(self, positions: np.ndarray, sort: str, direction: str) -> np.ndarray:
        """``positions`` sorted by a column; ties (and the default) keep the at-risk order."""
        if sort == DEFAULT_SORT and direction == "desc":
            return positions  # the table is held in this order: the API's order exactly
        key = self.keys[sort][positions]
        missing = np.isnan(key)
        key = np.where(missing, 0.0, key)
        if direction == "desc":
            key = -key
        # lexsort is stable: positions are in at-risk order, which breaks ties; missing last
        return positions[np.lexsort((key, missing))]


def _text_key(values: Sequence[str | None]) -> np.ndarray:
    """Sort codes of text values (ignoring case); NaN for a missing value."""
    folded = [v.casefold() if v else None for v in values]
    codes = {v: i for i, v in enumerate(sorted({v for v in folded if v is not None}))}
    return np.array([np.nan if v is None else codes[v] for v in folded], dtype=float)


def _choices(values: Sequence[str | None]) -> tuple[str, ...]:
    """Distinct values for a filter's options, one per spelling-ignoring-case, sorted."""
    seen: dict[str, str] = {}
    for value in values:
        if value:
            seen.setdefault(value.casefold(), value)
    return tuple(sorted(seen.values(), key=str.casefold))


def _pareto_cut(stake: np.ndarray, share: float) -> float:
    """The smallest stake among the largest accounts that together hold ``share`` of the total."""
    values = np.sort(np.nan_to_num(stake, nan=0.0).clip(0.0))[::-1]
    total = values.sum()
    if total <= 0:
        return 0.0
    before = (np.cumsum(values) - values) / total
    return float(values[before < share].min())


_BOOK_LOCK = threading.Lock()
_BOOK: list[Book] = []  # the book of the last score table asked for (one entry)


def book_of(table: ScoreTable) -> Book:
    """The prepared book of ``table``, built on first use after each load or reload."""
    with _BOOK_LOCK:
        if _BOOK and _BOOK[0].table is table:
            return _BOOK[0]
    book = Book.of(table)  # built outside the lock: a few hundred ms for 100,000 accounts
    with _BOOK_LOCK:
        _BOOK[:] = [book]
    return book


# ------------------------------------------------------------------------------------------------
# Charts: inline SVG geometry, drawn by the templates
# ------------------------------------------------------------------------------------------------
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
    """Bars for ``(label, value, text, css class)`` items, scaled to the largest value."""
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
    """The account's quadrant: rescue, keep, let_go or grow."""
    if probability is None or stake is None:
        return None
    high_risk = probability >= book.risk_split
    high_value = stake >= book.value_split
    if high_risk:
        return "rescue" if high_value else "let_go"
    return "keep" if high_value else "grow"


def scatter(book: Book, positions: np.ndarray, formats: Formats) -> Scatter:
    """The scatter of the selected accounts; axes are the whole book's, so they stay put."""
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
                title=(
                    f"{label} ({ids[at]}): risk {formats.pct(book.probability[at])}, "
                    f"value at stake {formats.money(book.stake[at])}, "
                    f"at risk {formats.money(book.value_at_risk[at])}"
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
            label=key.replace("_", " "),
            meaning=QUADRANTS[key],
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


def tier_bars(book: Book, positions: np.ndarray, formats: Formats) -> BarChart:
    """Value at risk of the selected accounts by tier."""
    risk = np.nan_to_num(book.value_at_risk[positions], nan=0.0)
    tiers = book.tier[positions]
    items = []
    for tier in TIERS:
        mask = tiers == tier
        total = float(risk[mask].sum())
        items.append((f"Tier {tier} ({int(mask.sum()):,})", total, formats.money(total),
                      f"tier-{tier}"))
    return bar_chart(items, title="Value at risk by tier")


def region_bars(book: Book, positions: np.ndarray, formats: Formats) -> BarChart:
    """Value at risk of the selected accounts by region, largest first.

    Every region of the book gets its row, with zero when no selected account is in it, so the
    chart keeps its size (and the table its place) whatever the filters.
    """
    names = [r if isinstance(r, str) else "(no region)" for r in book.region]
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
            (f"{len(rest)} other regions", sum(r[1] for r in rest), sum(r[2] for r in rest)),
        ]
    items = [
        (f"{name} ({n:,})", total, formats.money(total), "region other" if i == REGION_BARS
         else "region")
        for i, (name, total, n) in enumerate(rows)
    ]
    return bar_chart(items, title="Value at risk by region")


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
    """Defection probability over the account's as_of dates, oldest first."""
    if not history:
        return None
    width, height, left, right, top, bottom = 440, 180, 42, 416, 12, 150
    days = [pd.Timestamp(h["as_of"]) for h in history]
    probabilities = [_number(h.get("defection_probability")) or 0.0 for h in history]
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
            title=(
                f"{d.date().isoformat()}: risk {formats.pct(p)}, value at risk "
                f"{formats.money(h.get('value_at_risk'))}"
            ),
        )
        for d, p, h in zip(days, probabilities, history, strict=True)
    )
    path = "M" + " L".join(f"{p.x},{p.y}" for p in points)
    # at most six date labels, always the first and the last
    every = max(1, math.ceil(len(days) / 6))
    chosen = sorted({*range(0, len(days), every), len(days) - 1})
    x_ticks = tuple(Tick(x_of(days[i]), days[i].date().isoformat()) for i in chosen)
    y_ticks = tuple(Tick(y_of(ceiling * k / 4), formats.pct(ceiling * k / 4, 0)) for k in range(5))
    return Line(path, points, x_ticks, y_ticks, width, height, left, right, top, bottom)


# ------------------------------------------------------------------------------------------------
# Rows of the table
# ------------------------------------------------------------------------------------------------
ROW_COLUMNS = (
    "account_id", "name", "tier", "region", "account_manager", "defection_probability", "value",
    "value_low", "value_high", "value_at_risk", "rank", "top_driver", "top_driver_cause",
    "first_action", "first_action_owner", "first_action_due",
)


def _clean(value: Any) -> Any:
    """None for pandas' missing values (NaN, NaT, None)."""
    if value is None:
        return None
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):  # a list or another container: not missing
        return value


def table_rows(book: Book, positions: np.ndarray) -> list[dict[str, Any]]:
    """The table's rows for ``positions``, as dicts of the scores' columns."""
    frame = book.table.frame
    present = [c for c in ROW_COLUMNS if c in frame.columns]
    chunk = frame.iloc[positions][present]
    rows = []
    for record in chunk.to_dict("records"):
        row = {c: _clean(record.get(c)) for c in ROW_COLUMNS}
        row["account_id"] = str(row["account_id"])
        row["href"] = account_href(row["account_id"])
        rows.append(row)
    return rows


def account_href(account_id: str) -> str:
    """The path of an account's page."""
    return "/accounts/" + quote(account_id, safe="")


# ------------------------------------------------------------------------------------------------
# The CSV export: the rows of ``GET /v1/at-risk`` for the same filters, every page
# ------------------------------------------------------------------------------------------------
EXPORT_COLUMNS = (
    "rank", "account_id", "name", "industry", "region", "account_manager", "as_of", "tier",
    "relationship_stage", "defection_probability", "value", "value_low", "value_high",
    "value_at_stake", "value_at_risk", "top_driver", "top_driver_cause", "first_action",
    "first_action_owner", "first_action_due", "drivers", "actions", "model_name",
    "model_version", "playbook_version", "scored_at",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell. Text that a spreadsheet would run as a formula is prefixed with a quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_record(body: Mapping[str, Any]) -> list[str]:
    """One export row from an account's API body (``AccountScore`` JSON)."""
    drivers = body.get("drivers") or []
    actions = body.get("actions") or []
    first_driver = drivers[0] if drivers else {}
    first_action = actions[0] if actions else {}
    values = {
        **body,
        "top_driver": first_driver.get("phrase"),
        "top_driver_cause": first_driver.get("cause"),
        "first_action": first_action.get("title"),
        "first_action_owner": first_action.get("owner"),
        "first_action_due": first_action.get("due_date"),
    }
    return [_cell(values.get(c)) for c in EXPORT_COLUMNS]


def export_lines(table: ScoreTable, positions: np.ndarray, chunk: int = 2000) -> Iterator[bytes]:
    """The CSV in chunks: a byte-order mark (spreadsheets then read UTF-8 names), header, rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(EXPORT_COLUMNS)
    for start in range(0, len(positions), chunk):
        for at in positions[start : start + chunk]:
            writer.writerow(export_record(json.loads(table.bodies[at])))
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    rest = buffer.getvalue()
    if rest:
        yield rest.encode("utf-8")


# ------------------------------------------------------------------------------------------------
# What the store says about one account: score history and the last year's activity
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Activity:
    """An account's orders, contacts, complaints and retention actions in the last year."""

    start: date
    end: date
    orders: int
    revenue: float
    last_order: date | None
    interactions: int | None = None
    contacts: int | None = None
    visits: int | None = None
    last_executive_contact: date | None = None
    complaints_opened: int | None = None
    open_complaints: tuple[Mapping[str, Any], ...] | None = None
    actions_taken: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True)
class StoreView:
    """What could be read from the store for an account page, or why nothing could."""

    history: tuple[Mapping[str, Any], ...] = ()
    activity: Activity | None = None
    problem: str | None = None


def _day_of(value: Any) -> date | None:
    value = _clean(value)
    return None if value is None else pd.Timestamp(value).date()


def _scalar(con: Any, expr: Any) -> Any:
    return _clean(con.execute(expr))


def read_account_store(store_url: str, account_id: str, as_of: date) -> StoreView:
    """The account's score history and last-year activity, from a read-only store connection.

    Events count when their calendar day lies in ``(as_of - 365 days, as_of]``, as in the
    snapshots. A store that cannot be read gives a view with ``problem`` set, not an error:
    the page still shows the score held in memory.
    """
    try:
        con = connect(store_url, read_only=True)
    except Exception as err:  # any backend's error (a writer holding the file, no file)
        logger.warning("account page: cannot open the store %s: %s", store_url, err)
        return StoreView(problem=f"the store cannot be read right now ({err})")
    try:
        tables = set(con.list_tables())
        history = _history(con, account_id) if SCORES_TABLE in tables else ()
        activity = _activity(con, tables, account_id, as_of)
        return StoreView(history=history, activity=activity)
    except Exception as err:  # a table of an older release, a locked file, ...
        logger.warning("account page: cannot read the store %s: %s", store_url, err)
        return StoreView(problem=f"the store cannot be read right now ({err})")
    finally:
        con.disconnect()


def _history(con: Any, account_id: str) -> tuple[Mapping[str, Any], ...]:
    table = con.table(SCORES_TABLE)
    mine = table.filter(table.account_id == account_id).select(
        "as_of", "defection_probability", "value", "value_at_risk", "tier"
    )
    frame = con.execute(mine.order_by(mine.as_of.desc()).limit(HISTORY_POINTS))
    frame = frame.drop_duplicates("as_of").iloc[::-1]
    return tuple(
        {k: _clean(v) for k, v in record.items()} for record in frame.to_dict("records")
    )


def _activity(con: Any, tables: set[str], account_id: str, as_of: date) -> Activity | None:
    if "orders" not in tables:
        return None
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1)  # the whole as_of day counts
    start = end - pd.Timedelta(days=ACTIVITY_DAYS)

    def window(table: Any, column: str) -> Any:
        mine = table.filter(table.account_id == account_id)
        return mine.filter((mine[column] >= start) & (mine[column] < end))

    orders = window(con.table("orders"), "order_date")
    counted = con.execute(
        orders.aggregate(n=orders.count(), revenue=orders.revenue.sum())
    ).iloc[0]
    all_orders = con.table("orders")
    mine = all_orders.filter(
        (all_orders.account_id == account_id) & (all_orders.order_date < end)
    )
    found: dict[str, Any] = {
        "start": start.date(),
        "end": as_of,
        "orders": int(_clean(counted["n"]) or 0),
        "revenue": float(_clean(counted["revenue"]) or 0.0),
        "last_order": _day_of(_scalar(con, mine.order_date.max())),
    }
    if "interactions" in tables:
        table = con.table("interactions")
        recent = window(table, "occurred_at")
        found["interactions"] = int(_scalar(con, recent.count()) or 0)
        if "contact_id" in table.columns:
            found["contacts"] = int(_scalar(con, recent.contact_id.nunique()) or 0)
        if "channel" in table.columns:
            found["visits"] = int(
                _scalar(con, recent.filter(recent.channel == "visit").count()) or 0
            )
        senior = []
        if "contact_seniority" in table.columns:
            senior.append(table.contact_seniority == "executive")
        if "our_seniority" in table.columns:
            senior.append(table.our_seniority == "executive")
        if senior:
            either = senior[0] if len(senior) == 1 else senior[0] | senior[1]
            executive = table.filter(
                (table.account_id == account_id) & (table.occurred_at < end) & either
            )
            found["last_executive_contact"] = _day_of(_scalar(con, executive.occurred_at.max()))
    if "complaints" in tables:
        table = con.table("complaints")
        found["complaints_opened"] = int(_scalar(con, window(table, "opened_at").count()) or 0)
        opened = table.filter((table.account_id == account_id) & (table.opened_at < end))
        if "resolved_at" in table.columns:
            still_open = opened.filter(opened.resolved_at.isnull() | (opened.resolved_at >= end))
        else:
            still_open = opened
        wanted = [c for c in ("opened_at", "category", "severity") if c in table.columns]
        frame = con.execute(still_open.select(*wanted).order_by("opened_at"))
        found["open_complaints"] = tuple(
            {
                "opened_at": _day_of(r.get("opened_at")),
                "category": _clean(r.get("category")),
                "severity": _clean(r.get("severity")),
                "days_open": (as_of - _day_of(r.get("opened_at"))).days
                if _day_of(r.get("opened_at"))
                else None,
            }
            for r in frame.to_dict("records")
        )
    if "actions" in tables:
        table = con.table("actions")
        taken = window(table, "taken_at")
        wanted = [c for c in ("taken_at", "action", "owner") if c in table.columns]
        frame = con.execute(taken.select(*wanted).order_by(taken.taken_at.desc()).limit(8))
        found["actions_taken"] = tuple(
            {
                "taken_at": _day_of(r.get("taken_at")),
                "action": _clean(r.get("action")),
                "owner": _clean(r.get("owner")),
            }
            for r in frame.to_dict("records")
        )
    return Activity(**found)


# ------------------------------------------------------------------------------------------------
# Sign-in: the API key in a cookie
# ------------------------------------------------------------------------------------------------
def _encode_key(key: str) -> str:
    # cookie values may not hold every character a key may: ';', ',', spaces, quotes
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode_key(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.urlsafe_b64decode(value.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _keys(request: Request) -> ApiKeys:
    return request.app.state.api_keys


def page_role(request: Request) -> Role | None:
    """The role of the signed-in browser; every role when no keys are configured."""
    keys = _keys(request)
    if not keys.configured:  # open mode: the server binds loopback only
        return Role.ADMIN
    return keys.role_of(_decode_key(request.cookies.get(KEY_COOKIE)))


def _safe_next(target: str | None) -> str:
    """A local path to return to after signing in; anything else goes to the list."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 32 for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in {"/login", "/logout"}:
        return "/"
    return target


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": here}), status_code=303,
                            headers=SECURITY_HEADERS)


def _same_origin(request: Request) -> bool:
    """False when a browser says the form was posted from another site."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host")


def _set_session(response: Response, request: Request, key: str) -> None:
    # Secure only over https: on loopback http a Secure cookie would never be sent back
    response.set_cookie(
        KEY_COOKIE, _encode_key(key), max_age=SESSION_SECONDS, path="/",
        secure=request.url.scheme == "https", httponly=True, samesite="strict",
    )
    _set_hint(response, request)


def _set_hint(response: Response, request: Request) -> None:
    response.set_cookie(
        HINT_COOKIE, "1", max_age=SESSION_SECONDS, path="/",
        secure=request.url.scheme == "https", httponly=True, samesite="lax",
    )


def _end_session(response: Response, request: Request) -> None:
    secure = request.url.scheme == "https"
    response.delete_cookie(KEY_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    response.delete_cookie(HINT_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------
@cache
def _static(name: str) -> tuple[bytes, str]:
    data = resources.files("kam.serving.web").joinpath("static", name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content so it can be cached for good."""
    return f"/static/{name}?v={_static(name)[1]}"


def _definition(meta: Mapping[str, Any]) -> str:
    """What "defection" means for the served model, in words."""
    decline = _number(meta.get("decline"))
    decline = 0.5 if decline is None else decline
    horizon = str(meta.get("horizon") or "365d").strip()
    units = {"d": "days", "w": "weeks", "mo": "months", "m": "months", "y": "years"}
    number, unit = horizon.rstrip("dwmoy"), horizon[len(horizon.rstrip("dwmoy")):]
    said = f"{number} {units[unit]}" if number.isdigit() and unit in units else horizon
    if decline >= 1:
        return f"stops buying over the next {said}"
    return (
        f"buys less than {1 - decline:.0%} of its revenue of the previous {said} "
        f"over the next {said}"
    )


def _scores_model(scores: ScoreTable | None) -> str | None:
    """The model name recorded with the scores (shown when no model is loaded)."""
    if scores is None or "model_name" not in scores.frame.columns:
        return None
    names = scores.frame["model_name"].dropna()
    return str(names.iloc[0]) if len(names) else None


def _page_context(request: Request, state: ServingState | None) -> dict[str, Any]:
    keys = _keys(request)
    scores = state.scores if state is not None else None
    model = state.model if state is not None else None
    model_version = model.version if model is not None else None
    meta: Mapping[str, Any] = model.scorer.meta if model is not None else {}
    return {
        "signed_in": keys.configured and page_role(request) is not None,
        "definition": _definition(meta),
        "fmt": Formats(_currency(request)),
        "static_url": static_url,
        "auth_configured": keys.configured,
        "model_name": (model.name if model is not None else None) or _scores_model(scores),
        "model_version": model_version,
        "scores": scores,
        "stale": scores is not None and model_version is not None
        and scores.model_version not in (None, model_version),
        "tier_names": TIERS,
    }


def _render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, template, context, status_code=status_code,
        headers={**SECURITY_HEADERS, **NO_STORE},
    )
    if (
        _keys(request).configured
        and request.cookies.get(KEY_COOKIE)
        and not request.cookies.get(HINT_COOKIE)
        and status_code < 400
        and page_role(request) is not None
    ):
        _set_hint(response, request)  # restores the hint the bounce removed
    return response


def _no_scores(request: Request, state: ServingState) -> HTMLResponse:
    reason = state.missing.get("scores", "no scores are loaded")
    return _render(
        request,
        "unavailable.html",
        {**_page_context(request, state), "reason": reason},
        status_code=503,
    )


# ------------------------------------------------------------------------------------------------
# Routes
# ------------------------------------------------------------------------------------------------
def _ago(day: date | None, as_of: date) -> str:
    """How long before the scoring date an event was, in days."""
    if day is None:
        return ""
    days = (as_of - day).days
    if days == 0:
        return "on the scoring date"
    return f"{days:,} day{'s' if days != 1 else ''} before the scoring date"


def _page_url(query: ListQuery, page: int) -> str:
    return replace(query, page=page).url(fragment="results")


@router.get("/", response_class=HTMLResponse)
def at_risk_page(request: Request) -> Response:
    """The ranked at-risk list: header figures, charts, filters and a sortable, paged table."""
    if page_role(request) is None:
        return _to_login(request)
    state: ServingState = request.app.state.serving
    if state.scores is None:
        return _no_scores(request, state)
    book = book_of(state.scores)
    query, problems = parse_list_query(request.query_params)
    formats = Formats(_currency(request))
    positions = book.select(query)
    total = len(positions)
    pages = max(1, math.ceil(total / query.size))
    if query.page > pages:
        query = replace(query, page=pages)
    start = (query.page - 1) * query.size
    shown = positions[start : start + query.size]
    selected_risk = float(np.nan_to_num(book.value_at_risk[positions], nan=0.0).sum())
    context = {
        **_page_context(request, state),
        "book": book,
        "summary": book.summary,
        "query": query,
        "problems": problems,
        "rows": table_rows(book, shown),
        "total": total,
        "pages": pages,
        "first": start + 1 if total else 0,
        "last": start + len(shown),
        "selected_risk": selected_risk,
        "tier_chart": tier_bars(book, positions, formats),
        "region_chart": region_bars(book, positions, formats),
        "scatter": scatter(book, positions, formats),
        "sorts": SORTS,
        "page_sizes": PAGE_SIZES,
        "cause_labels": CAUSE_LABELS,
        "owner_labels": OWNER_LABELS,
        "quadrant_labels": QUADRANTS,
        "pager": {
            "first": _page_url(query, 1) if query.page > 1 else None,
            "prev": _page_url(query, query.page - 1) if query.page > 1 else None,
            "next": _page_url(query, query.page + 1) if query.page < pages else None,
            "last": _page_url(query, pages) if query.page < pages else None,
        },
        "export_url": query.url("/export.csv", paging=False),
        "list_query": urlencode(query.params()),
    }
    return _render(request, "list.html", context)


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
def account_page(request: Request, account_id: str) -> Response:
    """One account: score, drivers, recommended actions, score history and last year's activity."""
    if page_role(request) is None:
        return _to_login(request)
    state: ServingState = request.app.state.serving
    if state.scores is None:
        return _no_scores(request, state)
    context = _page_context(request, state)
    back = request.query_params.get("back") or ""
    # the list's own query, passed along so "back" returns to the same view
    context["back_url"] = "/" + (f"?{back}" if back and len(back) < 2000 else "")
    body = state.scores.body(account_id)
    if body is None:
        context["account_id"] = account_id
        return _render(request, "not_found.html", context, status_code=404)
    score = json.loads(body)
    book = book_of(state.scores)
    formats = context["fmt"]
    as_of = date.fromisoformat(score["as_of"])
    store = read_account_store(request.app.state.settings.store_url_for(), account_id, as_of)
    drivers = score.get("drivers") or []
    driver_chart = bar_chart(
        [
            (
                FAMILY_LABELS.get(d.get("family"), str(d.get("family"))),
                float(d.get("contribution") or 0.0),
                f"+{float(d.get('contribution') or 0.0):.2f}",
                "driver",
            )
            for d in drivers
        ],
        title="What pushes the risk up",
        width=440,
        label_width=150,
        bar_max=230,
        row=28,
    )
    playbook = state.playbook.by_id if state.playbook is not None else {}
    taken = []
    if store.activity is not None and store.activity.actions_taken:
        for item in store.activity.actions_taken:
            action = playbook.get(item.get("action") or "")
            taken.append({**item, "title": action.title if action else item.get("action")})
    context.update(
        {
            "score": score,
            "account_id": account_id,
            "quadrant": quadrant_of(
                _number(score.get("defection_probability")),
                _number(score.get("value_at_stake")),
                book,
            ),
            "quadrant_labels": QUADRANTS,
            "book": book,
            "drivers": drivers,
            "driver_chart": driver_chart,
            "actions": score.get("actions") or [],
            "history": store.history,
            "history_line": history_line(store.history, formats),
            "activity": store.activity,
            "actions_taken": taken,
            "store_problem": store.problem,
            "family_labels": FAMILY_LABELS,
            "cause_labels": CAUSE_LABELS,
            "technique_labels": TECHNIQUE_LABELS,
            "owner_labels": OWNER_LABELS,
            "activity_days": ACTIVITY_DAYS,
            "ago": lambda day: _ago(day, as_of),
        }
    )
    return _render(request, "account.html", context)


@router.get("/export.csv")
def export_csv(request: Request) -> Response:
    """The filtered list as CSV: every matching account, in the list's order."""
    keys = _keys(request)
    if keys.configured:
        header = request.headers.get(API_KEY_HEADER)
        role = keys.role_of(header) if header else page_role(request)
        if role is None:
            return Response(
                "sign in at /login, or send an API key in the X-API-Key header\n",
                status_code=401,
                media_type="text/plain; charset=utf-8",
                headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"', **NO_STORE},
            )
    state: ServingState = request.app.state.serving
    if state.scores is None:
        reason = state.missing.get("scores", "no scores are loaded")
        return Response(f"{reason}\n", status_code=503, media_type="text/plain; charset=utf-8")
    query, problems = parse_list_query(request.query_params)
    if problems:
        # a dropped filter would silently export more accounts than asked for
        return Response(
            "; ".join(problems) + "\n", status_code=400, media_type="text/plain; charset=utf-8"
        )
    book = book_of(state.scores)
    positions = book.select(query)
    as_of = state.scores.as_of.isoformat() if state.scores.as_of else "latest"
    return StreamingResponse(
        export_lines(state.scores, positions),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="kam-at-risk-{as_of}.csv"',
            "X-Total-Count": str(len(positions)),
            **NO_STORE,
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    """The sign-in form (API key)."""
    target = _safe_next(request.query_params.get("next"))
    if not _keys(request).configured:
        return RedirectResponse(target, status_code=303)
    state = request.app.state.serving
    context = {**_page_context(request, state), "next": target, "error": None}
    has_key = bool(request.cookies.get(KEY_COOKIE))
    if request.cookies.get(HINT_COOKIE) and not has_key:
        # Signed in, but this request came from a link on another site, which does not carry
        # the SameSite=Strict key cookie: ask again from this site, which does. The hint is
        # dropped first, so a key that no longer works ends on the form instead of a loop.
        response = _render(request, "bounce.html", {**context, "target": target})
        response.delete_cookie(HINT_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=request.url.scheme == "https")
        return response
    if has_key and page_role(request) is None:
        context["error"] = "Your key is no longer valid. Sign in with a current key."
        response = _render(request, "login.html", context, status_code=401)
        _end_session(response, request)
        return response
    return _render(request, "login.html", context)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check a key with the API's constant-time comparison; on success keep it in a cookie."""
    if not _same_origin(request):
        return Response("cross-site sign-in refused\n", status_code=403,
                        media_type="text/plain; charset=utf-8")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_LOGIN_BODY):
        return Response("form too large\n", status_code=413, media_type="text/plain")
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY:
        return Response("form too large\n", status_code=413, media_type="text/plain")
    form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    key = (form.get("key") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    keys = _keys(request)
    if not keys.configured:
        return RedirectResponse(target, status_code=303)
    if keys.role_of(key) is None:
        state = request.app.state.serving
        context = {
            **_page_context(request, state),
            "next": target,
            "error": "That key is not valid." if key else "Enter your API key.",
        }
        response = _render(request, "login.html", context, status_code=401)
        _end_session(response, request)
        return response
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    _set_session(response, request, key)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Forget the key kept in this browser."""
    if not _same_origin(request):
        return Response("cross-site sign-out refused\n", status_code=403,
                        media_type="text/plain; charset=utf-8")
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    _end_session(response, request)
    return response


@router.get("/static/{name}")
def static_file(name: str, request: Request) -> Response:
    """The page's stylesheet and script (served here: the page loads nothing from elsewhere)."""
    if name not in STATIC_TYPES:
        return Response("not found\n", status_code=404, media_type="text/plain")
    data, digest = _static(name)
    etag = f'"{digest}"'
    headers = {
        "ETag": etag,
        # versioned URLs (?v=<digest>) change with the content, so browsers may keep them
        "Cache-Control": "public, max-age=31536000, immutable"
        if request.query_params.get("v") == digest
        else "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=STATIC_TYPES[name], headers=headers)
