"""The scoring endpoints, model card, health checks and metrics of the real app."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from serving.examples import EXAMPLE_REQUEST
from serving.schemas import BatchResponse, ModelOut, ScoreResult
from tests.serving.conftest import TRAINED_AGE_DAYS, TestClient


def _body(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body.update(changes)
    return body


def _budget_route(probability: float) -> tuple[str, str]:
    """The default policy's route of the example (budget, 2 pricing visits, follow-up in 30 d)."""
    if probability >= 0.40:
        return "rebound_to_sales", "2025-09-01"
    if probability < 0.05:
        return "low_touch_nurture", "2025-11-30"
    return "budget_nurture", "2025-10-01"


def test_one_lead_gets_a_probability_a_route_and_reasons(client: TestClient) -> None:
    response = client.post("/v1/score", json=EXAMPLE_REQUEST, headers={"X-Request-ID": "abc-1"})

    assert response.status_code == 200
    result = ScoreResult.model_validate(response.json())
    assert 0.0 <= result.probability <= 1.0
    assert result.rejection_id == "R0000006"
    assert result.request_id == "abc-1" == response.headers["x-request-id"]
    assert (result.program, str(result.routing.next_action_date)) == _budget_route(
        result.probability
    )
    assert result.routing.re_entry_stage == "sql"
    assert result.routing.policy == "default@v5"
    assert len(result.reasons) == 3
    assert result.model_version.startswith("local-")


def test_reasons_can_be_turned_off_or_widened(client: TestClient) -> None:
    none = client.post("/v1/score", params={"reasons": 0}, json=EXAMPLE_REQUEST).json()
    many = client.post("/v1/score", params={"reasons": 10}, json=EXAMPLE_REQUEST).json()

    assert none["reasons"] == []
    assert len(many["reasons"]) == 10
    assert none["probability"] == many["probability"]


def test_a_batch_answers_in_the_order_of_its_items(client: TestClient) -> None:
    items = []
    for index, reason in enumerate(["timing", "do_not_contact", "competitor_won"]):
        body = _body()
        body["rejection"].update(rejection_id=f"R{index}", reason_code=reason)
        items.append(body)

    response = client.post("/v1/score/batch", json={"items": items})

    assert response.status_code == 200
    batch = BatchResponse.model_validate(response.json())
    assert [r.rejection_id for r in batch.results] == ["R0", "R1", "R2"]
    # one lead: its do_not_contact rejection holds back the other two (serving.contact)
    assert [r.suppression_reason for r in batch.results] == [
        "other_rejection:do_not_contact",
        "reason:do_not_contact",
        "other_rejection:do_not_contact",
    ]
    assert {r.program for r in batch.results} == {"suppressed"}
    single = client.post("/v1/score", json=items[2]).json()
    assert single["probability"] == batch.results[2].probability


def test_a_lead_scored_later_sees_its_new_engagement(client: TestClient) -> None:
    visits = [
        {
            "activity_id": f"V{i}",
            "lead_id": "L0000029",
            "occurred_at": f"2025-08-2{i}T10:00:00Z",
            "activity_type": "pricing_page_visit",
        }
        for i in range(5)
    ]
    at_rejection = client.post("/v1/score", json=_body(as_of="2025-06-01T09:30:00Z")).json()
    later = client.post(
        "/v1/score", json=_body(activities=EXAMPLE_REQUEST["activities"] + visits)
    ).json()

    assert at_rejection["as_of"].startswith("2025-06-01T09:30:00")
    assert later["as_of"].startswith("2025-09-01")
    assert at_rejection["probability"] != later["probability"]


@pytest.mark.parametrize(
    ("as_of", "beyond"),
    [
        ("2025-06-01T09:30:00Z", False),  # at rejection
        ("2025-08-30T09:30:00Z", False),  # 90 days after: the oldest the model knows
        ("2025-08-31T09:29:59Z", False),  # still in its 90th day
        ("2025-08-31T09:30:00Z", True),
        ("2027-06-01T09:30:00Z", True),
    ],
)
def test_a_rejection_older_than_any_trained_on_is_marked_an_extrapolation(
    client: TestClient, as_of: str, beyond: bool
) -> None:
    # Given a model trained and calibrated on rejections up to 90 days old
    result = client.post("/v1/score", json=_body(as_of=as_of)).json()

    # Then a score past that age, in whole days, says its probability is an extrapolation
    assert result["beyond_trained_age"] is beyond


