"""Who the browser is: a signed, expiring session token, kept in a cookie.

Signing in with an API key (:mod:`kam.serving.web.signin`) gives the browser a token, never the
key: ``<payload>.<signature>``, the payload holding the expiry and a fingerprint of the key
(an HMAC of its digest under the server's session secret), the signature an HMAC-SHA256 of the
payload under the same secret. The token is checked on every page: signature, expiry, and that
the fingerprint is still one of a configured key, whose role it then gets; so a key removed
from the configuration ends its sessions too.

The cookie is HttpOnly and SameSite=Strict, and Secure over https and whenever the service
listens beyond loopback; only a service bound to loopback, over plain http, sets it without
(a Secure cookie would never be sent back there). A second cookie, without any secret,
says that a session cookie was set: a link followed from another site does not carry the
session cookie, and the hint lets the sign-in page re-request it from this site, which does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import Response

from kam.serving.api.auth import ApiKeys, Role

SESSION_SECONDS = 8 * 3600  # a working day; then sign in again
KEY_COOKIE = "kam_session"
# No secret: says a session cookie was set, so that a link followed from another site (which
# does not carry the SameSite=Strict session cookie) can be re-requested from this site.
HINT_COOKIE = "kam_signed_in"
MAX_TOKEN_CHARS = 512


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session tokens for the configured keys.

    Parameters
    ----------
    keys
        The configured keys (as digests).
    secret
        The signing secret; a random one when None (sessions then end at a restart).
    clock
        Unix time now (a parameter so that expiry can be tested).
    """

    def __init__(
        self, keys: ApiKeys, secret: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = (secret or secrets.token_urlsafe(32)).encode()
        self._clock = clock
        self._roles = {self._fingerprint(d): Role.ADMIN for d in keys.admin}
        for digest in keys.user:
            self._roles.setdefault(self._fingerprint(digest), Role.USER)

    def _fingerprint(self, digest: bytes) -> str:
        return hmac.new(self._secret, b"key:" + digest, hashlib.sha256).hexdigest()[:32]

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def issue(self, key: str, seconds: int = SESSION_SECONDS) -> str:
        """A token for ``key`` (a configured key) valid for ``seconds``."""
        digest = hashlib.sha256(key.encode()).digest()
        body = {"k": self._fingerprint(digest), "x": int(self._clock()) + seconds}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def role_of(self, token: str | None) -> Role | None:
        """The role of a valid, unexpired token; None for anything else."""
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            return None
        payload, signature = token.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            body = json.loads(_unb64(payload))
            expires, fingerprint = int(body["x"]), str(body["k"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        if expires <= self._clock():
            return None
        return self._roles.get(fingerprint)


def keys_of(request: Request) -> ApiKeys:
    """The API keys the service was started with."""
    return request.app.state.api_keys


def sessions_of(request: Request) -> SessionSigner:
    """The app's session signer."""
    return request.app.state.sessions


def page_role(request: Request) -> Role | None:
    """The role of the signed-in browser; every role when no keys are configured."""
    if not keys_of(request).configured:  # open mode: the server binds loopback only
        return Role.ADMIN
    return sessions_of(request).role_of(request.cookies.get(KEY_COOKIE))


def secure_cookies(request: Request) -> bool:
    """Secure cookies over https, and always when the service listens beyond loopback (where
    https is expected in front of it, e.g. a proxy that terminates TLS)."""
    if request.url.scheme == "https":
        return True
    from kam.serving.api.server import is_loopback  # the server module imports the pages

    return not is_loopback(request.app.state.settings.host)


def set_session(response: Response, request: Request, key: str) -> None:
    """Give this browser a session for ``key`` for :data:`SESSION_SECONDS`, and the hint."""
    response.set_cookie(
        KEY_COOKIE, sessions_of(request).issue(key), max_age=SESSION_SECONDS, path="/",
        secure=secure_cookies(request), httponly=True, samesite="strict",
    )
    set_hint(response, request)


def set_hint(response: Response, request: Request) -> None:
    """Set the cookie saying that this browser holds a session cookie."""
    response.set_cookie(
        HINT_COOKIE, "1", max_age=SESSION_SECONDS, path="/",
        secure=secure_cookies(request), httponly=True, samesite="lax",
    )


def end_session(response: Response, request: Request) -> None:
    """Delete the session cookie and its hint."""
    secure = secure_cookies(request)
    response.delete_cookie(KEY_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    response.delete_cookie(HINT_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
