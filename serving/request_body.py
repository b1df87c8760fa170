"""Request bodies: size-limited, and read as strict JSON (no NaN or Infinity).

The scoring routes validate their bodies themselves, straight from the bytes
(``parse_json_body``), and fail with FastAPI's ``RequestValidationError`` like any route.

pydantic's JSON parser, like Python's ``json``, takes ``NaN``, ``Infinity`` and
``-Infinity``, which are not JSON. A body holding either word anywhere is first parsed by
orjson, which refuses them, so it fails as invalid JSON before any field is looked at; a body
without them is validated straight away. (orjson also refuses a number past a float's range;
then the words are looked for outside strings instead.)

A number past a float's range, ``1e999`` or a 400-digit integer, is infinite or a huge
integer to pydantic: a numeric field refuses it, a field of another type refuses its type,
and a customer's extra column keeps it, where a numeric custom feature counts it as missing,
as files' non-finite numbers. pydantic's parser refuses outright a number with more than
``MAX_INTEGER_DIGITS`` digits before its point, before any field is known; such a body is
validated again with each of those numbers written as the float it reads as (``1e999``), so
the error names the field like any other number past a float's range.

The size limit answers 413 from the ``Content-Length`` header without reading the body,
and stops reading a streamed body as soon as it passes the limit. A body sent with
``Content-Encoding: gzip`` is inflated under the same limit (``decoded_body``), so a small
body that would inflate to gigabytes is refused as soon as it passes it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import zlib
from typing import TypeVar

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.records import RECORD_MODELS, ScoreRequest, ids_context
from serving.errors import ApiError
from serving.middleware import send_error
from serving.service import Deadline

Body = TypeVar("Body", bound=BaseModel)

#: pydantic's JSON parser refuses a number with more digits than this before its point.
MAX_INTEGER_DIGITS = 4300
#: A JSON string (or an unterminated one, to the end), so that what it holds is skipped.
_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"?'
_STRINGS = re.compile(_STRING, re.DOTALL)
#: ... or a long number that does not continue another one (``0`` then digits is not JSON,
#: and stays not JSON). The look-behind keeps the search linear: inside a run of digits no
#: position starts a match, so a body of many runs just under the limit costs one pass.
_STRING_OR_LONG_NUMBER = re.compile(
    _STRING
    + rb"|(?<![0-9.eE+\-])(-?[1-9][0-9]{%d,}(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    % MAX_INTEGER_DIGITS,
    re.DOTALL,
)


#: Bytes after which counting ``":`` may miss a key: an escape, or white space that may
#: stand before a colon (single bytes first: searching for them is cheapest).
_NOT_COUNTABLE = (b"\\", b"\n", b"\r", b"\t", b" :")
#: Every field name of the contract's records: a repeated one is named in the error.
CONTRACT_FIELD_NAMES = frozenset(
    {"items", *(name for record in (ScoreRequest, *RECORD_MODELS) for name in record.model_fields)}
)

#: ``Content-Encoding`` values (RFC 9110, 8.4.1) of a gzip body; ``identity`` means none.
GZIP_CODINGS = frozenset({"gzip", "x-gzip"})
#: zlib's window setting for gzip framing (header and CRC-32 checked).
_GZIP_WINDOW = 16 + zlib.MAX_WBITS


class BodyTooLargeError(ApiError):
    """The body passed the configured limit while it was being read: a 413 that closes the
    connection, so the rest of the body is not read (as when ``Content-Length`` says so)."""

    def __init__(self, limit: int) -> None:
        message = f"the request body is larger than {limit} bytes"
        super().__init__(413, "body_too_large", message, headers={"Connection": "close"})


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
                raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"the request body is larger than {self.max_bytes} bytes"
        await send_error(scope, send, 413, "body_too_large", message, [(b"connection", b"close")])


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

    A body naming ``NaN`` or ``Infinity`` is checked for strict JSON first (the words may
    also sit inside a string; then it passes); pydantic then validates the bytes themselves,
    which is faster than validating the parsed dict. A number too long for pydantic's parser
    is validated as the float it reads as (see the module's note).

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
    context = ids_context(body)
    try:
        parsed = model.model_validate_json(body, context=context)
    except ValidationError as error:
        if not _has_too_long_number(error):
            raise _request_error(error) from None
        body = _long_numbers_as_floats(body)
        try:
            parsed = model.model_validate_json(body, context=context)
        except ValidationError as error:
            raise _request_error(error) from None
    _refuse_repeated_keys(body, parsed)
    return parsed


def _refuse_repeated_keys(body: bytes, parsed: BaseModel) -> None:
    """Refuse a body with a key twice in one object.

    A JSON parser keeps one of the two values (pydantic's the last); another reader of the
    same bytes, a proxy or an audit log, may keep the other, and so see another request: a
    ``reason_code`` of ``do_not_contact`` followed by ``budget`` would be routed. Counting
    is enough when the body has no escape and no white space before a colon: every ``":``
    then ends a key, and as many keys as the validated request holds means none is
    repeated (about a tenth of the validation's time for a lead with 45 activities).
    Any other body (escapes, pretty-printed, objects in custom columns) is parsed once more
    to find out.

    Raises:
        RequestValidationError: naming the key when it is a field of the contract.
    """
    if _countable(body) and body.count(b'":') == _keys_read(parsed):
        return
    repeated = _repeated_key(body)
    if repeated is None:
        return
    name = repr(repeated) if repeated in CONTRACT_FIELD_NAMES else "a key"
    raise RequestValidationError(
        [
            {
                "type": "repeated_key",
                "loc": ("body",),
                "msg": f"holds {name} twice in one object: send each key once",
            }
        ]
    )


def _countable(body: bytes) -> bool:
    """Whether every key of ``body`` is written ``"name":`` (no escape, no white space
    before the colon), so that counting ``":`` counts its keys.

    A JSON string holds no raw line break or tab, so those bytes are white space between
    tokens: a pretty-printed body, looked at more closely.
    """
    return not any(byte in body for byte in _NOT_COUNTABLE)


def _keys_read(parsed: BaseModel) -> int:
    """How many keys the validated body holds (the top level's and each request's)."""
    if isinstance(parsed, ScoreRequest):
        return parsed.keys_given()
    items: list[ScoreRequest] = getattr(parsed, "items", [])
    return len(parsed.model_fields_set) + sum(item.keys_given() for item in items)


def _repeated_key(body: bytes) -> str | None:
    """The first key found twice in one object of ``body`` (None when there is none)."""
    repeated: list[str] = []

    def check_object(pairs: list[tuple[str, object]]) -> None:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and not repeated:
                repeated.append(key)
            seen.add(key)

    try:
        json.loads(body, object_pairs_hook=check_object, parse_int=float)
    except ValueError:  # read by pydantic, so JSON; nothing more to learn here
        return None
    return repeated[0] if repeated else None


def _request_error(error: ValidationError) -> RequestValidationError:
    """``error`` as FastAPI's, without the values sent."""
    return RequestValidationError(
        error.errors(include_url=False, include_input=False, include_context=False)
    )


def _check_strict_json(body: bytes) -> None:
    """Raise ``RequestValidationError`` if the body holds ``NaN`` or ``Infinity`` as a value.

    orjson, which refuses them, parses the body first; it also refuses a number past a
    float's range (which pydantic reads), so when it refuses, the words are looked for
    outside strings. Whatever else it refused is left to pydantic's parser, as in a body
    without the words.
    """
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        outside_strings = _STRINGS.sub(b"", body)
        if b"NaN" in outside_strings or b"Infinity" in outside_strings:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
            ) from None


def _has_too_long_number(error: ValidationError) -> bool:
    """Whether pydantic's parser gave up on the body at a number with too many digits."""
    problems = error.errors(include_url=False, include_input=False)
    return (
        len(problems) == 1
        and problems[0]["type"] == "json_invalid"
        and "number out of range" in problems[0]["msg"]
    )


def _long_numbers_as_floats(body: bytes) -> bytes:
    """``body`` with every number of more than ``MAX_INTEGER_DIGITS`` digits before its point
    written as the float it reads as (``1e999`` when past a float's range); strings untouched.
    """
    return _STRING_OR_LONG_NUMBER.sub(_float_literal, body)


def _float_literal(match: re.Match[bytes]) -> bytes:
    """A long number (group 1) as a float literal; a string as it is."""
    number = match[1]
    if number is None:
        return match[0]
    value = float(number)
    if math.isinf(value):
        return b"-1e999" if value < 0 else b"1e999"
    return repr(value).encode()


def parse_score_request(body: bytes, content_type: str | None = None) -> ScoreRequest:
    """A ``/v1/score`` body validated from its bytes (see ``parse_json_body``)."""
    return parse_json_body(body, content_type, ScoreRequest)


async def read_body(request: Request, budget: Deadline) -> bytes:
    """The request's body, read within the request's time budget.

    A client that stalls mid-body would otherwise hold its connection and the request's
    task for ever; one that goes away, or breaks the chunked framing (the server then
    reports a disconnect), is the client's fault, not the service's.

    Raises:
        ApiError: 408 when the whole body has not arrived within the budget; 400 when the
            client closed the connection before sending all of it.
    """
    try:
        async with asyncio.timeout(budget.remaining()):
            return await request.body()
    except TimeoutError:
        raise ApiError(
            408,
            "body_timeout",
            f"the body did not arrive within {budget.seconds:g} s",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise ApiError(
            400, "client_disconnected", "the connection closed before the whole body arrived"
        ) from None


def decoded_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """``body`` without its ``Content-Encoding``: none, ``identity`` or ``gzip``.

    A gzip body (one or more members, as ``gzip.compress`` or ``cat a.gz b.gz`` write it)
    is inflated to at most ``max_bytes``, the limit of a plain body.

    Raises:
        ApiError: 415 ``unsupported_encoding`` for any other coding (named in the
            ``Content-Encoding`` field); 413 ``body_too_large`` when the inflated body
            passes ``max_bytes``; 400 ``invalid_encoding`` when the gzip data is broken or
            cut short.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return body
    if len(codings) > 1 or codings[0] not in GZIP_CODINGS:
        raise ApiError(
            415,
            "unsupported_encoding",
            "the body's Content-Encoding is not supported: send it as is or as gzip",
            [
                {
                    "field": "header.content-encoding",
                    "problem": "only gzip (or identity) is supported",
                    "type": "unsupported_encoding",
                }
            ],
        )
    return _gunzip(body, max_bytes) if body else body


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    """Every gzip member of ``data`` inflated, stopping once past ``max_bytes``."""
    inflated = bytearray()
    while data:
        inflater = zlib.decompressobj(_GZIP_WINDOW)
        try:
            inflated += inflater.decompress(data, max_bytes + 1 - len(inflated))
        except zlib.error:
            raise _broken_gzip("the body is not valid gzip data") from None
        if len(inflated) > max_bytes:
            raise ApiError(
                413,
                "body_too_large",
                f"the request body is larger than {max_bytes} bytes once decompressed",
            )
        if not inflater.eof:
            raise _broken_gzip("the gzip data ends before its last member does")
        data = inflater.unused_data
    return bytes(inflated)


def _broken_gzip(message: str) -> ApiError:
    return ApiError(
        400,
        "invalid_encoding",
        message,
        [{"field": "body", "problem": message, "type": "invalid_encoding"}],
    )
