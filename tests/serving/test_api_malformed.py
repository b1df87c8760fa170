"""Malformed requests get a clear 4xx naming the field (never its value); never a 5xx."""

from __future__ import annotations

import copy
import logging
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from serving.examples import EXAMPLE_REQUEST
from tests.servers import SRL, eventually, free_port, running
from tests.serving.conftest import TestClient, api_settings, create_app
from tests.serving.request_support import example_items

SECRET = "ann.secret@example.com"


def _body(path: str, value: Any) -> dict[str, Any]:
    """The example body with one field (``"lead.lead_source"``) replaced."""
    body = copy.deepcopy(EXAMPLE_REQUEST)
    *parents, last = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return body


def _problem(response: Any) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id", "fields"}
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"lead": ', "invalid_json"),
        (b"not json at all", "invalid_json"),
        (b'{"lead": NaN}', "invalid_json"),
        (b'{"lead": {"annual_revenue": Infinity}}', "invalid_json"),
        (b'{"lead": {"annual_revenue": -Infinity, "job_title": "NaN"}}', "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (b"[1, 2, 3]", "validation_error"),
        (b"", "validation_error"),
    ],
)
def test_bodies_that_are_not_json_objects(client: TestClient, raw: bytes, code: str) -> None:
    response = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})

    error = _problem(response)
    assert response.status_code == 422
    assert error["code"] == code


@pytest.mark.parametrize(("depth", "scored"), [(100, True), (198, True), (199, False)])
def test_valid_json_nested_too_deeply_is_told_so(
    client: TestClient, depth: int, scored: bool
) -> None:
    # Given the example body with a custom lead column holding ``depth`` + 1 arrays: with
    # the body and the lead, ``depth`` + 3 levels, against the documented limit of 201
    nested: list[Any] = []
    for _ in range(depth):
        nested = [nested]

    response = client.post("/v1/score", json=_body("lead.custom", nested))

    # Then it is scored, or refused for its depth: never called invalid JSON, which it is not
    if scored:
        assert response.status_code == 200, response.text
        return
    error = _problem(response)
    assert (response.status_code, error["code"]) == (422, "invalid_json")
    assert error["message"].startswith("the body is nested too deeply")
    assert error["fields"][0]["problem"].startswith("nested too deeply")


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("lead.employee_count", "many", "lead.employee_count"),
        ("lead.employee_count", 12.5, "lead.employee_count"),
        ("lead.created_at", 1700000000, "lead.created_at"),
        ("lead.created_at", "yesterday", "lead.created_at"),
        ("lead.created_at", "0001-01-01T00:00:00+00:01", "lead.created_at"),
        ("lead.created_at", "2025-01-01T00:00:00+00:60", "lead.created_at"),
        ("activities.0.occurred_at", "2025-01-01T00:00:00+2400", "activities.0.occurred_at"),
        ("rejection.follow_up_date", "2025-13-45", "rejection.follow_up_date"),
        ("lead.annual_revenue", "1e999", "lead.annual_revenue"),
        ("activities", {"not": "a list"}, "activities"),
        ("lead", ..., "lead"),
        ("rejection.rejection_id", ..., "rejection.rejection_id"),
        ("rejection.rejection_id", "", "rejection.rejection_id"),
        ("rejection.rejection_id", "R" * 100_000, "rejection.rejection_id"),
        ("rejection.reason_detail", "x" * 100_000, "rejection.reason_detail"),
        ("lead.industry", ["Software"], "lead.industry"),
        ("rejection.rejection_id", {"id": 6}, "rejection.rejection_id"),
        ("rejection.rejection_id", 10**300, "rejection.rejection_id"),
        ("lead.lead_id", "ann.lee@example.com", "lead.lead_id"),
        ("lead.account_id", "billing\uff20acme.example", "lead.account_id"),
        ("activities.0.activity_id", "web@42", "activities.0.activity_id"),
        ("lead.lead_source", "carrier_pigeon", "lead.lead_source"),
        ("rejection.reason_code", "vibes", "rejection.reason_code"),
        ("rejection.stage_at_rejection", None, "rejection.stage_at_rejection"),
        (
            "consent",
            [{"lead_id": "L0000029", "changed_at": "2025-01-01", "status": "maybe"}],
            "consent.0.status",
        ),
        ("rejection.lead_id", "SOMEONE_ELSE", "rejection.lead_id"),
        ("as_of", "2020-01-01T00:00:00Z", "as_of"),
        ("surprise", 1, "surprise"),
    ],
)
def test_broken_fields_are_named(client: TestClient, path: str, value: Any, field: str) -> None:
    response = client.post("/v1/score", json=_body(path, value))

    error = _problem(response)
    assert response.status_code == 422
    assert field in [f["field"] for f in error["fields"]], error


