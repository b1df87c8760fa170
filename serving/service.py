"""Scoring requests end to end: raw rows to features, probability, route and reasons.

The HTTP layer only validates, authenticates and serialises; everything a lead's answer
depends on happens here, through the same ``score_features`` and ``explain`` the batch job
uses. Results are plain dicts shaped like ``serving.schemas.ScoreResult``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from features.engine import compute_features
from features.predictor import ReconversionModel
from features.records import ScoreRequest
from features.request_history import requests_history
from serving.contact import ContactNow, contact_in_one_call
from serving.model_source import ModelIdentity
from serving.policy import RoutingPolicy
from serving.reasons import Reason, explain
from serving.routing import NO_DATE, Routes
from serving.scoring import score_features

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Deployment:
    """A model and the routing policy it serves with, swapped in and out as one."""

    model: ReconversionModel
    identity: ModelIdentity
    policy: RoutingPolicy

    @property
    def version(self) -> str:
        """The model version that answers."""
        return self.identity.version


class DeadlineExceeded(Exception):  # noqa: N818 - reads as the event it signals
    """Scoring ran past its time budget."""


class Deadline:
    """A time budget checked between the steps of one scoring call.

    Args:
        seconds: the budget.
        started: when it started (``time.perf_counter()``; default now), e.g. when the
            request arrived, so reading and validating its body count too.
    """

    def __init__(self, seconds: float, started: float | None = None) -> None:
        self.seconds = seconds
        self.ends_at = (time.perf_counter() if started is None else started) + seconds

    def spent(self) -> bool:
        """Whether the budget has run out."""
        return time.perf_counter() > self.ends_at

    def remaining(self) -> float:
        """Seconds left (0 when spent)."""
        return max(0.0, self.ends_at - time.perf_counter())

    def check(self, step: str) -> None:
        """Raise ``DeadlineExceeded`` when the budget is spent (``step`` names where)."""
        if self.spent():
            raise DeadlineExceeded(f"scoring took longer than {self.seconds:g} s (at {step})")


@dataclass(frozen=True)
class Scoring:
    """The results of one scoring call and the numbers metrics need."""

    results: list[dict[str, Any]]
    probability: np.ndarray
    routes: Routes


def score_requests(
    deployment: Deployment,
    requests: Sequence[ScoreRequest],
    *,
    top_k: int,
    request_id: str | Sequence[str],
    now: datetime | None = None,
    deadline: Deadline | None = None,
    one_call: bool = False,
) -> Scoring:
    """Score, route and explain each request (in order).

    Args:
        deployment: the model and policy to use.
        requests: validated request bodies.
        top_k: reasons per lead (0: none).
        request_id: echoed in every result, or one id per request.
        now: the moment for requests without ``as_of`` (default: the current time).
        deadline: the call's time budget, checked between steps.
        one_call: the requests are the items of one call (``/v1/score/batch``), so what one
            says about contacting a lead holds for the others of the same lead
            (``serving.contact.contact_in_one_call``); False for separate calls scored
            together (a coalesced pass).

    Raises:
        DeadlineExceeded: the budget ran out.
    """
    model, budget = deployment.model, deadline or Deadline(math.inf)
    history, examples = requests_history(requests, model.config, now or datetime.now(UTC))
    budget.check("history")
    features = compute_features(history, examples, model.config)
    budget.check("features")
    lead = history.rejections.lead[examples.rejection_row]
    if one_call:
        contact = contact_in_one_call(requests, history, examples.as_of, model.config)
    else:
        contact = ContactNow.read(history, lead, examples.as_of)
    scored = score_features(model, features, examples.as_of, deployment.policy, contact=contact)
    reasons = explain(model, features, scored.matrix, top_k) if top_k > 0 else None
    budget.check("reasons")
    lead_ids = history.lead_id[lead]
    ids = [request_id] * len(requests) if isinstance(request_id, str) else list(request_id)
    results = [
        _result(
            scored.routes,
            index,
            request,
            str(lead_ids[index]),
            float(scored.probability[index]),
            bool(scored.beyond_trained_age[index]),
            int(examples.as_of[index]),
            reasons[index] if reasons is not None else [],
            deployment.version,
            ids[index],
        )
        for index, request in enumerate(requests)
    ]
    return Scoring(results, scored.probability, scored.routes)


def _result(
    routes: Routes,
    index: int,
    request: ScoreRequest,
    lead_id: str,
    probability: float,
    beyond_trained_age: bool,
    as_of: int,
    reasons: list[Reason],
    version: str,
    request_id: str,
) -> dict[str, Any]:
    next_action = int(routes.next_action_at[index])
    return {
        "rejection_id": request.rejection.rejection_id,
        "lead_id": lead_id,
        "as_of": _moment(as_of).isoformat(),
        "probability": probability,
        "beyond_trained_age": beyond_trained_age,
        "tier": str(routes.tier[index]),
        "program": str(routes.program[index]),
        "routing": {
            "re_entry_stage": routes.re_entry_stage[index],
            "next_action_date": None if next_action == NO_DATE else _moment(next_action).date(),
            "priority": int(routes.priority[index]),
            "policy": routes.policy,
        },
        "suppressed": bool(routes.suppressed[index]),
        "suppression_reason": routes.suppression_reason[index],
        "reasons": [reason.to_dict() for reason in reasons],
        "model_version": version,
        "request_id": request_id,
    }


def _moment(microseconds: int) -> datetime:
    return EPOCH + timedelta(microseconds=microseconds)
