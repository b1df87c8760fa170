"""Bodies that two readers could read two ways: a key twice in one object, a rejection
twice in one batch. Each is refused, naming what is repeated, never a value."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from serving.examples import EXAMPLE_REQUEST
from tests.serving.request_support import example_items

JSON = {"content-type": "application/json"}


def _compact(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def _spaced(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _pretty(body: dict[str, Any]) -> bytes:
    return json.dumps(body, indent=2).encode()


def _refusal(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    [field] = response.json()["error"]["fields"]
    return dict(field)


#: (what is written twice, how to write it twice into a serialised body)
REPEATS = [
    ("reason_code", lambda raw: _twice(raw, "reason_code", '"do_not_contact"')),
    ("status", lambda raw: _twice(raw, "status", '"unsubscribed"')),
    ("consent", lambda raw: _twice(raw, "consent", "[]")),
]


def _twice(raw: str, key: str, first_value: str) -> str:
    """``raw`` with ``key`` written once more, with ``first_value``, before its own."""
    for spelling in (f'"{key}":', f'"{key}": '):
        at = raw.find(spelling)
        if at >= 0:
            return f"{raw[:at]}{spelling}{first_value}, {raw[at:]}"
    raise AssertionError(f"{key} not in body")


def _with_consent(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    lead_id = body["lead"]["lead_id"]
    body["consent"] = [{"lead_id": lead_id, "changed_at": "2025-01-01", "status": "subscribed"}]
    return body


@pytest.mark.parametrize("write", [_compact, _spaced, _pretty])
@pytest.mark.parametrize(("key", "repeat"), REPEATS)
def test_a_key_sent_twice_in_one_object_is_refused(
    client: TestClient, write: Any, key: str, repeat: Any
) -> None:
    # Given a body where a consent-critical key appears twice: one reader could keep the
    # first value (do not contact), another the last (contact)
    raw = repeat(write(_with_consent(EXAMPLE_REQUEST)).decode()).encode()

    # When it is scored, alone and inside a batch
    alone = client.post("/v1/score", content=raw, headers=JSON)
    batched = client.post("/v1/score/batch", content=b'{"items":[' + raw + b"]}", headers=JSON)

    # Then both are refused, naming the key
    for response in (alone, batched):
        field = _refusal(response)
        assert field["type"] == "repeated_key"
        assert f"'{key}' twice in one object" in field["problem"]


def test_a_key_written_with_an_escape_is_the_same_key(client: TestClient) -> None:
    raw = _compact(EXAMPLE_REQUEST).replace(
        b'"reason_code":', b'"reason_code":"do_not_contact","reason_\\u0063ode":'
    )

    field = _refusal(client.post("/v1/score", content=raw, headers=JSON))

    assert "'reason_code' twice" in field["problem"]


def test_a_repeated_key_that_is_not_a_field_is_not_named(client: TestClient) -> None:
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["lead"]["crm_notes"] = {"ann.smith@example.com": 1}
    raw = _compact(body).replace(
        b'{"ann.smith@example.com":1}', b'{"ann.smith@example.com":1,"ann.smith@example.com":2}'
    )

    response = client.post("/v1/score", content=raw, headers=JSON)

    assert "a key twice in one object" in _refusal(response)["problem"]
    assert b"ann.smith" not in response.content


@pytest.mark.parametrize("write", [_compact, _spaced, _pretty])
def test_bodies_without_repeated_keys_score_however_they_are_written(
    client: TestClient, write: Any
) -> None:
    body = _with_consent(EXAMPLE_REQUEST)
    body["lead"]["crm_notes"] = {"a": {"b": [1, {"c": 'a \\ "quoted" : value'}]}}
    body["rejection"]["reason_detail"] = 'said "no budget" : \u00e9t\u00e9 \\ next year'

    response = client.post("/v1/score", content=write(body), headers=JSON)

    assert response.status_code == 200, response.text


def test_a_batch_scores_each_rejection_once(client: TestClient) -> None:
    # Given a batch holding the same rejection twice, with rows that disagree on consent
    first, second = example_items(2)
    second["rejection"]["rejection_id"] = first["rejection"]["rejection_id"]
    second["consent"] = [
        {"lead_id": second["lead"]["lead_id"], "changed_at": "2025-01-01", "status": "unsubscribed"}
    ]

    response = client.post("/v1/score/batch", json={"items": [first, second]})

    # Then it is refused at the second one, which names the first
    field = _refusal(response)
    assert field["field"] == "items.1.rejection.rejection_id"
    assert field["problem"].startswith("repeats items.0.rejection.rejection_id")


def test_a_batch_of_distinct_rejections_of_one_lead_is_scored(client: TestClient) -> None:
    items = example_items(3)

    response = client.post("/v1/score/batch", json={"items": items})

    assert response.status_code == 200, response.text
    assert [r["rejection_id"] for r in response.json()["results"]] == [
        item["rejection"]["rejection_id"] for item in items
    ]