def test_an_identifier_holding_an_email_address_is_refused_without_echoing_it(
    client: TestClient,
) -> None:
    response = client.post("/v1/score", json=_body("lead.lead_id", "ann.lee@example.com"))

    assert response.status_code == 422
    (problem,) = [f for f in _problem(response)["fields"] if f["field"] == "lead.lead_id"]
    assert problem["problem"].startswith("holds '@'")
    assert "ann.lee" not in response.text


@pytest.mark.parametrize("escape", [b"\\u0040", b"\\uFF20", b"\\ufe6b"])
def test_an_escaped_at_sign_in_an_identifier_is_refused_and_free_text_may_hold_one(
    client: TestClient, escape: bytes
) -> None:
    headers = {"content-type": "application/json"}
    raw = orjson.dumps(EXAMPLE_REQUEST)
    escaped = raw.replace(b'"activity_id":"', b'"activity_id":"web' + escape, 1)
    in_text = orjson.dumps(_body("lead.job_title", "VP @ Acme"))

    refused = client.post("/v1/score", content=escaped, headers=headers)
    scored = client.post("/v1/score", content=in_text, headers=headers)

    assert refused.status_code == 422
    fields = [f["field"] for f in _problem(refused)["fields"]]
    assert fields == ["activities.0.activity_id"]
    assert scored.status_code == 200, scored.text


LEAD = EXAMPLE_REQUEST["lead"]["lead_id"]
OTHER_LEAD = "SOMEONE_ELSE_0042"


def _earlier(rejection_id: str, rejected_at: str, lead_id: str = LEAD) -> dict[str, Any]:
    """An earlier rejection of the example lead."""
    return {
        **EXAMPLE_REQUEST["rejection"],
        "rejection_id": rejection_id,
        "lead_id": lead_id,
        "rejected_at": rejected_at,
    }


def _opportunity(opportunity_id: str, lead_id: str = LEAD) -> dict[str, Any]:
    return {
        "opportunity_id": opportunity_id,
        "lead_id": lead_id,
        "created_at": "2025-04-01T00:00:00Z",
        "status": "lost",
    }


