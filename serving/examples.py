"""An example scoring request: shown in the OpenAPI document and scored to check every new model.

A model is only swapped in after it scored this request end to end (features, prediction,
routing, reasons) with a finite probability, so a version that loads but cannot score never
replaces a working one.
"""

from __future__ import annotations

from typing import Any

EXAMPLE_REQUEST: dict[str, Any] = {
    "lead": {
        "lead_id": "L0000029",
        "account_id": "C0000966",
        "created_at": "2025-03-02T10:00:00Z",
        "lead_source": "webinar",
        "industry": "Software",
        "employee_count": 250,
        "country": "DE",
        "job_title": "VP of Finance",
        "job_level": "vp",
        "product_fit": "ideal",
    },
    "rejection": {
        "rejection_id": "R0000006",
        "lead_id": "L0000029",
        "rejected_at": "2025-06-01T09:30:00Z",
        "stage_at_rejection": "sql",
        "reason_code": "budget",
        "reason_detail": "No budget before next fiscal year",
        "barrier_side": "prospect",
        "rep_potential": "high",
        "follow_up_date": "2025-10-01",
        "lead_score_at_rejection": 54.4,
        "recommended_program": "ROI content",
    },
    "activities": [
        {
            "activity_id": "A1",
            "lead_id": "L0000029",
            "occurred_at": "2025-05-20T08:00:00Z",
            "activity_type": "demo_request",
        },
        {
            "activity_id": "A2",
            "lead_id": "L0000029",
            "occurred_at": "2025-08-11T17:17:39Z",
            "activity_type": "pricing_page_visit",
        },
        {
            "activity_id": "A3",
            "lead_id": "L0000029",
            "occurred_at": "2025-08-14T09:58:31Z",
            "activity_type": "pricing_page_visit",
        },
    ],
    "opportunities": [],
    "consent": [],
    "earlier_rejections": [],
    "as_of": "2025-09-01T00:00:00Z",
}
