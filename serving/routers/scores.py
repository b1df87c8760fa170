"""``POST /v1/score`` and ``POST /v1/score/batch``.

Annotations here are evaluated when the routes are defined (no ``from __future__ import
annotations``): the batch body's model is built per app, with its configured size limit.
"""

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Body, Query
from starlette.responses import Response

from features.records import ScoreRequest
from serving.dependencies import Scoring as ScoringDep
from serving.dependencies import ScoringContext
from serving.examples import EXAMPLE_REQUEST
from serving.request_body import StrictJSONRoute
from serving.routers.responses import SCORING_ERRORS, json_response
from serving.schemas import BatchResponse, ScoreResult, batch_request_model
from serving.service import Deadline, Scoring, score_requests

MAX_REASONS = 50

ReasonsQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_REASONS,
        description="Reasons per lead, strongest first (0: none; default SRL_REASONS_DEFAULT).",
    ),
]


def scores_router(max_batch_items: int) -> APIRouter:
    """The scoring routes, with the batch size limit in the batch body's schema."""
    router = APIRouter(prefix="/v1/score", tags=["scores"], route_class=StrictJSONRoute)
    batch_model = batch_request_model(max_batch_items)

    @router.post(
        "",
        response_model=ScoreResult,
        responses=SCORING_ERRORS,
        summary="Score one lead",
    )
    async def score(
        body: Annotated[
            ScoreRequest,
            Body(openapi_examples={"budget rejection": {"value": EXAMPLE_REQUEST}}),
        ],
        context: ScoringDep,
        reasons: ReasonsQuery = None,
    ) -> Response:
        """Score, route and explain one rejection of one lead from its raw rows."""
        return json_response(_score(context, [body], reasons, "single").results[0])

    @router.post(
        "/batch",
        response_model=BatchResponse,
        responses=SCORING_ERRORS,
        summary="Score several leads",
    )
    async def score_batch(
        body: Annotated[batch_model, Body()],  # type: ignore[valid-type] # built per app
        context: ScoringDep,
        reasons: ReasonsQuery = None,
    ) -> Response:
        """Score up to the configured number of leads; results in the order of ``items``."""
        items = body.items  # type: ignore[attr-defined] # a BatchRequest
        scoring = _score(context, items, reasons, "batch")
        return json_response(
            {
                "results": scoring.results,
                "model_version": context.deployment.version,
                "request_id": context.request_id,
            }
        )

    return router


def _score(
    context: ScoringContext, requests: Sequence[ScoreRequest], reasons: int | None, endpoint: str
) -> Scoring:
    settings = context.settings
    top_k = settings.reasons_default if reasons is None else reasons
    scoring = score_requests(
        context.deployment,
        requests,
        top_k=top_k,
        request_id=context.request_id,
        deadline=Deadline(settings.request_timeout_seconds),
    )
    context.metrics.observe_scores(endpoint, scoring.probability, scoring.routes)
    return scoring
