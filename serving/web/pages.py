"""The managers' pages: the ranked at-risk list and one account's page.

The list's filters, sort order and page live in the URL (:mod:`kam.serving.web.query`), so a
view can be shared as a link. An account page adds the account's score history and its last
year of orders, contacts and complaints, read from the store.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from kam.serving.decisions.phrasebook import UNTRANSLATED
from kam.serving.decisions.vocabulary import label
from kam.serving.i18n.texts import said_action, said_driver
from kam.serving.record import RECORD
from kam.serving.state import ServingState
from kam.serving.store import ACTIVITY_DAYS, none_if_missing, read_account_store
from kam.serving.web.book import Book, book_of
from kam.serving.web.charts import bar_chart, history_line, region_bars, tier_bars
from kam.serving.web.cookies import page_role
from kam.serving.web.formats import Formats, finite
from kam.serving.web.labels import QUADRANT_NAMES, QUADRANTS
from kam.serving.web.query import PAGE_SIZES, SORTS, ListQuery, parse_list_query
from kam.serving.web.render import no_scores, page_context, page_formats, render
from kam.serving.web.scatter import quadrant_of, scatter
from kam.serving.web.signin import to_login

router = APIRouter(include_in_schema=False)


ROW_COLUMNS = RECORD.page_columns


def table_rows(book: Book, positions: np.ndarray, language: str = "en") -> list[dict[str, Any]]:
    """The table's rows for ``positions``, as dicts of the scores' columns.

    Parameters
    ----------
    book
        The prepared book.
    positions
        The accounts on this page of the list.
    language
        The page's language: in Chinese the top driver and first action are the Chinese
        texts (``top_driver_zh``, ``first_action_zh``), English marked ``[EN] `` for scores
        written before they existed.

    Returns
    -------
    list of dict
        Per account, :data:`ROW_COLUMNS` (None where missing) and ``href``, its page's path.
    """
    frame = book.table.frame
    present = [c for c in ROW_COLUMNS if c in frame.columns]
    chunk = frame.iloc[positions][present]
    rows = []
    for record in chunk.to_dict("records"):
        row = {c: none_if_missing(record.get(c)) for c in ROW_COLUMNS}
        row["account_id"] = str(row["account_id"])
        row["href"] = account_href(row["account_id"])
        if language == "zh-CN":
            for name in ("top_driver", "first_action"):
                english = row[name]
                row[name] = row[name + "_zh"] or (english and UNTRANSLATED + english)
        rows.append(row)
    return rows


def account_href(account_id: str) -> str:
    """The path of an account's page."""
    return "/accounts/" + quote(account_id, safe="")


def _ago(day: date | None, as_of: date, formats: Formats) -> str:
    """How long before the scoring date an event was, in days."""
    if day is None:
        return ""
    days = (as_of - day).days
    if days == 0:
        return formats.say("on the scoring date")
    if days == 1:
        return formats.say("1 day before the scoring date")
    return formats.say("%(n)s days before the scoring date", n=formats.count(days))


def _page_url(query: ListQuery, page: int) -> str:
    """The link to another page of the same view, scrolled to the results."""
    return replace(query, page=page).url(fragment="results")


@router.get("/", response_class=HTMLResponse)
def at_risk_page(request: Request) -> Response:
    """The ranked at-risk list: header figures, charts, filters and a sortable, paged table."""
    if page_role(request) is None:
        return to_login(request)
    state: ServingState = request.app.state.serving
    if state.scores is None:
        return no_scores(request, state)
    book = book_of(state)
    formats = page_formats(request)
    query, problems = parse_list_query(request.query_params, formats.say)
    positions = book.select(query)
    total = len(positions)
    pages = max(1, math.ceil(total / query.size))
    if query.page > pages:
        query = replace(query, page=pages)
    start = (query.page - 1) * query.size
    shown = positions[start : start + query.size]
    selected_risk = float(np.nan_to_num(book.value_at_risk[positions], nan=0.0).sum())
    context = {
        **page_context(request, state),
        "book": book,
        "summary": book.summary,
        "query": query,
        "problems": problems,
        "rows": table_rows(book, shown, formats.language),
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
    return render(request, "list.html", context)


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
def account_page(request: Request, account_id: str) -> Response:
    """One account: score, drivers, recommended actions, score history and last year's activity."""
    if page_role(request) is None:
        return to_login(request)
    state: ServingState = request.app.state.serving
    if state.scores is None:
        return no_scores(request, state)
    context = page_context(request, state)
    back = request.query_params.get("back") or ""
    # the list's own query, passed along so "back" returns to the same view
    context["back_url"] = "/" + (f"?{back}" if back and len(back) < 2000 else "")
    body = state.scores.body(account_id)
    if body is None:
        context["account_id"] = account_id
        return render(request, "not_found.html", context, status_code=404)
    score = json.loads(body)
    book = book_of(state)
    formats = context["fmt"]
    as_of = date.fromisoformat(score["as_of"])
    store = read_account_store(request.app.state.settings.store_url_for(), account_id, as_of)
    drivers = score.get("drivers") or []
    driver_chart = bar_chart(
        [
            (
                label("families", str(d.get("family")), formats.language) or "",
                float(d.get("contribution") or 0.0),
                f"+{float(d.get('contribution') or 0.0):.2f}",
                "driver",
            )
            for d in drivers
        ],
        title=formats.say("What pushes the risk up"),
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
            title = action.said("title", formats.language) if action else item.get("action")
            taken.append({**item, "title": title})
    context.update(
        {
            "score": score,
            "account_id": account_id,
            "quadrant": quadrant_of(
                finite(score.get("defection_probability")),
                finite(score.get("value_at_stake")),
                book,
            ),
            "quadrant_labels": QUADRANTS,
            "quadrant_names": QUADRANT_NAMES,
            "book": book,
            "drivers": [said_driver(d, formats.language) for d in drivers],
            "driver_chart": driver_chart,
            "actions": [said_action(a, formats.language) for a in score.get("actions") or []],
            "history": store.history,
            "history_line": history_line(store.history, formats),
            "activity": store.activity,
            "actions_taken": taken,
            "store_problem": store.problem,
            "activity_days": ACTIVITY_DAYS,
            "ago": lambda day: _ago(day, as_of, formats),
        }
    )
    return render(request, "account.html", context)
