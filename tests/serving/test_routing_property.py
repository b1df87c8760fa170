"""Property: a lead whose consent or rejection reasons forbid contact is never routed to contact.

Checked on the routing function over random rows, and end to end through ``/v1/score`` and
``/v1/score/batch`` with random consent histories, reasons, earlier rejections (some for
``do_not_contact``), activity and scores.
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
from serving.routing import OTHER_REJECTION_CAUSE, SUPPRESSED_PROGRAM, RoutingInputs, route
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
        recent_intent=column(st.floats(0, 50), np.float64),
        as_of=column(st.just(int(AS_OF.timestamp() * 1_000_000)), np.int64),
        latest_consent_index=column(st.integers(-1, len(CONSENT_STATUSES) - 1), np.int64),
        refused_by_rejection=column(st.booleans(), bool),
    )


@given(inputs=routing_rows())
@settings(max_examples=300, deadline=None)
def test_routing_never_sends_a_no_contact_lead_to_a_program(inputs: RoutingInputs) -> None:
    routes = route(inputs, load_policy())

    assert inputs.latest_consent_index is not None
    assert inputs.refused_by_rejection is not None
    latest = np.array([*CONSENT_STATUSES, None], dtype=object)[inputs.latest_consent_index]
    forbidden = (
        np.isin(inputs.consent_status, list(NO_CONTACT_CONSENT))
        | np.isin(latest, list(NO_CONTACT_CONSENT))
        | np.isin(inputs.reason_code, list(NO_CONTACT_REASONS))
        | inputs.refused_by_rejection
    )
    assert (routes.suppressed == forbidden).all()
    assert all(routes.suppression_reason[forbidden])
    assert not any(routes.suppression_reason[~forbidden])
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
def lead_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A request body and why contact is forbidden (None: it is not): by the consent at its
    as_of or the latest consent it holds (an opt-out after as_of counts), by the rejection
    reason, or by an earlier ``do_not_contact`` rejection no opt-in up to as_of lifted."""
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["lead"]["created_at"] = _stamp(401)  # before every rejection drawn
    reason = draw(st.sampled_from(REASON_CODES))
    rejected_days = draw(st.integers(0, 80))
    body["rejection"]["reason_code"] = reason
    body["rejection"]["rejected_at"] = _stamp(rejected_days, 1)
    days = draw(st.lists(st.integers(-30, 400), unique=True, max_size=4))
    statuses = draw(
        st.lists(st.sampled_from(CONSENT_STATUSES), min_size=len(days), max_size=len(days))
    )
    body["consent"] = [
        {"lead_id": LEAD, "changed_at": _stamp(d), "status": s}
        for d, s in zip(days, statuses, strict=True)
    ]
    earlier = draw(st.lists(earlier_rejections(rejected_days), max_size=3))
    body["earlier_rejections"] = [
        {**row, "rejection_id": f"E{i}", "lead_id": LEAD} for i, (row, _) in enumerate(earlier)
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
    requests = [hours for row, hours in earlier if row["reason_code"] == "do_not_contact"]
    opt_ins = [d * 24 for d, s in changes if s == "subscribed" and d >= 0]
    return body, _expected_cause(changes, reason, requests, opt_ins)


@st.composite
def earlier_rejections(draw: st.DrawFn, rejected_days: int) -> tuple[dict[str, Any], int]:
    """An earlier rejection (at or before the scored one, days before as_of at hour 0 or 1)
    and how many hours before as_of it was recorded."""
    days = draw(st.integers(rejected_days, 400))
    hour = 1 if days == rejected_days else draw(st.integers(0, 1))
    reason = draw(st.sampled_from(REASON_CODES) | st.just("do_not_contact"))
    row = {"rejected_at": _stamp(days, hour), "stage_at_rejection": "mql", "reason_code": reason}
    return row, days * 24 + hour


def _expected_cause(
    changes: list[tuple[int, str]], reason: str, requests: list[int], opt_ins: list[int]
) -> str | None:
    """The suppression reason the policy gives (times in hours before as_of)."""
    in_force = [s for d, s in changes if d >= 0]
    at_as_of = in_force[0] if in_force else "subscribed"
    latest = changes[0][1] if changes else "subscribed"
    for status in (latest, at_as_of):
        if status in NO_CONTACT_CONSENT:
            return f"consent:{status}"
    if reason in NO_CONTACT_REASONS:
        return f"reason:{reason}"
    # A request stands unless a subscribed row is dated after it, up to as_of.
    if any(not any(hours < asked for hours in opt_ins) for asked in requests):
        return OTHER_REJECTION_CAUSE
    return None


def _check(result: dict[str, Any], cause: str | None) -> None:
    assert result["suppressed"] is (cause is not None)
    assert result["suppression_reason"] == cause
    if cause is not None:
        assert result["program"] == SUPPRESSED_PROGRAM
        assert result["routing"]["next_action_date"] is None
        assert result["routing"]["priority"] == 0
    else:
        assert result["program"] in CONTACT_PROGRAMS


def _own_lead(body: dict[str, Any], index: int) -> dict[str, Any]:
    """``body`` for a lead and a rejection of its own: a batch scores each rejection once,
    and items of one lead share what they say about contact (``test_contact.py``), while
    each body's expected cause here is its own."""
    body = copy.deepcopy(body)
    lead_id = f"L-{index}"
    body["lead"]["lead_id"] = lead_id
    body["rejection"].update(rejection_id=f"R-{index}", lead_id=lead_id)
    for rows in ("activities", "opportunities", "consent", "earlier_rejections"):
        for row in body.get(rows, []):
            row["lead_id"] = lead_id
    return body


@pytest.mark.slow
@given(leads=st.lists(lead_bodies(), min_size=1, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_contact_leads_are_suppressed_through_the_api(
    module_client: TestClient, leads: list[tuple[dict[str, Any], str | None]]
) -> None:
    single = module_client.post("/v1/score", json=leads[0][0])
    assert single.status_code == 200, single.text
    _check(single.json(), leads[0][1])

    items = [_own_lead(body, index) for index, (body, _) in enumerate(leads)]
    batch = module_client.post("/v1/score/batch", json={"items": items})
    assert batch.status_code == 200, batch.text
    for result, (_, cause) in zip(batch.json()["results"], leads, strict=True):
        _check(result, cause)