#: One body breaking one rule between fields: what to change, the field named, the problem.
CONFLICTS = [
    ("rejection.lead_id", OTHER_LEAD, "rejection.lead_id", "does not match lead.lead_id"),
    ("activities.2.lead_id", OTHER_LEAD, "activities.2.lead_id", "does not match lead.lead_id"),
    (
        "opportunities",
        [_opportunity("O1"), _opportunity("O2", OTHER_LEAD)],
        "opportunities.1.lead_id",
        "does not match lead.lead_id",
    ),
    (
        "consent",
        [{"lead_id": OTHER_LEAD, "changed_at": "2025-01-01", "status": "subscribed"}],
        "consent.0.lead_id",
        "does not match lead.lead_id",
    ),
    (
        "earlier_rejections",
        [_earlier("R1", "2025-04-01", OTHER_LEAD)],
        "earlier_rejections.0.lead_id",
        "does not match lead.lead_id",
    ),
    ("as_of", "2025-05-01T00:00:00Z", "as_of", "is before rejection.rejected_at"),
    (
        "opportunities",
        [{**_opportunity("O1"), "created_at": "2025-07-01T00:00:00Z", "status": "won"}],
        "opportunities.0.created_at",
        "is after rejection.rejected_at and not after as_of: the lead has an opportunity "
        "since the rejection, so the rejection is no longer open and is not scored",
    ),
    (
        "activities.2.activity_id",
        "A1",
        "activities.2.activity_id",
        "repeats activities.0.activity_id",
    ),
    (
        "opportunities",
        [_opportunity("O1"), _opportunity("O1")],
        "opportunities.1.opportunity_id",
        "repeats opportunities.0.opportunity_id",
    ),
    (
        "earlier_rejections",
        [_earlier("R1", "2025-04-01"), _earlier("R1", "2025-05-01")],
        "earlier_rejections.1.rejection_id",
        "repeats earlier_rejections.0.rejection_id",
    ),
    (
        "earlier_rejections",
        [_earlier(EXAMPLE_REQUEST["rejection"]["rejection_id"], "2025-04-01")],
        "earlier_rejections.0.rejection_id",
        "is rejection.rejection_id, the rejection being scored",
    ),
    (
        "earlier_rejections",
        [_earlier("R1", "2025-04-01"), _earlier("R9", "2025-07-01")],
        "earlier_rejections.1.rejected_at",
        "is after rejection.rejected_at",
    ),
    (
        "earlier_rejections",
        [_earlier("R1", "2025-03-02T09:59:59Z")],
        "earlier_rejections.0.rejected_at",
        "is before lead.created_at: a lead is rejected only once it exists (for a lead "
        "merged or imported again, export its first creation time)",
    ),
    (
        "lead.created_at",
        "2025-06-01T09:30:01Z",
        "rejection.rejected_at",
        "is before lead.created_at: a lead is rejected only once it exists (for a lead "
        "merged or imported again, export its first creation time)",
    ),
]


def _scored_now(rejected_at: datetime) -> dict[str, Any]:
    """The example body without ``as_of`` (scored now), rejected at ``rejected_at``."""
    body = _body("rejection.rejected_at", rejected_at.isoformat())
    del body["as_of"]
    return body


def test_a_rejection_in_the_future_is_refused_when_scored_now(client: TestClient) -> None:
    # Given a body without as_of whose rejection is dated years ahead (a clock or time-zone
    # error in the sender), and the same body with an as_of at that moment
    future = datetime(2030, 1, 1, tzinfo=UTC)
    body = _scored_now(future)
    explicit = {**body, "as_of": future.isoformat()}

    refused = client.post("/v1/score", json=body)
    answered = client.post("/v1/score", json=explicit)

    # Then scoring it now is refused, naming the rejection's date; asked for, it is scored
    assert refused.status_code == 422
    assert _problem(refused)["fields"] == [
        {
            "field": "rejection.rejected_at",
            "problem": "is in the future (no as_of was sent, so the request is scored now)",
            "type": "conflict",
        }
    ]
    assert answered.status_code == 200


def test_a_rejection_just_ahead_of_the_clock_is_scored_at_its_moment(client: TestClient) -> None:
    # Given a rejection a minute after the server's clock (a sender's clock running ahead)
    moment = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)

    response = client.post("/v1/score", json=_scored_now(moment))

    # Then it is scored at the rejection itself, never before it
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["as_of"]) == moment


@pytest.mark.parametrize(("path", "value", "field", "problem"), CONFLICTS)
def test_fields_that_contradict_each_other_are_named(
    client: TestClient, path: str, value: Any, field: str, problem: str
) -> None:
    # Given a body whose fields are each valid but contradict one another
    body = _body(path, value)

    # When it is scored alone and as the second item of a batch
    alone = client.post("/v1/score", json=body)
    batched = client.post("/v1/score/batch", json={"items": [EXAMPLE_REQUEST, body]})

    # Then the offending field is named (within its item), not the whole body
    assert alone.status_code == batched.status_code == 422
    assert _problem(alone)["fields"] == [{"field": field, "problem": problem, "type": "conflict"}]
    assert _problem(batched)["fields"] == [
        {"field": f"items.1.{field}", "problem": problem, "type": "conflict"}
    ]
    assert OTHER_LEAD not in alone.text + batched.text


