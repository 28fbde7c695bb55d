"""Signing in with an API key: the sign-in form, sign-out, and the redirect to the form.

When API keys are configured, a browser signs in once with a key (``/login``) and is given a
signed, expiring session token in a cookie (:mod:`kam.serving.web.cookies`), never the key.
Failed sign-ins count against the client address and the key tried, as failed API calls do
(:class:`kam.serving.api.guard.FailureLimiter`): past the limit the form answers 429 without
checking the key. Sign-in and sign-out are refused when a browser says the form was posted
from another site.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kam.serving.api.guard import FailureLimiter, client_address, subjects
from kam.serving.i18n.messages import N_
from kam.serving.web.cookies import (
    HINT_COOKIE,
    KEY_COOKIE,
    end_session,
    keys_of,
    page_role,
    set_session,
)
from kam.serving.web.render import SECURITY_HEADERS, page_context, render

MAX_LOGIN_BODY = 4096

router = APIRouter(include_in_schema=False)


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


def to_login(request: Request) -> RedirectResponse:
    """A redirect to the sign-in form that returns to this page."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": here}), status_code=303,
                            headers=SECURITY_HEADERS)


def _same_origin(request: Request) -> bool:
    """False when a browser says the form was posted from another site."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    """The sign-in form (API key)."""
    target = _safe_next(request.query_params.get("next"))
    if not keys_of(request).configured:
        return RedirectResponse(target, status_code=303)
    state = request.app.state.serving
    context = {**page_context(request, state), "next": target, "error": None}
    has_key = bool(request.cookies.get(KEY_COOKIE))
    if request.cookies.get(HINT_COOKIE) and not has_key:
        # Signed in, but this request came from a link on another site, which does not carry
        # the SameSite=Strict key cookie: ask again from this site, which does. The hint is
        # dropped first, so a key that no longer works ends on the form instead of a loop.
        response = render(request, "bounce.html", {**context, "target": target})
        response.delete_cookie(HINT_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=request.url.scheme == "https")
        return response
    if has_key and page_role(request) is None:
        context["error"] = N_("Your key is no longer valid. Sign in with a current key.")
        response = render(request, "login.html", context, status_code=401)
        end_session(response, request)
        return response
    return render(request, "login.html", context)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check a key with the API's constant-time comparison; on success start a session."""
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
    keys = keys_of(request)
    if not keys.configured:
        return RedirectResponse(target, status_code=303)
    limiter: FailureLimiter = request.app.state.auth_limiter
    about = subjects(client_address(request.scope), key or None)
    wait = limiter.retry_after(*about)
    if wait or keys.role_of(key) is None:
        if not wait:
            limiter.failed(*about)
        state = request.app.state.serving
        if wait:
            error, fields = N_("Too many failed sign-ins. Try again in %(seconds)s seconds."), {
                "seconds": wait
            }
        else:
            error = N_("That key is not valid.") if key else N_("Enter your API key.")
            fields = {}
        context = {
            **page_context(request, state),
            "next": target,
            "error": error,
            "error_fields": fields,
        }
        response = render(request, "login.html", context, status_code=429 if wait else 401)
        if wait:
            response.headers["Retry-After"] = str(wait)
        end_session(response, request)
        return response
    redirect = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    set_session(redirect, request, key)
    return redirect


@router.post("/logout")
def logout(request: Request) -> Response:
    """End this browser's session."""
    if not _same_origin(request):
        return Response("cross-site sign-out refused\n", status_code=403,
                        media_type="text/plain; charset=utf-8")
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    end_session(response, request)
    return response
