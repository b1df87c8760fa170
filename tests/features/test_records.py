"""Request records accept exactly what the loader accepts and refuse ambiguous bodies."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from features.records import ScoreRequest

BODY: dict[str, Any] = {
    "lead": {"lead_id": "L1", "created_at": "2025-03-02T10:00:00Z", "lead_source": "webinar"},
    "rejection": {
        "rejection_id": "R2",
        "lead_id": "L1",
        "rejected_at": "2025-06-01T09:30:00+02:00",
        "stage_at_rejection": "SQL",
        "reason_code": "budget",
    },
    "activities": [
        {
            "activity_id": "A1",
            "lead_id": "L1",
            "occurred_at": "2025-05-01T00:00:00",
            "activity_type": "telepathy",
        },
    ],
    "earlier_rejections": [
        {
            "rejection_id": "R1",
            "lead_id": "L1",
            "rejected_at": "2025-04-01",
            "stage_at_rejection": "mql",
            "reason_code": "timing",
        },
    ],
    "as_of": "2025-09-01T00:00:00Z",
}


def body_with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def test_a_valid_body_is_normalised_like_the_loader() -> None:
    request = ScoreRequest.model_validate(BODY)

    assert request.rejection.rejected_at.isoformat() == "2025-06-01T07:30:00+00:00"
    assert request.rejection.stage_at_rejection == "sql"
    assert request.activities[0].activity_type == "other"
    assert request.activities[0].occurred_at.isoformat() == "2025-05-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("as_of",), "1748772000", "ISO 8601"),
        (("as_of",), 1748772000, "ISO 8601"),
        (("rejection", "reason_code"), "bad_vibes", "must be one of"),
        (("activities", 0, "lead_id"), "L2", r"activities\[0\]\.lead_id does not match"),
        (("earlier_rejections", 0, "rejected_at"), "2025-07-01", "is after the rejection"),
        (("earlier_rejections", 0, "rejection_id"), "R2", "is the scored rejection itself"),
        (("as_of",), "2025-01-01T00:00:00Z", "as_of is before"),
    ],
)
def test_ambiguous_or_invalid_bodies_are_refused(
    path: tuple[str | int, ...], value: Any, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ScoreRequest.model_validate(body_with(path, value))


def test_repeated_activity_ids_are_refused() -> None:
    body = copy.deepcopy(BODY)
    body["activities"].append(dict(body["activities"][0]))

    with pytest.raises(ValidationError, match=r"activities\[1\] repeats an id"):
        ScoreRequest.model_validate(body)
