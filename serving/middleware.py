"""Per-request bookkeeping as plain ASGI: request id, timing, metrics and one log line; and
the guard that keeps an app without API keys to loopback connections."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_body
from serving.metrics import Metrics
from serving.settings import is_loopback

logger = logging.getLogger("serving.requests")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """Give each request an id, answer it in ``X-Request-ID``, count and log it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its id in ``scope["state"]``; record how it ended."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = started
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, state, status, time.perf_counter() - started, request_id)

    def _record(
        self, scope: Scope, state: dict[str, object], status: int, seconds: float, request_id: str
    ) -> None:
        route = _route_template(scope)
        error = state.get("error_code")
        error_code = str(error) if error is not None else (None if status < 400 else str(status))
        method = known_method(scope["method"])
        self.metrics.observe_request(route, method, status, seconds, error_code)
        level = _level(status)
        logger.log(
            level,
            "request",
            extra={
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "ms": round(seconds * 1000, 3),
                "error": error_code,
            },
        )


#: The methods a request is logged and counted under as sent; any other token (a server
#: that passes unknown methods to the app, as uvicorn's h11 protocol does) is ``other``,
#: so that a caller can neither grow the metrics' series nor write text into them.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def known_method(method: str) -> str:
    """``method`` when it is a standard HTTP method, else ``other``."""
    return method if method in KNOWN_METHODS else "other"


def _route_template(scope: Scope) -> str:
    """The template of the route the request was for (``unmatched`` when there is none),
    also when it was answered before routing (a body refused on its ``Content-Length``)."""
    route = scope.get("route")
    if route is None:
        routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    return getattr(route, "path", None) or "unmatched"


def _level(status: int) -> int:
    if status == 503:  # not ready yet, or out of time: the answer says why
        return logging.WARNING
    return logging.ERROR if status >= 500 else logging.INFO


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _VALID_ID.match(value):
            return value.decode()
    return uuid.uuid4().hex


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer with the API's JSON error body (``serving.errors``) from plain ASGI."""
    state = scope.setdefault("state", {})
    state["error_code"] = code
    body = error_body(code, message, state.get("request_id"))
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class LoopbackOnly:
    """Refuse, with a 403, a request that reached the server on an address that is not
    loopback: installed when no API key is configured and a public bind was not allowed,
    so that an app started by other means than ``srl serve`` (``uvicorn --host 0.0.0.0``)
    is not open to the network without keys.

    The address is the server's side of the connection (ASGI ``scope["server"]``): a
    loopback IP address (IPv4 written as IPv6 too) or ``localhost`` passes; any other IP
    address or host name is refused. A Unix socket (uvicorn gives its path and no port) or
    a server that gives no address is local and passes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 403 when it arrived on another address."""
        if scope["type"] == "http" and not _is_local(scope.get("server")):
            await send_error(
                scope,
                send,
                403,
                "forbidden",
                "this server has no API keys and answers only on loopback addresses: "
                "set SRL_API_KEYS, or SRL_ALLOW_PUBLIC_BIND=true",
            )
            return
        await self.app(scope, receive, send)


def _is_local(server: Any) -> bool:
    """Whether the server's side of a connection is local: no address or a Unix socket's
    path (no port), a loopback address, or ``localhost``."""
    if server is None or len(server) < 2 or server[1] is None:
        return True
    return _is_loopback(str(server[0]))


@lru_cache(maxsize=64)
def _is_loopback(host: str) -> bool:
    return is_loopback(host)
