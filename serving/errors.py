"""Errors as JSON with one stable shape, naming fields but never echoing their values.

Every error body is ``{"error": {"code", "message", "request_id", "fields"}}`` where
``fields`` lists ``{"field": "lead.created_at", "problem": "...", "type": "..."}``. Pydantic's
messages describe the rule that was broken ("Input should be a valid integer"); the input
itself, which may hold personal data, is dropped. A field's path is the caller's too when it
holds an unknown key (``{"ann.smith@example.com": 1}``): ``shown_field`` shows a key only
when it looks like a field name.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from features.contract import holds_email_address
from serving.service import DeadlineExceeded

logger = logging.getLogger(__name__)

STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "body_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


#: At most this many problems are listed in one error body; the message gives the total.
MAX_LISTED_PROBLEMS = 50
#: A field's path is shown up to this many characters (a bound on the whole path; each of
#: its keys is bounded by ``FIELD_NAME``).
MAX_FIELD_NAME_CHARS = 200
#: What a key must look like to be shown: a field name (ASCII letters, digits, ``_``, ``.``
#: and ``-``, at most 64 characters); any other key may be personal data.
FIELD_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: How an error body names a key that does not look like a field name.
UNKNOWN_FIELD = "<unknown field>"


class ApiError(Exception):
    """An error the API answers with its own status, code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.headers = dict(headers or {})


def error_body(
    code: str, message: str, request_id: str | None, fields: Iterable[Mapping[str, str]] = ()
) -> bytes:
    """The JSON bytes of every error answer, whichever layer sends it (app, ASGI, protocol)."""
    return orjson.dumps(
        {
            "error": {
                "code": code,
                "message": message,
                "request_id": request_id,
                "fields": list(fields),
            }
        }
    )


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    fields: Iterable[Mapping[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The JSON error response every failure goes through."""
    body = error_body(code, message, getattr(request.state, "request_id", None), fields)
    request.state.error_code = code
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def field_problems(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic / FastAPI validation errors as ``field``, ``problem``, ``type`` (no inputs)."""
    problems = []
    for error in errors:
        location = [shown_field(part) for part in error.get("loc", ()) if part != "body"]
        kind = str(error.get("type", "invalid"))
        if kind == "json_invalid":
            problems.append({"field": "body", "problem": _json_problem(error), "type": kind})
            continue
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        field = _shortened(".".join(location) or "body")
        problems.append({"field": field, "problem": message, "type": kind})
    return problems


#: What a body the JSON parser gave up on is told: valid JSON nested deeper than the
#: parser goes (pydantic's limit: 201 levels, every object and array counted) is not
#: called invalid.
TOO_DEEP = "nested too deeply (JSON arrays and objects more than 201 levels deep)"


def _json_problem(error: Mapping[str, Any]) -> str:
    return TOO_DEEP if "recursion limit" in str(error.get("msg", "")) else "not valid JSON"


def shown_field(part: str | int) -> str:
    """One step of a field's path as an error body shows it.

    A list position shows as its number. A key is the caller's: a known field's name, or an
    unknown key that may be anything (an e-mail address, a name, a phone number). It shows
    only when it looks like a field name (``FIELD_NAME``, holding no e-mail address);
    otherwise it is ``<unknown field>``, so ``{"lead": {"Ann Smith": 1}}`` is told about
    ``lead.<unknown field>``.
    """
    text = str(part)
    if isinstance(part, int) or (FIELD_NAME.fullmatch(text) and not holds_email_address(text)):
        return text
    return UNKNOWN_FIELD


def _shortened(name: str) -> str:
    if len(name) <= MAX_FIELD_NAME_CHARS:
        return name
    return name[: MAX_FIELD_NAME_CHARS - 1] + "…"


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = field_problems(error.errors())
    unparsed = [p for p in problems if p["type"] == "json_invalid"]
    if unparsed:
        told = "is " + TOO_DEEP if unparsed[0]["problem"] == TOO_DEEP else "is not valid JSON"
        return error_response(request, 422, "invalid_json", f"the body {told}", unparsed[:1])
    named = ", ".join(sorted({p["field"] for p in problems})[:5])
    message = f"invalid request: {named}"
    if len(problems) > MAX_LISTED_PROBLEMS:
        message += f" ({len(problems)} problems; the first {MAX_LISTED_PROBLEMS} are listed)"
    return error_response(request, 422, "validation_error", message, problems[:MAX_LISTED_PROBLEMS])


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = STATUS_CODES.get(error.status_code, "http_error")
    message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
    if error.status_code == 413:
        message = "the request body is too large"
    return error_response(request, error.status_code, code, message, headers=error.headers)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(
        request, error.status, error.code, error.message, error.fields, error.headers
    )


async def _unexpected(request: Request, error: Exception) -> Response:
    # The message of an exception may quote the data it failed on: log where, not what.
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown"
    logger.error(
        "unexpected error",
        extra={
            "error_type": type(error).__name__,
            "where": where,
            "request_id": getattr(request.state, "request_id", None),
        },
    )
    return error_response(request, 500, "internal_error", "the server failed to answer")


async def _deadline(request: Request, error: Exception) -> Response:
    return error_response(request, 503, "timeout", str(error), headers={"Retry-After": "1"})


def install_error_handlers(app: FastAPI) -> None:
    """Route every error the app can raise through ``error_response``."""
    app.add_exception_handler(DeadlineExceeded, _deadline)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Exception, _unexpected)
