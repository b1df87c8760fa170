"""``POST /v1/score`` and ``POST /v1/score/batch``.

Annotations here are evaluated when the routes are defined (no ``from __future__ import
annotations``): the batch body's model is built per app, with its configured size limit.
"""

import functools
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from features.records import ScoreRequest
from serving.coalescing import Coalescer
from serving.dependencies import (
    API_KEY_HEADER,
    ScoringContext,
    check_api_key,
    request_deadline,
    scoring_context,
)
from serving.examples import EXAMPLE_REQUEST
from serving.request_body import decoded_body, parse_json_body, parse_score_request, read_body
from serving.routers.responses import SCORING_ERRORS, json_response
from serving.schemas import BatchResponse, ScoreResult
from serving.service import Deadline, DeadlineExceeded, Scoring, score_requests
from serving.settings import Settings

MAX_REASONS = 50
Result = TypeVar("Result")
Body = TypeVar("Body", bound=BaseModel)
REASONS_DESCRIPTION = "Reasons per lead, strongest first (0: none; default SRL_REASONS_DEFAULT)."


def _digits_only(text: str) -> str:
    """Refuse what ``int()`` would read but a count is not written as (``1_0``, `` 3``)."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError("must be a whole number written with the digits 0-9")
    return text


ReasonsCount = Annotated[int, Field(ge=0, le=MAX_REASONS)]
_REASONS = TypeAdapter(Annotated[int, BeforeValidator(_digits_only), Field(ge=0, le=MAX_REASONS)])


def request_doc(schema: str, examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI ``reasons`` parameter and JSON body of a scoring route.

    The scoring routes read both themselves (``reasons_query``, ``parse_json_body``),
    without FastAPI's per-request dependency solving, so they are documented here; the body
    models are added to the document's components by ``serving.app``.
    """
    content: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    if examples:
        content["examples"] = examples
    return {
        "parameters": [
            {
                "name": "reasons",
                "in": "query",
                "required": False,
                "description": REASONS_DESCRIPTION,
                "schema": {
                    **TypeAdapter(ReasonsCount | None).json_schema(),
                    "title": "Reasons",
                    "description": REASONS_DESCRIPTION,
                },
            }
        ],
        "requestBody": {"required": True, "content": {"application/json": content}},
    }


def reasons_query(request: Request) -> int | None:
    """The ``reasons`` query parameter (None when absent).

    Raises:
        RequestValidationError: not a whole number from 0 to ``MAX_REASONS``.
    """
    text = request.query_params.get("reasons")
    if text is None:
        return None
    try:
        return _REASONS.validate_python(text)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError(
            [{**problem, "loc": ("query", "reasons")} for problem in problems]
        ) from None


Endpoint = Callable[[Request], Awaitable[Response]]


def scores_router(batch_model: type[BaseModel]) -> APIRouter:
    """The scoring routes as FastAPI documents them; ``batch_model`` is the batch body with
    the configured size limit (``serving.schemas.batch_request_model``).

    Requests are answered by ``direct_routes``, placed ahead of these: the same endpoints
    without FastAPI's per-request dependency solving.
    """
    router = APIRouter(prefix="/v1/score", tags=["scores"])
    router.post(
        "",
        response_model=ScoreResult,
        responses=SCORING_ERRORS,
        summary="Score one lead",
        openapi_extra=request_doc("ScoreRequest", {"budget rejection": {"value": EXAMPLE_REQUEST}}),
    )(score)
    router.post(
        "/batch",
        response_model=BatchResponse,
        responses=SCORING_ERRORS,
        summary="Score several leads",
        openapi_extra=request_doc("BatchRequest"),
    )(batch_endpoint(batch_model))
    return router


def direct_routes(settings: Settings, batch_model: type[BaseModel]) -> list[Route]:
    """``POST /v1/score`` and ``POST /v1/score/batch`` as plain Starlette routes.

    Each reads its own query and body already, so FastAPI's dependency solving would only
    check the API key: here the key is checked first (``check_api_key``), then the endpoint
    runs. Placed ahead of ``scores_router``'s routes, these answer every scoring call (about
    30 µs less per call); the others stay for the OpenAPI document.
    """
    return [
        _DirectRoute("/v1/score", _guarded(score, settings), methods=["POST"]),
        _DirectRoute(
            "/v1/score/batch", _guarded(batch_endpoint(batch_model), settings), methods=["POST"]
        ),
    ]