def test_every_contradiction_in_a_body_is_named(client: TestClient) -> None:
    body = _body("as_of", "2025-05-01T00:00:00Z")
    body["activities"][1]["lead_id"] = OTHER_LEAD

    response = client.post("/v1/score", json=body)

    assert [f["field"] for f in _problem(response)["fields"]] == ["activities.1.lead_id", "as_of"]


def test_personal_and_submitted_values_are_never_echoed(client: TestClient) -> None:
    body = _body("lead.email", SECRET)
    body["lead"]["first_name"] = "Annabelle-Secret"
    body["lead"]["employee_count"] = "Annabelle-Secret"
    body["lead"]["created_at"] = SECRET

    response = client.post("/v1/score", json=body)

    assert response.status_code == 422
    assert SECRET not in response.text
    assert "Annabelle" not in response.text
    assert {"lead.employee_count", "lead.created_at"} <= {
        f["field"] for f in response.json()["error"]["fields"]
    }


def test_personal_fields_never_reach_the_answer(client: TestClient) -> None:
    body = _body("lead.email", SECRET)

    response = client.post("/v1/score", json=body, params={"reasons": 50})

    assert response.status_code == 200
    assert SECRET not in response.text


def test_an_unknown_activity_type_still_scores_as_other(client: TestClient) -> None:
    known = client.post("/v1/score", json=_body("activities.0.activity_type", "other"))
    unknown = client.post("/v1/score", json=_body("activities.0.activity_type", "carrier_pigeon"))

    assert unknown.status_code == 200
    assert unknown.json()["probability"] == known.json()["probability"]


def test_categories_are_case_insensitive_like_the_files(client: TestClient) -> None:
    shouted = client.post("/v1/score", json=_body("lead.lead_source", " WEBINAR "))
    plain = client.post("/v1/score", json=EXAMPLE_REQUEST)

    assert shouted.status_code == 200
    assert shouted.json()["probability"] == plain.json()["probability"]


@pytest.mark.parametrize("number", [7, 7.0])
def test_a_json_number_in_a_text_field_scores_as_a_files_text(
    client: TestClient, number: float
) -> None:
    as_text = client.post("/v1/score", json=_body("lead.industry", "7"))
    as_number = client.post("/v1/score", json=_body("lead.industry", number))

    assert as_number.status_code == 200
    assert as_number.json()["probability"] == as_text.json()["probability"]


def test_numeric_ids_are_the_same_ids_as_their_text(client: TestClient) -> None:
    body = _body("lead.lead_id", 29)
    body["rejection"]["lead_id"] = 29.0
    for activity in body["activities"]:
        activity["lead_id"] = "29"
    body["activities"][0]["activity_id"] = 1
    body["activities"][1]["activity_id"] = "1"

    repeated = client.post("/v1/score", json=body)
    body["activities"][1]["activity_id"] = 2
    scored = client.post("/v1/score", json=body)

    assert [f["field"] for f in _problem(repeated)["fields"]] == ["activities.1.activity_id"]
    assert scored.status_code == 200
    assert scored.json()["lead_id"] == "29"


def test_custom_columns_are_accepted_and_ignored(client: TestClient) -> None:
    response = client.post("/v1/score", json=_body("lead.crm_custom_score", {"deep": [1, None]}))
    plain = client.post("/v1/score", json=EXAMPLE_REQUEST, params={"reasons": 3})
    with_reasons = client.post(
        "/v1/score", json=_body("lead.crm_custom_score", {"deep": [1, None]}), params={"reasons": 3}
    )

    assert response.status_code == 200
    assert response.json()["probability"] == plain.json()["probability"]
    assert with_reasons.json()["reasons"] == plain.json()["reasons"]


def test_nan_and_infinity_inside_strings_are_plain_text(client: TestClient) -> None:
    body = _body("lead.job_title", "NaN Infinity Officer")
    body["activities"][0]["activity_type"] = "Infinity"

    response = client.post("/v1/score", json=body)

    assert response.status_code == 200


