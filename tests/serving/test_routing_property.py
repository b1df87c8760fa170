"""Property: a lead whose consent or rejection reason forbids contact is never routed to contact.

Checked on the routing function over random rows, and end to end through ``/v1/score`` and
``/v1/score/batch`` with random consent histories, reasons, activity and scores.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import (
    ACTIVITY_TYPES,
    CONSENT_STATUSES,
    NO_CONTACT_CONSENT,
    NO_CONTACT_REASONS,
    REASON_CODES,
    STAGES,
)
from serving.examples import EXAMPLE_REQUEST
from serving.policy import load_policy
from serving.routing import SUPPRESSED_PROGRAM, RoutingInputs, route
from tests.serving.conftest import TestClient, api_settings, create_app

AS_OF = datetime(2025, 9, 1, tzinfo=UTC)
LEAD = EXAMPLE_REQUEST["lead"]["lead_id"]
CONTACT_PROGRAMS = {
    "rebound_to_sales",
    "low_touch_nurture",
    "budget_nurture",
    "timing_nurture",
    "competitive_nurture",
    "find_decision_maker",
    "solution_nurture",
    "education_track",
    "general_nurture",
}


@st.composite
def routing_rows(draw: st.DrawFn) -> RoutingInputs:
    n = draw(st.integers(1, 40))
    floats = st.floats(-400, 400) | st.just(float("nan"))

    def column(elements: st.SearchStrategy[Any], dtype: Any) -> np.ndarray:
        return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=dtype)

    return RoutingInputs(
        probability=column(st.floats(0, 1), np.float64),
        reason_code=column(st.sampled_from(REASON_CODES), object),
        consent_status=column(st.sampled_from(CONSENT_STATUSES), object),
        stage=column(st.sampled_from(STAGES), object),
        follow_up_days=column(floats, np.float64),
        days_since_rejection=column(st.floats(0, 3000), np.float64),
        days_to_next_year=column(st.floats(0, 366), np.float64),
        recent_intent=column(st.floats(0, 50), np.float64),
        as_of=column(st.just(int(AS_OF.timestamp() * 1_000_000)), np.int64),
        latest_consent_index=column(st.integers(-1, len(CONSENT_STATUSES) - 1), np.int64),
    )


@given(inputs=routing_rows())
@settings(max_examples=300, deadline=None)
def test_routing_never_sends_a_no_contact_lead_to_a_program(inputs: RoutingInputs) -> None:
    routes = route(inputs, load_policy())

    assert inputs.latest_consent_index is not None
    latest = np.array([*CONSENT_STATUSES, None], dtype=object)[inputs.latest_consent_index]
    forbidden = (
        np.isin(inputs.consent_status, list(NO_CONTACT_CONSENT))
        | np.isin(latest, list(NO_CONTACT_CONSENT))
        | np.isin(inputs.reason_code, list(NO_CONTACT_REASONS))
    )
    assert (routes.suppressed == forbidden).all()
    assert (routes.program[forbidden] == SUPPRESSED_PROGRAM).all()
    assert set(routes.program[~forbidden]) <= CONTACT_PROGRAMS
    assert (routes.priority[forbidden] == 0).all()


@pytest.fixture(scope="module")
def module_client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings(model_dir))) as test_client:
        yield test_client


def _stamp(days_before: int, hour: int = 0) -> str:
    return (AS_OF - timedelta(days=days_before, hours=hour)).isoformat()


@st.composite
def lead_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A request body and whether contact is forbidden: by the consent at its as_of, by the
    latest consent it holds (an opt-out after as_of counts), or by the rejection reason."""
    body = copy.deepcopy(EXAMPLE_REQUEST)
    reason = draw(st.sampled_from(REASON_CODES))
    body["rejection"]["reason_code"] = reason
    body["rejection"]["rejected_at"] = _stamp(draw(st.integers(0, 80)), 1)
    days = draw(st.lists(st.integers(-30, 400), unique=True, max_size=4))
    statuses = draw(
        st.lists(st.sampled_from(CONSENT_STATUSES), min_size=len(days), max_size=len(days))
    )
    body["consent"] = [
        {"lead_id": LEAD, "changed_at": _stamp(d), "status": s}
        for d, s in zip(days, statuses, strict=True)
    ]
    kinds = draw(st.lists(st.sampled_from([*ACTIVITY_TYPES, "carrier_pigeon"]), max_size=30))
    body["activities"] = [
        {
            "activity_id": f"A{i}",
            "lead_id": LEAD,
            "occurred_at": _stamp(draw(st.integers(-5, 90))),
            "activity_type": kind,
        }
        for i, kind in enumerate(kinds)
    ]
    if draw(st.booleans()):
        body["rejection"]["follow_up_date"] = (
            (AS_OF + timedelta(days=draw(st.integers(-20, 60)))).date().isoformat()
        )
    changes = sorted(zip(days, statuses, strict=True))  # most recent first
    in_force = [(d, s) for d, s in changes if d >= 0]
    at_as_of = in_force[0][1] if in_force else "subscribed"
    latest = changes[0][1] if changes else "subscribed"
    no_contact = {at_as_of, latest} & NO_CONTACT_CONSENT
    return body, bool(no_contact) or reason in NO_CONTACT_REASONS


def _check(result: dict[str, Any], forbidden: bool) -> None:
    assert result["suppressed"] is forbidden
    if forbidden:
        assert result["program"] == SUPPRESSED_PROGRAM
        assert result["routing"]["next_action_date"] is None
        assert result["routing"]["priority"] == 0
        assert result["suppression_reason"]
    else:
        assert result["program"] in CONTACT_PROGRAMS


@pytest.mark.slow
@given(leads=st.lists(lead_bodies(), min_size=1, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_contact_leads_are_suppressed_through_the_api(
    module_client: TestClient, leads: list[tuple[dict[str, Any], bool]]
) -> None:
    single = module_client.post("/v1/score", json=leads[0][0])
    assert single.status_code == 200, single.text
    _check(single.json(), leads[0][1])

    batch = module_client.post("/v1/score/batch", json={"items": [body for body, _ in leads]})
    assert batch.status_code == 200, batch.text
    for result, (_, forbidden) in zip(batch.json()["results"], leads, strict=True):
        _check(result, forbidden)
