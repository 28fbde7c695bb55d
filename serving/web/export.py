"""The list as CSV: the rows of ``GET /v1/at-risk`` for the same filters, every page.

Cells a spreadsheet would run as a formula are written with a leading quote.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from kam.serving.record import RECORD, formula_safe
from kam.serving.state import ScoreTable, ServingState
from kam.serving.web.book import book_of
from kam.serving.web.cookies import keys_of, page_role
from kam.serving.web.query import parse_list_query
from kam.serving.web.render import NO_STORE

API_KEY_HEADER = "X-API-Key"

router = APIRouter(include_in_schema=False)


EXPORT_COLUMNS = RECORD.export_headers


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
    return formula_safe(str(value))


def export_record(body: Mapping[str, Any]) -> list[str]:
    """One export row from an account's API body (``AccountScore`` JSON).

    Parameters
    ----------
    body
        The account's score as the API returns it.

    Returns
    -------
    list of str
        The cells of :data:`EXPORT_COLUMNS` (the summary columns from the first driver and
        action, as the record says), text that could run as a formula quoted.
    """
    return [_cell(value) for value in RECORD.export_values(body)]


def export_lines(table: ScoreTable, positions: np.ndarray, chunk: int = 2000) -> Iterator[bytes]:
    """The CSV in chunks: a byte-order mark (spreadsheets then read UTF-8 names), header, rows.

    Parameters
    ----------
    table
        The loaded scores.
    positions
        The accounts to export, in the order of the rows.
    chunk
        Rows encoded per chunk yielded.

    Returns
    -------
    Iterator of bytes
        UTF-8 text of the whole file, in chunks.
    """
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


@router.get("/export.csv")
def export_csv(request: Request) -> Response:
    """The filtered list as CSV: every matching account, in the list's order."""
    keys = keys_of(request)
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
    book = book_of(state)
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