def test_a_number_too_large_for_a_float(client: TestClient) -> None:
    """Not finite in a numeric or a text field (refused, named); in an extra column kept as
    missing."""
    raw = orjson.dumps(EXAMPLE_REQUEST)
    numeric = raw.replace(b'"lead":{', b'"lead":{"annual_revenue":1e999,', 1)
    extra = raw.replace(b'"lead":{', b'"lead":{"crm_custom_score":1e999,', 1)
    text = raw.replace(b'"country":"DE"', b'"country":-1e999', 1)
    headers = {"content-type": "application/json"}

    refused = client.post("/v1/score", content=numeric, headers=headers)
    kept = client.post("/v1/score", content=extra, headers=headers)
    not_text = client.post("/v1/score", content=text, headers=headers)

    assert refused.status_code == 422
    assert [f["field"] for f in _problem(refused)["fields"]] == ["lead.annual_revenue"]
    assert [f["field"] for f in _problem(not_text)["fields"]] == ["lead.country"]
    assert kept.status_code == 200
    assert (
        kept.json()["probability"]
        == client.post("/v1/score", json=EXAMPLE_REQUEST).json()["probability"]
    )


#: The problem of a free-text field that is neither text within its limits nor a finite number.
TEXT_PROBLEM = (
    "must be text of at most 2,000 characters, or a finite number or a boolean (read as text)"
)

#: Longer than pydantic's JSON parser reads (``serving.request_body.MAX_INTEGER_DIGITS``).
LONG_NUMBER = b"9" * 5000


def _with_number(number: bytes, field: str, *, job_title: str = "VP of Finance") -> bytes:
    """The example body with ``number`` written verbatim into ``lead.<field>``."""
    body = _body(f"lead.{field}", "@number@")
    body["lead"]["job_title"] = job_title
    return orjson.dumps(body).replace(b'"@number@"', number)


@pytest.mark.parametrize("number", [LONG_NUMBER, b"-" + LONG_NUMBER, LONG_NUMBER + b".5e3"])
@pytest.mark.parametrize("job_title", ["VP of Finance", "NaN Infinity Officer"])
@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("annual_revenue", "must be a finite number"),
        ("employee_count", "must be a whole number"),
        ("industry", TEXT_PROBLEM),
    ],
)
def test_a_number_too_long_to_parse_is_named_like_any_other(
    client: TestClient, number: bytes, job_title: str, field: str, problem: str
) -> None:
    # Given a number too long for the JSON parser (and text that names NaN, or not)
    body = _with_number(number, field, job_title=job_title)
    headers = {"content-type": "application/json"}
    batch = b'{"items": [' + orjson.dumps(EXAMPLE_REQUEST) + b", " + body + b"]}"

    # When it is sent alone and as the second item of a batch
    alone = client.post("/v1/score", content=body, headers=headers)
    batched = client.post("/v1/score/batch", content=batch, headers=headers)

    # Then the field is named as for any number past a float's range, not the body
    assert alone.status_code == batched.status_code == 422
    assert _problem(alone)["code"] == _problem(batched)["code"] == "validation_error"
    assert [(f["field"], f["problem"]) for f in _problem(alone)["fields"]] == [
        (f"lead.{field}", problem)
    ]
    assert [f["field"] for f in _problem(batched)["fields"]] == [f"items.1.lead.{field}"]


