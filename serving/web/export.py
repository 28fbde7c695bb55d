"""The list as CSV: the rows of ``GET /v1/at-risk`` for the same filters, every page.

Cells a spreadsheet would run as a formula are written with a leading quote. The headers and the
texts people read (top driver, first action, its owner, the cause and the relationship stage)
are in the page's language; ``?columns=codes`` gives the stable machine-readable columns
(English field names as headers, codes as values) whatever the language.
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

from kam.serving.decisions.vocabulary import label
from kam.serving.i18n.texts import said
from kam.serving.record import RECORD, formula_safe
from kam.serving.state import ScoreTable, ServingState
from kam.serving.web.book import book_of
from kam.serving.web.cookies import keys_of, page_role
from kam.serving.web.query import parse_list_query
from kam.serving.web.render import NO_STORE, page_formats

API_KEY_HEADER = "X-API-Key"

router = APIRouter(include_in_schema=False)


EXPORT_COLUMNS = RECORD.export_headers
# The headers of a Chinese export, by the stable column name
HEADERS_ZH: dict[str, str] = {
    "rank": "排名",
    "account_id": "客户编号",
    "name": "客户名称",
    "industry": "行业",
    "region": "区域",
    "account_manager": "客户经理",
    "as_of": "评分日期",
    "tier": "客户等级",
    "relationship_stage": "关系阶段",
    "defection_probability": "流失风险",
    "value": "预测价值",
    "value_low": "预测价值下限",
    "value_high": "预测价值上限",
    "value_at_stake": "涉及收入",
    "value_at_risk": "风险价值",
    "top_driver": "首要风险因素",
    "top_driver_cause": "首要因素原因",
    "first_action": "首要行动",
    "first_action_owner": "首要行动负责人",
    "first_action_due": "首要行动截止日期",
    "drivers": "风险因素（JSON）",
    "actions": "建议行动（JSON）",
    "model_name": "模型名称",
    "model_version": "模型版本",
    "playbook_version": "行动手册版本",
    "scored_at": "评分时间",
    "first_action_saving": "首要行动预期节省",
}
CODES = "codes"  # ?columns=codes: the machine-readable columns


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


def _in_language(body: Mapping[str, Any], language: str) -> dict[str, Any]:
    """The body with the texts people read in ``language`` (codes in machine fields stay)."""
    if language == "en":
        return dict(body)
    drivers = body.get("drivers") or []
    actions = body.get("actions") or []
    first = actions[0] if actions else {}
    out = dict(body)
    out["relationship_stage"] = label("stages", body.get("relationship_stage"), language)
    # the summary columns come from the first items: translate those
    out["drivers"] = [
        {**d, "phrase": said(d, "phrase", language),
         "cause": label("causes", d.get("cause"), language)} if i == 0 else d
        for i, d in enumerate(drivers)
    ]
    out["actions"] = [
        {**a, "title": said(a, "title", language),
         "owner": label("owners", a.get("owner"), language)} if a is first else a
        for a in actions
    ]
    values = RECORD.export_values(out)
    # the list columns keep both languages as stored
    return {
        **dict(zip(EXPORT_COLUMNS, values, strict=True)),
        "drivers": drivers,
        "actions": actions,
    }


def export_record(body: Mapping[str, Any], language: str = "en") -> list[str]:
    """One export row from an account's API body (``AccountScore`` JSON).

    Parameters
    ----------
    body
        The account's score as the API returns it.
    language
        ``en`` (the stable columns) or ``zh-CN`` (texts people read in Chinese).

    Returns
    -------
    list of str
        The cells of :data:`EXPORT_COLUMNS` (the summary columns from the first driver and
        action, as the record says), text that could run as a formula quoted.
    """
    if language == "en":
        return [_cell(value) for value in RECORD.export_values(body)]
    said_body = _in_language(body, language)
    return [_cell(said_body.get(column)) for column in EXPORT_COLUMNS]


def export_lines(
    table: ScoreTable, positions: np.ndarray, chunk: int = 2000, language: str = "en"
) -> Iterator[bytes]:
    """The CSV in chunks: a byte-order mark (spreadsheets then read UTF-8 names), header, rows.

    Parameters
    ----------
    table
        The loaded scores.
    positions
        The accounts to export, in the order of the rows.
    chunk
        Rows encoded per chunk yielded.
    language
        The headers' and texts' language (``en``: the stable columns).

    Returns
    -------
    Iterator of bytes
        UTF-8 text of the whole file, in chunks.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    if language == "zh-CN":
        writer.writerow([HEADERS_ZH[c] for c in EXPORT_COLUMNS])
    else:
        writer.writerow(EXPORT_COLUMNS)
    for start in range(0, len(positions), chunk):
        for at in positions[start : start + chunk]:
            writer.writerow(export_record(json.loads(table.bodies[at]), language))
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
    formats = page_formats(request)
    language = "en" if request.query_params.get("columns") == CODES else formats.language
    query, problems = parse_list_query(request.query_params, formats.say)
    if problems:
        # a dropped filter would silently export more accounts than asked for
        return Response(
            "; ".join(problems) + "\n", status_code=400, media_type="text/plain; charset=utf-8"
        )
    book = book_of(state)
    positions = book.select(query)
    as_of = state.scores.as_of.isoformat() if state.scores.as_of else "latest"
    return StreamingResponse(
        export_lines(state.scores, positions, language=language),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="kam-at-risk-{as_of}.csv"',
            "X-Total-Count": str(len(positions)),
            "Content-Language": language,
            **NO_STORE,
            "X-Content-Type-Options": "nosniff",
        },
    )
