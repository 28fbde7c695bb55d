"""What is checked before a request reaches a route: its size, its key, and how often it failed.

:class:`RequestGuard` is a plain ASGI middleware in front of the app, so a body is never read,
let alone parsed, for a caller without a valid key, and never beyond
``KAM_MAX_BODY_BYTES``. FastAPI would parse the body before any route dependency runs.
(Oversized request lines and headers are refused earlier still, by the HTTP protocol:
:mod:`kam.serving.api.protocol`.)

:class:`FailureLimiter` counts failed key checks (API and ``/login``) per client address and
per presented key: past ``KAM_AUTH_FAILURES_PER_MINUTE`` in a minute, both are answered 429,
without checking the key, until the minute has passed. Guessing keys then costs a minute per
handful of guesses per address instead of allowing a thousand a second.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kam.serving.api.auth import ApiKeys
from kam.serving.api.deps import MISSING_KEY, WRONG_KEY
from kam.serving.api.problems import PROBLEM_JSON, problem_body

API_KEY_HEADER = b"x-api-key"
GUARDED_PREFIX = "/v1/"
WINDOW_SECONDS = 60.0
# Bounds the limiter's memory under a flood of distinct addresses or keys: the entries idle
# longest go first (an attacker can only push out other failures, never unlock itself early).
MAX_TRACKED = 20_000
TOO_MANY = "too many failed key checks: try again in {seconds} s"
TOO_LARGE = "request body larger than {limit} bytes"


class FailureLimiter:
    """Failed attempts per subject (a client address, a key digest) in a sliding minute.

    Thread-safe: sign-in runs in the thread pool, API checks on the event loop.
    """

    def __init__(
        self,
        per_window: int,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_window = per_window
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, subject: str, now: float) -> deque[float] | None:
        times = self._failures.get(subject)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[subject]
            return None
        return times

    def retry_after(self, *subjects: str) -> int:
        """Seconds until every subject may try again; 0 when none is over the limit."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for subject in subjects:
                times = self._recent(subject, now)
                if times is not None and len(times) >= self.per_window:
                    wait = max(wait, times[0] + self.window - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, *subjects: str) -> None:
        """Count one failure against each subject."""
        now = self.clock()
        with self._lock:
            for subject in subjects:
                times = self._recent(subject, now)
                if times is None:
                    times = self._failures[subject] = deque()
                times.append(now)
                self._failures.move_to_end(subject)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)


def subjects(client: str | None, key: str | None) -> tuple[str, ...]:
    """What a failure counts against: the client address and, if one was sent, the key."""
    found = [f"ip:{client or '?'}"]
    if key:
        found.append("key:" + hashlib.sha256(key.encode()).hexdigest()[:32])
    return tuple(found)


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


class BodyTooLarge(HTTPException):
    """The body grew past the limit while it was being read (a body without a length).

    An HTTPException, so that FastAPI, which turns other errors met while reading a body into
    a 400, answers it as the 413 it is.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, TOO_LARGE.format(limit=limit), headers={"Connection": "close"})


async def _answer(scope: Scope, send: Send, status: int, detail: str,
                  headers: list[tuple[bytes, bytes]]) -> None:
    """Answer with problem details, as every error of the API is answered."""
    body = problem_body(scope, status, detail)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    })
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Refuses oversized bodies and, on `/v1` routes, missing, wrong or rate-limited keys,
    before anything reads the body."""

    def __init__(
        self, app: ASGIApp, keys: ApiKeys, limiter: FailureLimiter, max_body_bytes: int
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _answer(scope, send, 413, TOO_LARGE.format(limit=self.max_body),
                          [(b"connection", b"close")])
            return
        if self.keys.configured and scope["path"].startswith(GUARDED_PREFIX):
            raw = headers.get(API_KEY_HEADER)
            key = raw.decode("latin-1") if raw is not None else None
            if not await self._key_accepted(scope, send, key):
                return
        await self.app(scope, self._bounded(receive), send)

    async def _key_accepted(self, scope: Scope, send: Send, key: str | None) -> bool:
        """True for a valid key; otherwise answers 401 or 429 and returns False."""
        about = subjects(client_address(scope), key)
        unauthorized = [(b"www-authenticate", b'ApiKey header="X-API-Key"')]
        wait = self.limiter.retry_after(*about)
        if wait:
            await _answer(scope, send, 429, TOO_MANY.format(seconds=wait),
                          [(b"retry-after", str(wait).encode())])
            return False
        if self.keys.role_of(key) is not None:
            return True
        self.limiter.failed(*about)
        await _answer(scope, send, 401, WRONG_KEY if key else MISSING_KEY, unauthorized)
        return False

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` that fails once more than the limit has arrived (chunked bodies)."""
        seen = 0
        limit = self.max_body

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return bounded