def test_a_number_too_long_to_parse_in_an_extra_column_is_kept_like_1e999(
    client: TestClient,
) -> None:
    headers = {"content-type": "application/json"}

    long = client.post("/v1/score", content=_with_number(LONG_NUMBER, "crm_score"), headers=headers)
    huge = client.post("/v1/score", content=_with_number(b"1e999", "crm_score"), headers=headers)

    assert long.status_code == 200, long.text
    assert long.json()["probability"] == huge.json()["probability"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"lead": {"annual_revenue": 0' + LONG_NUMBER + b"}}",
        b'{"lead": {"annual_revenue": ' + LONG_NUMBER + b", NaN}}",
        b'{"lead": {"annual_revenue": ' + LONG_NUMBER + b"}, }",
    ],
)
def test_a_long_number_does_not_make_a_broken_body_json(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert _problem(response)["code"] == "invalid_json"


def test_a_long_number_inside_a_string_stays_text(client: TestClient) -> None:
    # Given a long number to read as a float, and a long run of digits in a string after a
    # quote (rewritten, the string would shrink under its length limit and pass)
    body = _body("lead.country", 'a \\" quote then ' + "9" * 5000)
    raw = orjson.dumps(body).replace(b'"lead":{', b'"lead":{"crm_score":' + LONG_NUMBER + b",")

    response = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})

    # Then the string keeps its digits and is refused for its length; the number is kept
    assert [(f["field"], f["type"]) for f in _problem(response)["fields"]] == [
        ("lead.country", "text")
    ]


def test_error_bodies_stay_small_whatever_the_keys_sent(client: TestClient) -> None:
    """An unknown key of a megabyte is not shown; of 5,000 problems the first 50 are listed
    and the message gives the total."""
    long_key = client.post("/v1/score", json={**EXAMPLE_REQUEST, "k" * 1_000_000: 1})
    many = client.post("/v1/score", json={**EXAMPLE_REQUEST, **{f"x{i}": 1 for i in range(5000)}})

    assert len(long_key.content) < 2_000
    (named,) = _problem(long_key)["fields"]
    assert named["field"] == "<unknown field>"
    assert named["type"] == "extra_forbidden"
    error = _problem(many)
    assert len(error["fields"]) == 50
    assert "(5000 problems; the first 50 are listed)" in error["message"]


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("crm_note", "crm_note"),
        ("x-ref.2", "x-ref.2"),
        ("k" * 64, "k" * 64),
        ("ann.smith@example.com", "<unknown field>"),
        ("call Jane Doe +1 555 0100", "<unknown field>"),
        ("Ann_Smith", "Ann_Smith"),
        ("k" * 65, "<unknown field>"),
        ("Zoë", "<unknown field>"),
        ("tab\tkey", "<unknown field>"),
        ("", "<unknown field>"),
    ],
)
def test_an_unknown_key_is_shown_only_when_it_looks_like_a_field_name(
    client: TestClient, caplog: pytest.LogCaptureFixture, key: str, shown: str
) -> None:
    # Given an unknown key beside a valid lead, alone and in a batch
    with caplog.at_level(logging.DEBUG):
        single = client.post("/v1/score", json={**EXAMPLE_REQUEST, key: 1})
        batch = client.post("/v1/score/batch", json={"items": [{**EXAMPLE_REQUEST, key: 1}]})

    # Then the key is named only when it looks like a field name, in the fields and the
    # message alike, and the logs never hold it
    assert [f["field"] for f in _problem(single)["fields"]] == [shown]
    assert _problem(single)["message"] == f"invalid request: {shown}"
    assert [f["field"] for f in _problem(batch)["fields"]] == [f"items.0.{shown}"]
    if key and shown != key:
        assert key not in single.text.replace(shown, "")
        assert key not in batch.text.replace(shown, "")
        assert caplog.records
        assert not [r for r in caplog.records if key in str(r.__dict__)]


def test_a_batch_over_the_limit_is_refused_naming_items(model_dir: Any) -> None:
    with TestClient(create_app(api_settings(model_dir, max_batch_items=3))) as small:
        over = small.post("/v1/score/batch", json={"items": example_items(4)})
        empty = small.post("/v1/score/batch", json={"items": []})
        bad_item = small.post(
            "/v1/score/batch", json={"items": [EXAMPLE_REQUEST, _body("lead", ...)]}
        )

    assert over.status_code == 422
    assert _problem(over)["fields"][0]["field"] == "items"
    assert _problem(empty)["fields"][0]["field"] == "items"
    assert "items.1.lead" in [f["field"] for f in _problem(bad_item)["fields"]]