class _DirectRoute(Route):
    """A Starlette route that names itself in ``scope["route"]`` when it matches, as
    FastAPI's routes do (metrics and logs label requests by its path)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's match, with this route in the child scope."""
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def _guarded(endpoint: Endpoint, settings: Settings) -> Endpoint:
    """``endpoint`` behind the API-key check when keys are configured."""
    if not settings.auth_enabled:
        return endpoint

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        check_api_key(request.headers.get(API_KEY_HEADER), settings)
        return await endpoint(request)

    return guarded


def content_encoding(headers: Headers) -> str | None:
    """Every ``Content-Encoding`` line of a request as one list: codings sent on two lines
    are the same codings as on one (RFC 9110), so a proxy and this service read one body."""
    return ", ".join(headers.getlist("content-encoding")) or None


async def score(request: Request) -> Response:
    """Score, route and explain one rejection of one lead from its raw rows."""
    reasons = reasons_query(request)
    budget = request_deadline(request)
    raw = await read_body(request, budget)
    content = decoded_body(raw, content_encoding(request.headers), _max_bytes(request))
    body = parse_score_request(content, request.headers.get("content-type"))
    context = await scoring_context(request, budget)
    coalescer: Coalescer = request.app.state.coalescer
    result = await coalescer.score(
        context.deployment,
        body,
        top_k=context.top_k(reasons),
        request_id=context.request_id,
        deadline=context.deadline(),
    )
    return json_response(result)


def batch_endpoint(batch_model: type[BaseModel]) -> Endpoint:
    """``POST /v1/score/batch`` validating its body with ``batch_model``."""

    async def score_batch(request: Request) -> Response:
        """Score up to the configured number of leads; results in the order of ``items``."""
        reasons = reasons_query(request)
        headers = _BodyHeaders.of(request)
        budget = request_deadline(request)
        raw = await read_body(request, budget)
        gate: threading.Semaphore = request.app.state.batch_gate
        with _within(budget):
            body = await _in_turn(gate, budget, _parse_batch, raw, headers, batch_model)
            context = await scoring_context(request, budget)
            items = body.items
            scoring = await _in_turn(gate, budget, _score_batch, context, items, reasons, budget)
        context.metrics.observe_scores("batch", scoring.probability, scoring.routes)
        return json_response(
            {
                "results": scoring.results,
                "model_version": context.deployment.version,
                "request_id": context.request_id,
            }
        )

    return score_batch


def _max_bytes(request: Request) -> int:
    settings: Settings = request.app.state.settings
    return settings.max_body_bytes


@dataclass(frozen=True)
class _BodyHeaders:
    """What a batch's worker thread needs to know of its request to read the body."""

    content_type: str | None
    content_encoding: str | None
    max_bytes: int

    @classmethod
    def of(cls, request: Request) -> "_BodyHeaders":
        headers = request.headers
        return cls(headers.get("content-type"), content_encoding(headers), _max_bytes(request))


def _parse_batch(raw: bytes, headers: _BodyHeaders, batch_model: type[Body]) -> Body:
    """A batch body decoded (gzip) and validated, in the batch's worker thread."""
    content = decoded_body(raw, headers.content_encoding, headers.max_bytes)
    return parse_json_body(content, headers.content_type, batch_model)


@contextmanager
def _within(budget: Deadline) -> Iterator[None]:
    """Cancel the block when ``budget`` runs out, as ``DeadlineExceeded``.

    Work in a worker thread cannot be stopped where it stands: the answer (a 503) goes out
    on time, and the abandoned thread stops at its next check of the same budget.
    """
    try:
        with anyio.fail_after(budget.remaining()):
            yield
    except TimeoutError:
        raise DeadlineExceeded(f"scoring took longer than {budget.seconds:g} s") from None


async def _in_turn(
    gate: threading.Semaphore, budget: Deadline, work: Callable[..., Result], *args: Any
) -> Result:
    """``work(*args)`` in a worker thread, once ``gate`` lets it in and ``budget`` is left.

    The gate is held by the thread itself, for as long as it works: an abandoned thread
    (its call out of time) keeps it until it stops, so batches validate and score one at a
    time per worker whatever happened to the calls that started them, and a thread that
    waited past its budget does no work at all.
    """

    def when_let_in() -> Result:
        with gate:
            budget.check("waiting for another batch")
            return work(*args)

    return await anyio.to_thread.run_sync(when_let_in, abandon_on_cancel=True)


def _score_batch(
    context: ScoringContext,
    requests: Sequence[ScoreRequest],
    reasons: int | None,
    budget: Deadline,
) -> Scoring:
    return score_requests(
        context.deployment,
        requests,
        top_k=context.top_k(reasons),
        request_id=context.request_id,
        deadline=budget,
        one_call=True,
    )
