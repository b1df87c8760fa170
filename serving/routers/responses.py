"""Bytes responses (orjson) and the documented error responses shared by the routers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from serving.schemas import ErrorOut

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(content: Any, status: int = 200) -> Response:
    """A JSON response serialised by orjson (no second validation of trusted output)."""
    return Response(
        orjson.dumps(content, option=JSON_OPTIONS),
        status_code=status,
        media_type="application/json",
    )


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of the given error statuses."""
    descriptions = {
        400: "the connection closed before the whole body arrived, or the gzip body is broken",
        401: "missing or unknown X-API-Key",
        408: "the body did not arrive within the request's time budget",
        413: "the body (once decompressed) is larger than the configured maximum",
        415: "a Content-Encoding other than gzip or identity",
        422: "the body is not valid JSON or breaks the data contract (fields named)",
        503: "no model is loaded yet, or scoring ran past its time budget",
    }
    return {s: {"model": ErrorOut, "description": descriptions[s]} for s in statuses}


SCORING_ERRORS = errors(400, 408, 413, 415, 422, 503)
