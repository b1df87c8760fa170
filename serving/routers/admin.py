"""``POST /v1/admin/reload``: load the model source again and swap it in if it works."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from serving.dependencies import HolderDep
from serving.model_holder import ReloadOutcome
from serving.routers.responses import json_response
from serving.schemas import ReloadOut

router = APIRouter(prefix="/v1/admin", tags=["admin"])

#: Seconds a client should wait before retrying a reload that may work later.
RELOAD_RETRY_AFTER_SECONDS = 5


@router.post(
    "/reload",
    response_model=ReloadOut,
    responses={
        409: {
            "model": ReloadOut,
            "description": "refused for good: the version's files are damaged, it cannot "
            "score the example request, or the routing policy breaks a rule; the previous "
            "version keeps serving",
        },
        503: {
            "model": ReloadOut,
            "description": "could not reload now (the registry or the artifact store "
            "unreachable, a full disk, the files changing while read, the policy file "
            "unreadable); the previous version keeps serving; try again later "
            "(`Retry-After`)",
        },
    },
    summary="Reload",
)
async def reload(request: Request, holder: HolderDep) -> Response:
    """Reload the model and routing policy; on failure the serving version stays.

    200 when a version was swapped in; 409 when the new version or policy is refused for
    good; 503 when the reload may work later. The body says what serves now, either way.
    """
    outcome = await holder.reload_everywhere()
    response = json_response(
        {
            "reloaded": outcome.reloaded,
            "model_version": outcome.version,
            "previous_version": outcome.previous_version,
            "policy": outcome.policy,
            "message": outcome.message,
        },
        status=reload_status(outcome),
    )
    if response.status_code == 503:
        response.headers["Retry-After"] = str(RELOAD_RETRY_AFTER_SECONDS)
    if response.status_code in RELOAD_ERROR_CODES:  # counted and logged by name
        request.state.error_code = RELOAD_ERROR_CODES[response.status_code]
    return response


#: The error codes of a failed reload's answers (its body is the reload's outcome).
RELOAD_ERROR_CODES = {409: "reload_refused", 503: "reload_unavailable"}


def reload_status(outcome: ReloadOutcome) -> int:
    """The HTTP status of a reload's answer: 200 swapped, 409 refused for good, 503 retry."""
    if outcome.reloaded:
        return 200
    return 409 if outcome.refused_for_good else 503
