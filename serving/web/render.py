"""Rendering the managers' pages: templates, the context every page shares, response headers.

Pages are rendered on the server from the scores already in memory (``app.state.serving``).
Every response carries a Content-Security-Policy that allows only this app's own assets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from kam.models.metadata import TrainingMetadata
from kam.serving.i18n.languages import (
    DEFAULT_LANGUAGE,
    LANGUAGE_COOKIE,
    LANGUAGE_PARAM,
    NAMES,
    known,
    negotiate,
)
from kam.serving.i18n.messages import N_, translator
from kam.serving.state import ScoreTable, ServingState
from kam.serving.web.assets import static_url
from kam.serving.web.cookies import HINT_COOKIE, KEY_COOKIE, keys_of, page_role, set_hint
from kam.serving.web.formats import Formats, currency_of
from kam.serving.web.labels import LABELS, TIERS

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
# gettext, ngettext and _ come with each page's context, in the page's language
templates.env.add_extension("jinja2.ext.i18n")
LANGUAGE_SECONDS = 365 * 24 * 3600


_UNITS = {
    "day": N_("%(num)s days"), "week": N_("%(num)s weeks"), "month": N_("%(num)s months"),
    "year": N_("%(num)s years"),
}


def _definition(trained: TrainingMetadata, formats: Formats) -> str:
    """What "defection" means for the served model, in words."""
    decline, horizon = trained.decline, trained.horizon
    unit = _UNITS.get(horizon.unit)
    said = (
        formats.say(unit, num=horizon.count) if unit
        else f"{horizon.count} {horizon.unit}{'s' if horizon.count != 1 else ''}"
    )
    if decline >= 1:
        return formats.say("stops buying over the next %(span)s", span=said)
    return formats.say(
        "buys less than %(share)s of its revenue of the previous %(span)s over the next %(span)s",
        share=formats.pct(1 - decline, 0), span=said,
    )


def page_language(request: Request) -> str:
    """The page's language: ``?lang=``, the cookie, ``Accept-Language``, ``KAM_LANGUAGE``."""
    default = getattr(request.app.state.settings, "language", DEFAULT_LANGUAGE)
    return negotiate(request.query_params, request.cookies, request.headers, default)


def page_formats(request: Request) -> Formats:
    """How this request's page writes numbers, dates and words."""
    return Formats(currency_of(request), page_language(request))


def _switch_url(request: Request, language: str) -> str:
    """This page in the other language (the choice is then kept in a cookie)."""
    other = "en" if language == "zh-CN" else "zh-CN"
    params = [(k, v) for k, v in request.query_params.multi_items() if k != LANGUAGE_PARAM]
    return request.url.path + "?" + urlencode([*params, (LANGUAGE_PARAM, other)])


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
    formats = page_formats(request)
    language = formats.language
    other = "en" if language == "zh-CN" else "zh-CN"
    scores = state.scores if state is not None else None
    model = state.model if state is not None else None
    model_version = model.version if model is not None else None
    # without a model, the definition the product trains by default
    trained = model.metadata if model is not None else TrainingMetadata()
    return {
        "signed_in": keys.configured and page_role(request) is not None,
        "definition": _definition(trained, formats),
        "fmt": formats,
        "language": language,
        "labels": LABELS[language],
        "switch_url": _switch_url(request, language),
        "switch_name": NAMES[other],
        "switch_language": other,
        **translator(language).callables,
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
    language = context.get("language") or page_language(request)
    response = templates.TemplateResponse(
        request, template, context, status_code=status_code,
        headers={**SECURITY_HEADERS, **NO_STORE, "Content-Language": language},
    )
    if known(request.query_params.get(LANGUAGE_PARAM)) is not None:
        # the page's switch: keep the choice for the pages that follow
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=LANGUAGE_SECONDS, path="/",
            secure=request.url.scheme == "https", httponly=True, samesite="lax",
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
    formats = page_formats(request)
    reason = state.missing.get("scores") or formats.say("no scores are loaded")
    return render(
        request,
        "unavailable.html",
        {**page_context(request, state), "reason": reason},
        status_code=503,
    )
