"""uvicorn's httptools protocol with the bounds it lacks: header time and size, connections.

uvicorn has no timeout for request headers that never finish: its keep-alive timeout covers
the idle time between requests and every byte received resets it, so a client that sends a
header a byte at a time (or opens a connection and sends nothing) holds its connection and a
file descriptor for ever; and nothing bounds the size of the headers it keeps in memory.
The body is bounded by the app itself (``serving.request_body``), but the app only sees a
request once its headers are complete.

``GuardedHttpToolsProtocol`` adds both bounds at the protocol level, where headers are parsed:

- **Time.** A request's headers must be complete within ``header_timeout`` seconds of its
  first byte, and a new connection must send its first request within the same time. When
  they do not, a request that began is answered ``408`` (``header_timeout``) and a
  connection that never sent anything is closed without a word, as idle connections are.
  Connections past due are found by one timer per server (``_HeaderWatch``), so the answer
  comes up to ``min(1 s, header_timeout / 2)`` after the timeout.
- **Size.** A request line and headers over ``max_header_bytes`` are answered ``431``
  (``headers_too_large``) before the rest is read. The parser reports the request target
  as it arrives but a header only once it is complete, so two lower bounds of the size are
  kept: the target and complete headers as reported, and the reads that neither began the
  request nor completed its headers. Either past the limit refuses, so a single header that
  never ends is refused at most one read (about 256 KB) past the limit.

- **Bodies after the answer.** A route that answers without reading its body (a 401, a
  health check) leaves the rest of the body to arrive after the answer; it, and then the
  next request, must arrive within ``header_timeout`` or the connection is closed, since
  each byte would reset uvicorn's keep-alive timer for ever.

- **Connections.** A worker serves at most ``max_connections`` open connections. One opened
  beyond them (while that many are open) answers its first request ``503``
  (``server_busy``, ``Retry-After: 1``) and is closed; the connections already open are
  untouched. Each connection may hold a body of up to ``SRL_MAX_BODY_BYTES``, so this also
  bounds a worker's memory. (uvicorn's own ``limit_concurrency`` answers 503 to the
  requests of *every* connection while too many are open, and keeps them all open.)

- **Framing.** A request the parser cannot read (a broken chunk size, two different
  ``Content-Length`` values, both ``Content-Length`` and chunked encoding, a control
  character in a header) is answered ``400`` (``invalid_http``) where uvicorn answers in
  plain text.

Every answer carries the API's JSON error body and closes the connection. ``srl serve``
runs uvicorn with this protocol (``serving.cli``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from weakref import WeakKeyDictionary

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.errors import error_body

logger = logging.getLogger(__name__)

INVALID_HTTP = (
    "the request is not valid HTTP/1.1 (its framing: request line, headers, Content-Length "
    "or chunked encoding)"
)
_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class _HeadersRefusedError(Exception):
    """Raised from a parser callback to stop parsing a request whose headers were refused."""


class _HeaderWatch:
    """The connections of one server that wait for request headers, checked by one timer.

    A request only notes when its headers are due, and one timer per server, running while
    any connection waits, looks every ``interval`` seconds for those past due: no timer is
    made and cancelled per request. (A first version with a timer per request measured
    slower at concurrency 32, but this one showed the same slow rounds; the two modes seen
    on this machine, not this choice, may explain both. See docs/serving.md.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.waiting: set[GuardedHttpToolsProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, protocol: GuardedHttpToolsProtocol) -> None:
        """Watch ``protocol`` until ``discard``; the sweep calls it once past its due time."""
        self.waiting.add(protocol)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval, self._sweep)

    def discard(self, protocol: GuardedHttpToolsProtocol) -> None:
        """Stop watching ``protocol`` (its headers arrived, or its connection closed)."""
        self.waiting.discard(protocol)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for protocol in [p for p in self.waiting if p.headers_due <= now]:
            self.waiting.discard(protocol)
            protocol.headers_too_slow()
        if self.waiting and self._timer is None:
            self._timer = self.loop.call_later(self.interval, self._sweep)