def test_a_body_over_the_size_limit_is_refused(model_dir: Any) -> None:
    body = orjson.dumps(_body("rejection.reason_detail", "x" * 5000))
    with TestClient(create_app(api_settings(model_dir, max_body_bytes=4096))) as small:
        declared = small.post(
            "/v1/score", content=body, headers={"content-type": "application/json"}
        )
        streamed = small.post(
            "/v1/score",
            content=iter([body[:3000], body[3000:]]),
            headers={"content-type": "application/json"},
        )
        fits = small.post("/v1/score", json=EXAMPLE_REQUEST)
        metrics = small.get("/metrics").text

    assert declared.status_code == 413
    assert _problem(declared)["code"] == "body_too_large"
    assert streamed.status_code == 413
    assert _problem(streamed)["code"] == "body_too_large"
    # the same message either way, and the connection closes: the rest is never read
    for refused in (declared, streamed):
        assert _problem(refused)["message"] == "the request body is larger than 4096 bytes"
        assert refused.headers["connection"] == "close"
    assert fits.status_code == 200
    # both refusals are counted on the route they were for, however they were caught
    assert 'srl_http_errors_total{code="body_too_large",route="/v1/score"} 2.0' in metrics


def test_a_spent_time_budget_is_a_clear_503(model_dir: Any) -> None:
    with TestClient(create_app(api_settings(model_dir, request_timeout_seconds=1e-9))) as slow:
        response = slow.post("/v1/score", json=EXAMPLE_REQUEST)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "timeout"
    assert response.headers["retry-after"] == "1"


def test_a_wrong_content_type_is_refused(client: TestClient) -> None:
    response = client.post(
        "/v1/score", content=orjson.dumps(EXAMPLE_REQUEST), headers={"content-type": "text/plain"}
    )

    assert response.status_code == 422


def test_logs_never_hold_submitted_values(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = _body("lead.email", SECRET)
    body["lead"]["employee_count"] = SECRET

    with caplog.at_level(logging.DEBUG):
        client.post("/v1/score", json=body, headers={"X-Request-ID": "log-check"})
        client.post("/v1/score", json=_body("lead.email", SECRET))

    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "log-check"]
    assert [(r.status, r.route) for r in logged] == [(422, "/v1/score")]  # type: ignore[attr-defined]
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in str(record.__dict__)


@pytest.mark.parametrize("value", ["-1", "51", "many", "2.5", "", "1_0", "1.0", " 3", "\u0663"])
@pytest.mark.parametrize("path", ["/v1/score", "/v1/score/batch"])
def test_a_bad_reasons_count_names_the_query_parameter(
    client: TestClient, path: str, value: str
) -> None:
    body = EXAMPLE_REQUEST if path == "/v1/score" else {"items": [EXAMPLE_REQUEST]}

    response = client.post(path, json=body, params={"reasons": value})

    error = _problem(response)
    assert response.status_code == 422
    assert [f["field"] for f in error["fields"]] == ["query.reasons"]


def test_a_reasons_count_in_range_gives_that_many_reasons(client: TestClient) -> None:
    response = client.post("/v1/score", json=EXAMPLE_REQUEST, params={"reasons": "5"})

    assert response.status_code == 200
    assert len(response.json()["reasons"]) == 5


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/vnd.marketo+json"]
)
def test_json_content_types_are_read_as_json(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/v1/score", content=orjson.dumps(EXAMPLE_REQUEST), headers={"content-type": content_type}
    )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/v1/score", "/v1/score/batch"])
def test_a_body_without_content_type_is_refused_on_both_routes(
    client: TestClient, path: str
) -> None:
    body = EXAMPLE_REQUEST if path == "/v1/score" else {"items": [EXAMPLE_REQUEST]}

    response = client.post(path, content=orjson.dumps(body))

    assert response.status_code == 422
    assert [f["field"] for f in _problem(response)["fields"]] == ["body"]


