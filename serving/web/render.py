"""Rendering the managers' pages: templates, the context every page shares, response headers.

Pages are rendered on the server from the scores already in memory (``app.state.serving``).
Every response carries a Content-Security-Policy that allows only this app's own assets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from kam.models.metadata import TrainingMetadata
from kam.serving.state import ScoreTable, ServingState
from kam.serving.web.assets import static_url
from kam.serving.web.cookies import HINT_COOKIE, KEY_COOKIE, keys_of, page_role, set_hint
from kam.serving.web.formats import Formats, currency_of
from kam.serving.web.labels import TIERS

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

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _definition(trained: TrainingMetadata) -> str:
    """What "defection" means for the served model, in words."""
    decline, horizon = trained.decline, trained.horizon
    said = f"{horizon.count} {horizon.unit}{'s' if horizon.count != 1 else ''}"
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


def page_context(request: Request, state: ServingState | None) -> dict[str, Any]:
    """What every page shows: sign-in, model, scores, the definition of defection, formats.

    Parameters
    ----------
    request
        The request being answered.
    state
        The serving state, or None when there is none yet.

    Returns
    -------
    dict
        Template variables shared by every page.
    """
    keys = keys_of(request)
    scores = state.scores if state is not None else None
    model = state.model if state is not None else None
    model_version = model.version if model is not None else None
    # without a model, the definition the product trains by default
    trained = model.metadata if model is not None else TrainingMetadata()
    return {
        "signed_in": keys.configured and page_role(request) is not None,
        "definition": _definition(trained),
        "fmt": Formats(currency_of(request)),
        "static_url": static_url,
        "auth_configured": keys.configured,
        "model_name": (model.name if model is not None else None) or _scores_model(scores),
        "model_version": model_version,
        "scores": scores,
        "stale": scores is not None and model_version is not None
        and scores.model_version not in (None, model_version),
        "tier_names": TIERS,
    }


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A page from ``template``, with the security headers and never cached.

    Parameters
    ----------
    request
        The request being answered.
    template
        The template's file name in ``templates/``.
    context
        Its variables (:func:`page_context` and the page's own).
    status_code
        The response's status.

    Returns
    -------
    HTMLResponse
        The page; it also restores the sign-in hint cookie when the browser holds a valid key
        without it.
    """
    response = templates.TemplateResponse(
        request, template, context, status_code=status_code,
        headers={**SECURITY_HEADERS, **NO_STORE},
    )
    if (
        keys_of(request).configured
        and request.cookies.get(KEY_COOKIE)
        and not request.cookies.get(HINT_COOKIE)
        and status_code < 400
        and page_role(request) is not None
    ):
        set_hint(response, request)  # restores the hint the bounce removed
    return response


def no_scores(request: Request, state: ServingState) -> HTMLResponse:
    """The 503 page saying why no scores are loaded and what to run."""
    reason = state.missing.get("scores", "no scores are loaded")
    return render(
        request,
        "unavailable.html",
        {**page_context(request, state), "reason": reason},
        status_code=503,
    )