def test_an_old_rejection_goes_low_touch_unless_the_lead_shows_intent(client: TestClient) -> None:
    # Given the example lead 92 days after its rejection, two pricing-page visits in the
    # last 30 days, and the same lead two years on, with nothing recent
    recent = client.post("/v1/score", json=_body()).json()
    stale = client.post("/v1/score", json=_body(as_of="2027-06-01T09:30:00Z")).json()

    # Then both are past the model's ages, but only the one its intent speaks for is routed
    # by its reason; the other goes to low touch, in the lowest tier, at the lowest priority
    assert recent["beyond_trained_age"] is stale["beyond_trained_age"] is True
    assert recent["program"] == _budget_route(recent["probability"])[0]
    assert (stale["program"], stale["tier"], stale["routing"]["priority"]) == (
        "low_touch_nurture",
        "cold",
        4,
    )


def test_an_opt_out_recorded_after_as_of_still_suppresses(client: TestClient) -> None:
    # Given a lead scored at as_of who asked not to be contacted a month later
    lead_id = EXAMPLE_REQUEST["lead"]["lead_id"]
    opt_out = {"lead_id": lead_id, "changed_at": "2025-10-01T00:00:00Z", "status": "do_not_contact"}
    body = _body(consent=[*EXAMPLE_REQUEST.get("consent", []), opt_out])

    result = client.post("/v1/score", json=body).json()

    # Then the opt-out overrides the consent the lead had at as_of
    assert body["as_of"] < opt_out["changed_at"]
    assert result["suppressed"] is True
    assert result["suppression_reason"] == "consent:do_not_contact"
    assert result["program"] == "suppressed"
    assert result["routing"]["next_action_date"] is None


def test_the_model_card_names_the_version_and_features(client: TestClient) -> None:
    card = ModelOut.model_validate(client.get("/v1/model").json())

    assert card.version.startswith("local-")
    assert card.trained_at == "2025-01-01T00:00:00+00:00"
    assert card.metrics == {"auc": 0.8}
    assert card.calibration == "isotonic"
    assert card.trained_age_days == TRAINED_AGE_DAYS
    assert "pricing_page_visit_30d" in card.features
    assert card.policy == "default@v5"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_routes_answer_head_with_the_get_headers_and_no_body(
    client: TestClient, path: str
) -> None:
    got, probed = client.get(path), client.head(path)
    assert probed.status_code == got.status_code == 200
    assert probed.content == b""
    assert probed.headers["content-length"] == str(len(got.content))
    assert probed.headers["content-type"] == got.headers["content-type"]
    assert set(client.get("/openapi.json").json()["paths"][path]) == {"get"}


def test_metrics_count_requests_scores_programs_and_the_model(client: TestClient) -> None:
    client.post("/v1/score", json=EXAMPLE_REQUEST)
    client.post("/v1/score", json={"lead": {}})

    text = client.get("/metrics").text

    assert 'srl_http_requests_total{method="POST",route="/v1/score",status="200"} 1.0' in text
    assert 'srl_http_errors_total{code="validation_error",route="/v1/score"} 1.0' in text
    assert "srl_http_request_seconds_bucket" in text
    assert "srl_score_probability_count 1.0" in text  # the start-up check is not counted
    assert "srl_routed_leads_total{program=" in text
    assert 'srl_model_info{alias="",name="",version="local-' in text
    assert "srl_model_ready 1.0" in text


@pytest.mark.parametrize("path", ["/v1/score", "/v1/score/batch"])
def test_unknown_routes_and_methods_answer_json(client: TestClient, path: str) -> None:
    wrong_method = client.get(path)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    # A trailing slash is another route, never a redirect to the client's own Host
    slashed = client.post(f"{path}/", json=EXAMPLE_REQUEST, follow_redirects=False)
    assert slashed.status_code == 404
    assert slashed.json()["error"]["code"] == "not_found"
    assert "location" not in slashed.headers


def test_the_openapi_document_has_examples_and_limits(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    single = document["paths"]["/v1/score"]["post"]
    assert "budget rejection" in single["requestBody"]["content"]["application/json"]["examples"]
    assert {"200", "413", "422", "503"} <= set(single["responses"])
    batch = document["components"]["schemas"]["BatchRequest"]
    assert batch["properties"]["items"]["maxItems"] == 500
    assert client.get("/docs").status_code == 200