def test_a_spent_time_budget_on_a_batch_is_a_clear_503(model_dir: Any) -> None:
    settings = api_settings(model_dir, request_timeout_seconds=1e-9)
    with TestClient(create_app(settings)) as slow:
        response = slow.post("/v1/score/batch", json={"items": example_items(3)})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "timeout"


BIG_BATCH = 3000


def test_health_checks_answer_while_a_batch_is_scored(model_dir: Any) -> None:
    # A batch is validated and scored in a worker thread; the event loop, where the
    # health check runs, stays free. Were the batch scored on the loop, the health check
    # (sent once the batch is under way) could only be answered after it. The budget is
    # generous: the batch takes 2-6 s on a loaded 2-core machine, and a 503 for running out
    # of the default 10 s would say nothing of what this test is about.
    settings = api_settings(model_dir, max_batch_items=BIG_BATCH, request_timeout_seconds=120)
    body = {"items": example_items(BIG_BATCH)}
    answers: list[Any] = []

    with TestClient(create_app(settings)) as client:
        gate: threading.Semaphore = client.app.state.batch_gate  # type: ignore[attr-defined]

        def score_big_batch() -> None:
            answers.append(client.post("/v1/score/batch?reasons=50", json=body))

        batch = threading.Thread(target=score_big_batch)
        batch.start()
        _until_held_by_the_batch(gate, batch)
        health = client.get("/healthz")
        batch_still_working = _held(gate)
        single = client.post("/v1/score", json=EXAMPLE_REQUEST)  # scored beside the batch
        batch.join()

    assert health.status_code == 200
    assert batch_still_working  # the health check was answered in the middle of the batch
    assert answers[0].status_code == 200, answers[0].text
    results = answers[0].json()["results"]
    assert len(results) == BIG_BATCH
    assert {result["probability"] for result in results} == {single.json()["probability"]}


def _held(gate: threading.Semaphore) -> bool:
    """Whether someone holds the batch gate now (taking it for an instant when free)."""
    if gate.acquire(blocking=False):
        gate.release()
        return False
    return True


def _until_held_by_the_batch(gate: threading.Semaphore, batch: threading.Thread) -> None:
    """Wait until the batch's worker thread holds the gate: it is validating or scoring."""
    while not _held(gate):
        assert batch.is_alive(), "the batch ended before it took the gate"
        threading.Event().wait(0.001)


def _send_headers_and_part_of_the_body(port: int, path: str) -> socket.socket:
    body = orjson.dumps(EXAMPLE_REQUEST)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(head + body[: len(body) // 2])
    return connection


def _logged_requests(log: Path, route: str) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    return [line for line in lines if line.get("message") == "request" and line["route"] == route]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/v1/score", "/v1/score/batch"])
def test_a_stalled_or_abandoned_body_is_the_clients_fault(
    model_dir: Path, tmp_path: Path, path: str
) -> None:
    """A body that stops arriving gets a 408 within the time budget (not a connection held
    for ever); a client that leaves mid-body is logged as a 400, never as a 5xx."""
    port, log = free_port(), tmp_path / "serve.log"
    environment = {
        "SRL_PORT": str(port),
        "SRL_MODEL_URI": str(model_dir),
        "SRL_REQUEST_TIMEOUT_SECONDS": "1",
    }

    with running([SRL, "serve"], f"http://127.0.0.1:{port}/readyz", log, environment):
        stalled = _send_headers_and_part_of_the_body(port, path)
        stalled.settimeout(10)
        answer = b"".join(iter(lambda: stalled.recv(65536), b""))  # closed after the answer
        stalled.close()
        _send_headers_and_part_of_the_body(port, path).close()
        eventually(lambda: len(_logged_requests(log, path)) == 2, seconds=10)
        healthy = httpx.get(f"http://127.0.0.1:{port}/healthz")

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert orjson.loads(body)["error"]["code"] == "body_timeout"
    ends = [(r["status"], r["error"]) for r in _logged_requests(log, path)]
    assert ends == [(408, "body_timeout"), (400, "client_disconnected")]
    assert b'"level":"error"' not in log.read_bytes()
    assert healthy.status_code == 200
