"""``POST /v1/admin/reload``: load the model source again and swap it in if it works."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from serving.dependencies import HolderDep
from serving.routers.responses import json_response
from serving.schemas import ReloadOut

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadOut, summary="Reload")
async def reload(holder: HolderDep) -> Response:
    """Reload the model and routing policy; on failure the serving version stays."""
    outcome = await holder.reload_everywhere()
    return json_response(
        {
            "reloaded": outcome.reloaded,
            "model_version": outcome.version,
            "previous_version": outcome.previous_version,
            "policy": outcome.policy,
            "message": outcome.message,
        }
    )
