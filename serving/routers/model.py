"""``GET /v1/model``: which model is serving."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from serving.dependencies import CurrentDeployment
from serving.routers.responses import errors, json_response
from serving.schemas import ModelOut
from serving.service import Deployment

router = APIRouter(prefix="/v1/model", tags=["model"])


@router.get("", response_model=ModelOut, responses=errors(503), summary="The serving model")
async def model_info(deployment: CurrentDeployment) -> Response:
    """Name, version, alias, training time, headline metrics and features of the model."""
    return json_response(describe(deployment))


def describe(deployment: Deployment) -> dict[str, Any]:
    """The model card the API shows (no data, only the model's own metadata)."""
    identity, model = deployment.identity, deployment.model
    metadata = model.metadata
    metrics = metadata.get("metrics")
    return {
        "name": identity.name or metadata.get("name"),
        "version": identity.version,
        "alias": identity.alias,
        "uri": identity.uri,
        "run_id": identity.run_id,
        "trained_at": _text(metadata.get("trained_at")),
        "loaded_at": identity.loaded_at.isoformat(),
        "metrics": metrics if isinstance(metrics, dict) else {},
        "calibration": model.calibration.method,
        "trained_age_days": model.trained_age_days,
        "age_factors": None if model.age_curve is None else model.age_curve.factors_by_age(),
        "policy": deployment.policy.label,
        "features": list(model.feature_names),
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
