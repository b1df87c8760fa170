"""FastAPI dependencies: settings, API-key check, the serving deployment and the request id."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from serving.errors import ApiError
from serving.metrics import Metrics
from serving.model_holder import ModelHolder, NotReady
from serving.service import Deadline, Deployment
from serving.settings import Settings

API_KEY_HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="One of the keys in SRL_API_KEYS (required on every route but the health checks).",
)


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_holder(request: Request) -> ModelHolder:
    """The app's model holder."""
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_request_id(request: Request) -> str:
    """The id of this request (from ``X-Request-ID`` when well formed, else generated)."""
    return str(request.state.request_id)


def key_matches(given: str, keys: Sequence[SecretStr]) -> bool:
    """Whether ``given`` is one of ``keys``; every key is compared in constant time."""
    candidate = given.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.get_secret_value().encode("utf-8"))
    return matched


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[str | None, Security(api_key_header)] = None,
) -> None:
    """Reject the request unless it carries a configured API key (``check_api_key``)."""
    check_api_key(key, settings)


def check_api_key(key: str | None, settings: Settings) -> None:
    """Refuse ``key`` (the ``X-API-Key`` header, None when absent) unless it is configured.

    The header's value is read without the spaces and tabs around it, as HTTP defines a
    field value (RFC 9110, 5.5): a key copied with a trailing space is the same key, as one
    after a leading tab already was (the HTTP parser strips that one).

    Raises:
        ApiError: 401 when the header is missing or the key is unknown.
    """
    if key is None or not key_matches(key.strip(" \t"), settings.api_keys):
        raise ApiError(
            401,
            "unauthorized",
            f"a valid {API_KEY_HEADER} header is required",
            headers={"WWW-Authenticate": "ApiKey"},
        )


def auth_dependencies(settings: Settings) -> list[Any]:
    """Dependencies every protected router is included with (none when auth is off)."""
    return [Depends(require_api_key)] if settings.auth_enabled else []


async def current_deployment(request: Request) -> Deployment:
    """The deployment serving now, taken once for the whole request.

    Raises:
        ApiError: 503 while no model is loaded.
    """
    holder: ModelHolder = request.app.state.holder
    try:
        return holder.require()
    except NotReady as error:
        raise ApiError(
            503, "not_ready", f"no model is loaded: {error}", headers={"Retry-After": "5"}
        ) from error


@dataclass(frozen=True)
class ScoringContext:
    """Everything a scoring route needs besides its body, gathered in one dependency."""

    deployment: Deployment
    settings: Settings
    metrics: Metrics
    request_id: str
    budget: Deadline

    def top_k(self, reasons: int | None) -> int:
        """Reasons per lead: the request's ``reasons``, else ``SRL_REASONS_DEFAULT``."""
        return self.settings.reasons_default if reasons is None else reasons

    def deadline(self) -> Deadline:
        """This request's time budget (``request_deadline``)."""
        return self.budget


async def scoring_context(request: Request, budget: Deadline) -> ScoringContext:
    """The serving deployment, settings, metrics and request id of this request, with its
    time budget (``request_deadline``, built once by the route, which reads the body within
    it before readiness is checked).

    Raises:
        ApiError: 503 while no model is loaded.
    """
    state = request.app.state
    deployment = await current_deployment(request)
    return ScoringContext(
        deployment,
        state.settings,
        state.metrics,
        request.state.request_id,
        budget,
    )


def request_deadline(request: Request) -> Deadline:
    """The request's time budget of ``SRL_REQUEST_TIMEOUT_SECONDS``, counted from its
    arrival (``serving.middleware.RequestContext``), so reading and validating the body
    count too."""
    settings: Settings = request.app.state.settings
    arrived = getattr(request.state, "started", None)
    return Deadline(settings.request_timeout_seconds, arrived)


SettingsDep = Annotated[Settings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RequestId = Annotated[str, Depends(get_request_id)]
CurrentDeployment = Annotated[Deployment, Depends(current_deployment)]
