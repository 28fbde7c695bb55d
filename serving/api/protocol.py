"""The HTTP protocol the server runs: uvicorn's httptools protocol with a bound on the head.

httptools accepts a request line and headers of any size and collects them before the app
sees anything: a 100 MB ``X-API-Key`` header stalled the event loop for seconds and took
hundreds of megabytes. Here a request whose line and headers are not complete within
``KAM_MAX_HEADER_BYTES`` is answered 431 and its connection closed, before the app is called.
The limit travels in uvicorn's ``h11_max_incomplete_event_size`` option, which means the same
thing for uvicorn's other protocol.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 64 << 10
TOO_LARGE = b"request line and headers too large\n"


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol, refusing a request head larger than the configured limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._head_bytes = 0
        self._in_head = True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request on this connection starts with its head
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # counted before parsing: the chunk may hold the end of the head and a body,
            # so a head is refused only once it alone could exceed the limit
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self._max_head and self.transport is not None:
            self._refuse()

    def _refuse(self) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(TOO_LARGE)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + TOO_LARGE
        )
        self.transport.close()
        self._in_head = False
