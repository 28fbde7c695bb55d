"""Who the browser is: the API key it signed in with, kept in a cookie.

The key is kept in an HttpOnly, SameSite=Strict cookie and checked exactly like the
``X-API-Key`` header. A second cookie, without any secret, says that a key cookie was set: a
link followed from another site does not carry the key cookie, and the hint lets the sign-in
page re-request it from this site, which does.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request
from fastapi.responses import Response

from kam.serving.api.auth import ApiKeys, Role

SESSION_SECONDS = 8 * 3600  # a working day; then sign in again
KEY_COOKIE = "kam_key"
# No secret: says a key cookie was set, so that a link followed from another site (which does
# not carry the SameSite=Strict key cookie) can be re-requested from this site, which does.
HINT_COOKIE = "kam_signed_in"


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


def keys_of(request: Request) -> ApiKeys:
    """The API keys the service was started with."""
    return request.app.state.api_keys


def page_role(request: Request) -> Role | None:
    """The role of the signed-in browser; every role when no keys are configured."""
    keys = keys_of(request)
    if not keys.configured:  # open mode: the server binds loopback only
        return Role.ADMIN
    return keys.role_of(_decode_key(request.cookies.get(KEY_COOKIE)))


def set_session(response: Response, request: Request, key: str) -> None:
    """Keep ``key`` in this browser for :data:`SESSION_SECONDS`, with the hint beside it."""
    # Secure only over https: on loopback http a Secure cookie would never be sent back
    response.set_cookie(
        KEY_COOKIE, _encode_key(key), max_age=SESSION_SECONDS, path="/",
        secure=request.url.scheme == "https", httponly=True, samesite="strict",
    )
    set_hint(response, request)


def set_hint(response: Response, request: Request) -> None:
    """Set the cookie saying that this browser holds a key cookie."""
    response.set_cookie(
        HINT_COOKIE, "1", max_age=SESSION_SECONDS, path="/",
        secure=request.url.scheme == "https", httponly=True, samesite="lax",
    )


def end_session(response: Response, request: Request) -> None:
    """Delete the key cookie and its hint."""
    secure = request.url.scheme == "https"
    response.delete_cookie(KEY_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    response.delete_cookie(HINT_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
