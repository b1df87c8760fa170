"""``GET /metrics``: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from serving.dependencies import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        }
    },
)
async def metrics(metrics: MetricsDep) -> Response:
    """Requests, latency, errors, score distribution, routed programs and model version."""
    content, media_type = metrics.exposition()
    return Response(content, media_type=media_type)
