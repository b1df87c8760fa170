"""Request bodies: size-limited, and read as strict JSON (no NaN or Infinity).

The scoring routes validate their bodies themselves, straight from the bytes
(``parse_json_body``), and fail with FastAPI's ``RequestValidationError`` like any route.

pydantic's JSON parser, like Python's ``json``, takes ``NaN``, ``Infinity`` and
``-Infinity``, which are not JSON. A body holding either word anywhere is first parsed by
orjson, which refuses them, so it fails as invalid JSON before any field is looked at; a body
without them is validated straight away. (A number past a float's range, ``1e999`` or a
400-digit integer, is infinite or a huge integer to pydantic: a numeric field refuses it,
a field of another type refuses its type, and a customer's extra column keeps it, where a
numeric custom feature counts it as missing, as files' non-finite numbers.)

The size limit answers 413 from the ``Content-Length`` header without reading the body,
and stops reading a streamed body as soon as it passes the limit.
"""

from __future__ import annotations

from typing import TypeVar

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.records import ScoreRequest

Body = TypeVar("Body", bound=BaseModel)


class BodyTooLarge(HTTPException):
    """The body passed the configured limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """Refuse bodies larger than ``max_bytes`` with a JSON 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check ``Content-Length`` up front and count the bytes actually received."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        state = scope.setdefault("state", {})
        state["error_code"] = "body_too_large"
        body = orjson.dumps(
            {
                "error": {
                    "code": "body_too_large",
                    "message": f"the request body is larger than {self.max_bytes} bytes",
                    "request_id": state.get("request_id"),
                    "fields": [],
                }
            }
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/*+json``; a missing type is not JSON (as on
    every route with a declared body)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def parse_json_body(body: bytes, content_type: str | None, model: type[Body]) -> Body:
    """Validate a JSON body straight from its bytes into ``model``.

    A body naming ``NaN`` or ``Infinity`` is checked by orjson for strict JSON first (the
    words may also sit inside a string; then it passes); pydantic then validates the bytes
    themselves, which is faster than validating the parsed dict.

    Raises:
        RequestValidationError: not JSON (by content type or content), or not valid for
            ``model`` (fields named, values not).
    """
    if not _is_json(content_type):
        raise RequestValidationError(
            [{"type": "content_type", "loc": ("body",), "msg": "the body must be application/json"}]
        )
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
        )
    if b"NaN" in body or b"Infinity" in body:
        _check_strict_json(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError(
            error.errors(include_url=False, include_input=False, include_context=False)
        ) from None


def _check_strict_json(body: bytes) -> None:
    """Raise ``RequestValidationError`` unless orjson, which refuses NaN and Infinity, parses."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
        ) from None


def parse_score_request(body: bytes, content_type: str | None = None) -> ScoreRequest:
    """A ``/v1/score`` body validated from its bytes (see ``parse_json_body``)."""
    return parse_json_body(body, content_type, ScoreRequest)
