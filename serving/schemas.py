"""The API's response and batch models (the request body is ``features.records.ScoreRequest``).

Responses are serialised with orjson straight from plain dicts; these models define the
OpenAPI document the dicts follow, and the tests validate every response against it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from features.records import ScoreRequest, conflict, repeats
from serving.examples import EXAMPLE_REQUEST


class ReasonOut(BaseModel):
    """One factor of the score, in plain words."""

    feature: str = Field(description="the feature's name (see the feature catalogue)")
    direction: Literal["up", "down"] = Field(description="whether it raised or lowered the score")
    contribution: float = Field(description="SHAP contribution in log-odds of the raw score")
    value: float | str | None = Field(description="the lead's value: a number, a label or null")
    text: str = Field(description="the factor in plain words")


class RoutingOut(BaseModel):
    """Where the lead goes next and when."""

    re_entry_stage: str | None = Field(
        description="funnel stage the lead resumes at (where it left off); null when suppressed"
    )
    next_action_date: date | None = Field(
        description="day of the next contact (UTC); null when suppressed"
    )
    priority: int = Field(ge=0, description="1 is most urgent; 0 for suppressed leads")
    policy: str = Field(description="routing policy name and version, e.g. default@v5")


EXAMPLE_RESULT: dict[str, Any] = {
    "rejection_id": "R0000006",
    "lead_id": "L0000029",
    "as_of": "2025-09-01T00:00:00+00:00",
    "probability": 0.128,
    "beyond_trained_age": True,
    "tier": "cool",
    "program": "budget_nurture",
    "routing": {
        "re_entry_stage": "sql",
        "next_action_date": "2025-10-01",
        "priority": 3,
        "policy": "default@v5",
    },
    "suppressed": False,
    "suppression_reason": None,
    "reasons": [
        {
            "feature": "follow_up_days",
            "direction": "up",
            "contribution": 0.321,
            "value": 30.0,
            "text": "follow-up date is in 30 days",
        },
        {
            "feature": "reason_code",
            "direction": "up",
            "contribution": 0.242,
            "value": "budget",
            "text": "rejected for budget",
        },
    ],
    "model_version": "1",
    "request_id": "2adeb86797054e11a392107ca64f0789",
}


class ScoreResult(BaseModel):
    """The score and route of one lead's rejection."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_RESULT]})

    rejection_id: str
    lead_id: str
    as_of: datetime = Field(description="the moment the lead was scored at (UTC)")
    probability: float = Field(ge=0.0, le=1.0, description="calibrated re-conversion probability")
    beyond_trained_age: bool = Field(
        description="the rejection is older (days from rejected_at to as_of) than any the "
        "model was trained on: the probability is an extrapolation (GET /v1/model gives "
        "trained_age_days)"
    )
    tier: str = Field(description="probability tier from the routing policy")
    program: str = Field(description="nurture program, rebound_to_sales, or suppressed")
    routing: RoutingOut
    suppressed: bool = Field(
        description="consent, the rejection reason or a do_not_contact rejection of the lead "
        "forbids contact"
    )
    suppression_reason: str | None = Field(
        description="consent:<status>, reason:<code> or other_rejection:do_not_contact "
        "when suppressed"
    )
    reasons: list[ReasonOut] = Field(description="strongest factors first")
    model_version: str
    request_id: str


class _BatchBody(BaseModel):
    """What every batch body checks, whatever its size limit."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"items": [EXAMPLE_REQUEST]}]}
    )
    items: list[ScoreRequest]

    @model_validator(mode="after")
    def _each_rejection_once(self) -> _BatchBody:
        """A rejection scored twice in one call could get two answers (rows that differ),
        and a caller writing results back by ``rejection_id`` would keep one at random."""
        keys = [(item.lead.lead_id, item.rejection.rejection_id) for item in self.items]
        problems = [
            conflict(
                ("items", index, "rejection", "rejection_id"),
                f"repeats items.{first}.rejection.rejection_id: a batch scores each "
                "rejection once (score it at another as_of in another call)",
            )
            for index, first in repeats(keys)
        ]
        if problems:
            raise ValidationError.from_exception_data("BatchRequest", problems)
        return self


def batch_request_model(max_items: int) -> type[BaseModel]:
    """The batch body ``{"items": [...]}`` with the configured maximum number of items."""
    items = Annotated[
        list[ScoreRequest],
        Field(min_length=1, max_length=max_items, description="the leads, each a /v1/score body"),
    ]
    return create_model(
        "BatchRequest",
        __base__=_BatchBody,
        __doc__="Several leads to score in one call.",
        items=(items, ...),
    )


class BatchResponse(BaseModel):
    """One result per item, in the order of the request."""

    results: list[ScoreResult]
    model_version: str
    request_id: str


class ModelOut(BaseModel):
    """The model currently serving."""

    name: str | None
    version: str
    alias: str | None
    uri: str
    run_id: str | None
    trained_at: str | None
    loaded_at: datetime
    metrics: dict[str, Any]
    calibration: str
    trained_age_days: float | None = Field(
        description="the oldest rejection (days from rejected_at to as_of) among the examples "
        "the model was trained on; older ones are scored as extrapolations (null: not "
        "recorded by this model)"
    )
    age_factors: dict[str, float] | None = Field(
        description="the factor a probability is multiplied by at each age past "
        "trained_age_days (days as keys; linear between them, the last one beyond): at each "
        "age, comebacks over the comebacks the model expected, relative to the same at "
        "trained_age_days, from the history before the model's test window, non-increasing "
        "and at most 1 (null: no age curve)"
    )
    policy: str
    features: list[str]


class HealthOut(BaseModel):
    """The process is alive."""

    status: Literal["ok"]


class ReadyOut(BaseModel):
    """Whether the service can score, and why not."""

    ready: bool
    model_version: str | None
    policy: str | None
    reason: str | None


class ReloadOut(BaseModel):
    """The outcome of a reload."""

    reloaded: bool = Field(description="a new version was swapped in")
    model_version: str | None = Field(description="the version serving now")
    previous_version: str | None
    policy: str | None = Field(description="the routing policy serving now (name@vversion)")
    message: str


class FieldProblem(BaseModel):
    """One field of the request that broke the contract."""

    field: str
    problem: str
    type: str


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str
    message: str
    request_id: str | None
    fields: list[FieldProblem]


class ErrorOut(BaseModel):
    """The shape of every error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "validation_error",
                        "message": "invalid request: lead.created_at",
                        "request_id": "7f0c2b1e9a4d4c21b3f5e8d7a6c9b0e1",
                        "fields": [
                            {
                                "field": "lead.created_at",
                                "problem": "Field required",
                                "type": "missing",
                            }
                        ],
                    }
                }
            ]
        }
    )

    error: ErrorBody
