"""The FastAPI application: ``create_app(settings)`` builds it; its lifespan loads the model.

Nothing happens at import time. ``srl serve`` (``serving.cli``) runs the factory under
uvicorn; tests call it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from features.records import ScoreRequest
from serving.batch_signals import PARENT_GONE_GRACE_SECONDS, end_with_parent
from serving.coalescing import Coalescer
from serving.dependencies import auth_dependencies
from serving.errors import install_error_handlers
from serving.logs import hide_websocket_paths, silence_access_log
from serving.metrics import Metrics
from serving.middleware import LoopbackOnly, RequestContext
from serving.model_holder import ModelHolder
from serving.request_body import BodyLimit
from serving.routers import admin, document, health, metrics, model, scores
from serving.routers.responses import errors
from serving.schemas import batch_request_model
from serving.service import Scoring
from serving.settings import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Scores sales-rejected leads for marketing automation: a calibrated probability that the
lead re-converts within the horizon, a nurture route from the routing policy, and the
reasons in plain words. The body is the lead's own rows as in the data contract (lead,
rejection, activities, opportunities, consent, earlier rejections, as_of).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the scoring API.

    Args:
        settings: the service settings (read from the ``SRL_*`` environment when None).
    """
    settings = settings or Settings()
    silence_access_log()
    app = FastAPI(
        title="SRL Rebound scoring API",
        version="1",
        description=DESCRIPTION,
        lifespan=_lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # `/v1/score/` is an unknown route (a JSON 404), not a redirect to a Location built
        # from the client's Host header, which a client following it would send its key
        # and body to.
        redirect_slashes=False,
        # The service exports its own Prometheus metrics and structured logs.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.holder = ModelHolder(settings, app.state.metrics)
    app.state.coalescer = _coalescer(settings, app.state.metrics)
    # Batches are validated and scored off the event loop, one at a time per worker.
    app.state.batch_gate = threading.Semaphore(1)
    install_error_handlers(app)
    batch_model = batch_request_model(settings.max_batch_items)
    _include_routers(app, settings, batch_model)
    hide_websocket_paths([getattr(route, "path", "") for route in app.routes])
    _document_bodies(app, [ScoreRequest, batch_model])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if not (settings.auth_enabled or settings.allow_public_bind):
        app.add_middleware(LoopbackOnly)
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    return app


def _coalescer(settings: Settings, metrics: Metrics) -> Coalescer:
    """Scores waiting ``/v1/score`` calls together (one at a time with ``SRL_COALESCE`` off)."""

    def observe(scoring: Scoring, requests: int) -> None:
        metrics.observe_scores("single", scoring.probability, scoring.routes)
        metrics.observe_coalesced(requests)

    return Coalescer(settings.max_batch_items if settings.coalesce else 1, observe)


def _document_bodies(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Add the bodies routes validate themselves to the OpenAPI components.

    FastAPI documents only bodies declared as endpoint parameters; the scoring routes read
    theirs from the bytes (``serving.request_body.parse_json_body``) and refer to these.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _, definitions = models_json_schema(
                [(model, "validation") for model in models],
                ref_template="#/components/schemas/{model}",
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(definitions.get("$defs", {}))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _include_routers(app: FastAPI, settings: Settings, batch_model: type[BaseModel]) -> None:
    guard = auth_dependencies(settings)
    unauthorized = errors(401) if settings.auth_enabled else {}
    app.include_router(health.router)
    for router in (
        scores.scores_router(batch_model),
        model.router,
        admin.router,
        metrics.router,
    ):
        app.include_router(router, dependencies=guard, responses=unauthorized)
    app.include_router(document.router, dependencies=guard)
    if not settings.auth_enabled:
        app.include_router(document.docs_router)
    app.router.routes[0:0] = scores.direct_routes(settings, batch_model)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    holder: ModelHolder = app.state.holder
    settings: Settings = app.state.settings
    supervisor = multiprocessing.parent_process()
    if settings.reload_signal is not None and supervisor is not None and supervisor.pid:
        # A worker of `srl serve --workers N` must not outlive its supervisor (kill -9, the
        # out-of-memory killer), even one that died while this worker was starting.
        # Its graceful stop (on the kernel's SIGTERM) may answer a call for a whole budget.
        grace = settings.request_timeout_seconds + PARENT_GONE_GRACE_SECONDS
        end_with_parent(supervisor.pid, grace)
    first_load = asyncio.create_task(holder.reload("start"))
    try:
        await asyncio.wait_for(asyncio.shield(first_load), settings.startup_wait_seconds)
    except TimeoutError:
        logger.warning("model still loading; not ready yet", extra={"uri": settings.model_uri})
    if holder.current is None:
        logger.error("not ready", extra={"reason": holder.problem})
    watcher = asyncio.create_task(holder.watch())
    try:
        yield
    finally:
        watcher.cancel()
        first_load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
