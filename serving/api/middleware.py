"""What wraps every request: a request id, an access log line, and gzip for large bodies.

:class:`RequestIdMiddleware` takes the caller's ``X-Request-ID`` when it is a sane token (or
makes one), puts it on the response and on the scope (problem details quote it), and logs one
line per request on the ``kam.access`` logger: method, path, status, bytes, milliseconds, id.
The query string is left out of the log: it can carry account ids and filters that belong to
the caller. Both middlewares are plain ASGI: a ``BaseHTTPMiddleware`` would cost a task per
request on the hot path.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_SCOPE_KEY = "kam.request_id"
# a caller's id is kept only when it is short and plain, so it cannot forge log lines
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# bodies below this many bytes are not worth compressing (one score is about 2 KB)
GZIP_MINIMUM_SIZE = 1024
# level 5: most of level 9's ratio on JSON at a fraction of its time
GZIP_LEVEL = 5

access_logger = logging.getLogger("kam.access")


def enable_access_log() -> None:
    """Let ``kam.access`` lines out: to stderr unless logging is configured already.

    uvicorn configures only its own loggers; without a handler of its own, a process that
    configured nothing would drop the lines (Python's last-resort handler shows warnings
    only). Where the root logger has handlers (an application's logging set-up, pytest), the
    lines go there instead, and nowhere twice.
    """
    if access_logger.level == logging.NOTSET:
        access_logger.setLevel(logging.INFO)
    if not access_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        access_logger.addHandler(handler)


def request_id_of(scope: MutableMapping[str, Any]) -> str | None:
    """The request id given to a request by :class:`RequestIdMiddleware`."""
    value = scope.get(_SCOPE_KEY)
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    """Give each HTTP request an id (``X-Request-ID``) and log it when answered."""

    def __init__(self, app: ASGIApp, logger: logging.Logger = access_logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if given and _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        scope[_SCOPE_KEY] = request_id
        started = time.perf_counter()
        status = 500
        size = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                self.logger.info(
                    '%s "%s %s" %d %dB %.1fms id=%s',
                    client[0] if client else "-",
                    scope["method"],
                    scope["path"],
                    status,
                    size,
                    (time.perf_counter() - started) * 1000,
                    request_id,
                )
