"""``GET /openapi.json`` (behind the API key when keys are set) and ``GET /docs``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, Response

from serving.routers.responses import json_response

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> Response:
    """The OpenAPI document of this app."""
    return json_response(request.app.openapi())


docs_router = APIRouter(include_in_schema=False)


@docs_router.get("/docs")
async def docs() -> HTMLResponse:
    """Swagger UI (only when the API runs without keys, on a loopback address)."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="SRL Rebound scoring API")