#: One watch per uvicorn server (its connections share the server's state object).
_WATCHES: WeakKeyDictionary[object, _HeaderWatch] = WeakKeyDictionary()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on request headers and open connections."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        max_header_bytes: int,
        max_connections: int,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.over_capacity = False
        self.headers_due = 0.0
        self._reported_bytes = 0
        self._received_bytes = 0
        self._watched = False
        self._headers_pending = False
        self._began_in_this_read = False
        #: The answer went out while the request's body was still arriving.
        self._draining = False
        self._refusal: tuple[int, str, str] | None = None
        watch = _WATCHES.get(self.server_state)
        if watch is None:
            watch = _HeaderWatch(self.loop, min(1.0, header_timeout / 2))
            _WATCHES[self.server_state] = watch
        self._watch = watch

    # Connection life
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock: the first request must arrive within the header timeout.

        A connection opened while ``max_connections`` others are open is marked over
        capacity: its first request is refused (``on_message_begin``).
        """
        super().connection_made(transport)  # adds this connection to the server's
        self.over_capacity = len(self.connections) > self.max_connections
        self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop watching with the connection."""
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does; a read that neither began a request nor completed its
        headers is all header bytes, and is counted against the limit."""
        self._began_in_this_read = False
        super().data_received(data)
        if not self._headers_pending or self._began_in_this_read:
            return
        if self.transport.is_closing():
            return
        self._received_bytes += len(data)
        if self._received_bytes > self.max_header_bytes:
            self._refuse_headers()
            self._answer_refusal()

    # Parser callbacks
    def on_message_begin(self) -> None:
        """A request's first byte: its headers are due within the header timeout.

        On a connection over capacity, the request is refused here, before its headers.
        """
        if self.over_capacity:
            self._refuse_connection()
            raise _HeadersRefusedError  # uvicorn stops parsing and calls send_400_response
        super().on_message_begin()
        self._headers_pending = self._began_in_this_read = True
        self._reported_bytes = self._received_bytes = 0
        if not self._watched:
            self._wait_for_headers()

    def on_url(self, url: bytes) -> None:
        """Count the request target against the header limit."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count each header against the header limit."""
        self._count(len(name) + len(value) + 4)  # ": " and CRLF as sent
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The headers arrived in time and in size: the request goes on as uvicorn's."""
        self._stop_waiting()
        self._headers_pending = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request's body has all arrived; one still arriving after its answer ends its
        drain here, and the next request is due as on a new connection."""
        super().on_message_complete()
        if self._draining:
            self._draining = False
            self._stop_waiting()
            self._wait_for_headers()

    def on_response_complete(self) -> None:
        """The answer is out; a request body still arriving must end within the header
        timeout.

        A route that answers without reading the body it was sent (any 401, ``/healthz``, a
        404) leaves the rest of it to arrive after the answer, and every byte of it resets
        uvicorn's keep-alive timer: a client trickling a body it declared large would hold
        its connection for ever, and enough of them every connection of the worker. The
        rest of the body, and then the next request's headers, are due within
        ``header_timeout``, or the connection is closed (``headers_too_slow``).
        """
        # With a pipelined request queued, ``cycle`` is that request, not the one answered
        # (whose body then ended, since the next request began after it): nothing drains.
        cycle = self.cycle
        answered_still_arriving = (
            not self.pipeline and cycle is not None and cycle.response_complete and cycle.more_body
        )
        super().on_response_complete()
        if answered_still_arriving and not self.transport.is_closing():
            self._draining = True
            self._stop_waiting()
            self._wait_for_headers()

    def send_400_response(self, msg: str) -> None:
        """The answer to a parser error (uvicorn's ``msg`` is logged by uvicorn itself): a
        JSON 400 ``invalid_http``, or this protocol's refusal when the error is that."""
        if self._refusal is None:
            self._answer(400, "invalid_http", INVALID_HTTP)
        else:
            self._answer_refusal()

    def headers_too_slow(self) -> None:
        """Called by the watch once the headers are past due."""
        self._watched = False
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._wait_for_headers()  # a pipelined request waits for the one before it
            return
        if self._draining:
            logger.warning("connection closed", extra={"error": "body_after_answer_timeout"})
            self.transport.close()  # the body of an answered request never ended
            return
        if not self._headers_pending:
            self.transport.close()  # connected, never asked anything: close as idle
            return
        message = f"the request headers did not arrive within {self.header_timeout:g} s"
        logger.warning("request refused", extra={"status": 408, "error": "header_timeout"})
        self._answer(408, "header_timeout", message)

    # Bounds
    def _count(self, size: int) -> None:
        self._reported_bytes += size
        if self._reported_bytes > self.max_header_bytes:
            self._refuse_headers()
            raise _HeadersRefusedError  # uvicorn stops parsing and calls send_400_response

    def _refuse_headers(self) -> None:
        message = f"the request line and headers are larger than {self.max_header_bytes} bytes"
        self._refusal = (431, "headers_too_large", message)
        logger.warning("request refused", extra={"status": 431, "error": "headers_too_large"})

    def _refuse_connection(self) -> None:
        message = (
            f"this worker already serves {self.max_connections} connections; "
            "retry on a new connection"
        )
        self._refusal = (503, "server_busy", message)
        logger.warning("request refused", extra={"status": 503, "error": "server_busy"})

    def _answer_refusal(self) -> None:
        assert self._refusal is not None
        self._answer(*self._refusal)

    def _wait_for_headers(self) -> None:
        self.headers_due = self.loop.time() + self.header_timeout
        self._watched = True
        self._watch.add(self)

    def _stop_waiting(self) -> None:
        if self._watched:
            self._watched = False
            self._watch.discard(self)

    def _answer(self, status: int, code: str, message: str) -> None:
        body = error_body(code, message, request_id=None)  # before any request id exists
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        if status == 503:
            head += b"retry-after: 1\r\n"
        head += b"connection: close\r\n\r\n"
        self.transport.write(head + body)
        self.transport.close()
