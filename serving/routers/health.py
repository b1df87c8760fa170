"""``GET /healthz`` (the process is alive) and ``GET /readyz`` (it can score).

Both answer ``HEAD`` too (same status and headers, no body), as load balancers and uptime
checks that probe with ``HEAD`` expect; the ``HEAD`` routes stay out of the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from serving.dependencies import HolderDep
from serving.routers.responses import json_response
from serving.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness")
async def healthz() -> Response:
    """Always ``ok`` while the process answers (no authentication)."""
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness",
    responses={503: {"model": ReadyOut, "description": "not ready; `reason` says why"}},
)
async def readyz(holder: HolderDep) -> Response:
    """Ready when a model and a valid routing policy are loaded (no authentication: the
    reason names the kind of failure, never a host, path or library message)."""
    current = holder.current
    if current is None:
        reason = holder.readiness_problem
        body = {"ready": False, "model_version": None, "policy": None, "reason": reason}
        return json_response(body, status=503)
    body = {
        "ready": True,
        "model_version": current.version,
        "policy": current.policy.label,
        "reason": None,
    }
    return json_response(body)


router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)
