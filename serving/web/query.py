"""The list's query: filters, sort order and page, read from and written back to the URL.

The filters are those of ``GET /v1/at-risk``, so a view of the list, its CSV export and the API
select the same accounts; search, sort and page are the page's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from kam.serving.i18n.messages import N_
from kam.serving.web.labels import TIERS

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_QUERY_TEXT = 200
# column key -> (heading, default direction when first sorted by it)
SORTS: dict[str, tuple[str, str]] = {
    "account": (N_("Account"), "asc"),
    "tier": (N_("Tier"), "asc"),
    "region": (N_("Region"), "asc"),
    "manager": (N_("Manager"), "asc"),
    "probability": (N_("Defection risk"), "desc"),
    "value": (N_("Predicted value"), "desc"),
    "value_at_risk": (N_("Value at risk"), "desc"),
    "driver": (N_("Top driver"), "asc"),
    "action": (N_("First action"), "asc"),
}
DEFAULT_SORT = "value_at_risk"


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
        """Whether any filter or search narrows the list."""
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


def _english(message: str, **fields: Any) -> str:
    return message % fields


def parse_list_query(
    params: Any, say: Callable[..., str] = _english
) -> tuple[ListQuery, list[str]]:
    """The list's query from URL parameters, and a message for each value that was ignored.

    The page is lenient (a bad value is dropped and named); the export refuses instead.

    Parameters
    ----------
    params
        The request's query parameters (``getlist`` and ``get``, as Starlette's
        ``QueryParams``).
    say
        Writes a message in the page's language (``Formats.say``); English when not given.

    Returns
    -------
    tuple of (ListQuery, list of str)
        The query, with defaults in place of the values dropped, and one message per value
        dropped.
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
            problems.append(say("tier %(value)s is not A, B or C", value=repr(raw)))

    def text(name: str) -> str | None:
        value = (params.get(name) or "").strip()
        if len(value) > MAX_QUERY_TEXT:
            problems.append(
                say("%(name)s is longer than %(n)s characters", name=name, n=MAX_QUERY_TEXT)
            )
            return None
        return value or None

    minimum: float | None = None
    raw_min = (params.get("min_value_at_risk") or "").strip().replace(",", "")
    if raw_min:
        try:
            minimum = float(raw_min)
        except ValueError:
            problems.append(say("min_value_at_risk %(value)s is not a number", value=repr(raw_min)))
        else:
            if not math.isfinite(minimum) or minimum < 0:
                problems.append(
                    say("min_value_at_risk %(value)s must be zero or more", value=repr(raw_min))
                )
                minimum = None

    sort = params.get("sort") or DEFAULT_SORT
    if sort not in SORTS:
        problems.append(say("cannot sort by %(value)s", value=repr(sort)))
        sort = DEFAULT_SORT
    direction = params.get("dir") or SORTS[sort][1]
    if direction not in {"asc", "desc"}:
        problems.append(say("dir %(value)s is not asc or desc", value=repr(direction)))
        direction = SORTS[sort][1]

    def whole(name: str, default: int, allowed: Sequence[int] | None = None) -> int:
        raw = params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            problems.append(
                say("%(name)s %(value)s is not a whole number", name=name, value=repr(raw))
            )
            return default
        if value < 1 or (allowed is not None and value not in allowed):
            problems.append(say("%(name)s %(value)s is out of range", name=name, value=repr(raw)))
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
