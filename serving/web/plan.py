"""The plan view (``/plan``): per owner, the accounts, actions, due dates, expected savings and
the capacity the plan uses, as ``kam plan`` chose them. Filters (owner, region, account manager)
live in the URL, as the list's do."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from kam.serving.decision_tables import read_plan
from kam.serving.i18n.messages import N_
from kam.serving.scoring.planning import owner_summary, select_plan, unproven_rows
from kam.serving.state import ServingState
from kam.serving.store import none_if_missing
from kam.serving.web.cookies import page_role
from kam.serving.web.render import page_context, render
from kam.serving.web.signin import to_login

router = APIRouter(include_in_schema=False)
FILTERS = ("owner", "region", "account_manager")
# The owners' units of capacity as each language writes them
UNITS: dict[str, dict[str, str]] = {"zh-CN": {"h": "小时", "visit": "次拜访"}}


def _in_language(item: dict[str, Any], state: ServingState, language: str) -> dict[str, Any]:
    """A plan row with the action's title in the page's language."""
    action = state.playbook.by_id.get(str(item.get("action_id")))
    if action is not None:
        item["title"] = action.said("title", language) or item.get("title")
    return item


@router.get("/plan", response_class=HTMLResponse)
def plan_page(request: Request) -> Response:
    """The latest plan, per owner, with the capacity each owner's part uses."""
    if page_role(request) is None:
        return to_login(request)
    state: ServingState = request.app.state.serving
    context = page_context(request, state)
    chosen = {k: (request.query_params.get(k) or "").strip() or None for k in FILTERS}
    language = context["language"]
    context.update({"filters": chosen, "groups": [], "problem": None, "problem_fields": {},
                    "units": UNITS.get(language, {})})
    try:
        rows = read_plan(request.app.state.settings.store_url_for())
    except Exception as err:  # any backend's error: a writer holding the file, no file
        context["problem"] = N_("The store cannot be read right now (%(error)s).")
        context["problem_fields"] = {"error": err}
        return render(request, "plan.html", context, status_code=503)
    if rows is None:
        context["problem"] = N_("No plan has been made yet: run %(command)s")
        context["problem_fields"] = {"command": "kam plan --capacity AR=120h,..."}
        return render(request, "plan.html", context, status_code=404)
    if rows.empty:
        context["problem"] = N_(
            "The latest plan has no action: no recommended action has a saving the actions "
            "history supports or favours (see kam effects)."
        )
        return render(request, "plan.html", context, status_code=404)
    try:
        shown = select_plan(rows, state.playbook, **chosen)
    except ValueError as err:
        context["problem"] = N_("%(error)s")
        context["problem_fields"] = {"error": err}
        return render(request, "plan.html", context, status_code=422)
    groups: list[dict[str, Any]] = []
    for load in owner_summary(shown, state.playbook):
        mine = shown[shown["owner"] == load["owner"]]
        items = [_in_language({str(k): none_if_missing(v) for k, v in r.items()},
                              state, language)
                 for r in mine.to_dict("records")]
        capacity = float(load["capacity"])  # type: ignore[arg-type]
        used = float(load["used"])  # type: ignore[arg-type]
        groups.append({**load, "items": items,
                       "share": used / capacity if capacity > 0 else 0.0})
    context.update({
        "groups": groups,
        "total": float(shown["expected_saving"].sum()),
        "unproven_total": float(shown.loc[unproven_rows(shown), "expected_saving"].sum()),
        "count": len(shown),
        "plan_as_of": none_if_missing(rows["as_of"].iloc[0]),
        "planned_at": none_if_missing(rows["planned_at"].iloc[0]),
        "regions": sorted(rows["region"].dropna().astype(str).unique()),
        "managers": sorted(rows["account_manager"].dropna().astype(str).unique()),
        "owners": list(state.playbook.owners),
    })
    return render(request, "plan.html", context)
