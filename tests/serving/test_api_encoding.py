"""Bodies sent with ``Content-Encoding: gzip`` score as the same bodies sent plain; other
codings, broken gzip data and bodies that inflate past the size limit are clear 4xx."""

from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from serving.examples import EXAMPLE_REQUEST
from tests.serving.conftest import TestClient, api_settings, create_app

JSON = {"content-type": "application/json"}
GZIP = {**JSON, "content-encoding": "gzip"}


def _without_request_id(answer: dict[str, Any]) -> dict[str, Any]:
    answer = dict(answer)
    answer.pop("request_id")
    return answer


def _items(count: int) -> dict[str, Any]:
    items = []
    for index in range(count):
        item = copy.deepcopy(EXAMPLE_REQUEST)
        item["rejection"]["rejection_id"] = f"R{index}"
        item["rejection"]["lead_score_at_rejection"] = 10.0 + index
        items.append(item)
    return {"items": items}


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "GZIP", "identity, gzip"])
def test_a_gzip_body_scores_as_the_plain_body(client: TestClient, coding: str) -> None:
    raw = orjson.dumps(EXAMPLE_REQUEST)
    plain = client.post("/v1/score?reasons=5", content=raw, headers=JSON)
    packed = client.post(
        "/v1/score?reasons=5",
        content=gzip.compress(raw),
        headers={**JSON, "content-encoding": coding},
    )

    assert packed.status_code == plain.status_code == 200
    assert _without_request_id(packed.json()) == _without_request_id(plain.json())


def test_a_gzip_batch_in_several_members_scores_as_the_plain_batch(client: TestClient) -> None:
    raw = orjson.dumps(_items(6))
    members = gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])  # as `cat a.gz b.gz`
    plain = client.post("/v1/score/batch", content=raw, headers=JSON)
    packed = client.post("/v1/score/batch", content=members, headers=GZIP)

    assert packed.status_code == plain.status_code == 200
    results = [_without_request_id(r) for r in packed.json()["results"]]
    assert results == [_without_request_id(r) for r in plain.json()["results"]]
    assert [r["rejection_id"] for r in results] == [f"R{i}" for i in range(6)]


def test_identity_is_no_coding(client: TestClient) -> None:
    response = client.post(
        "/v1/score",
        content=orjson.dumps(EXAMPLE_REQUEST),
        headers={**JSON, "content-encoding": "identity"},
    )

    assert response.status_code == 200


@pytest.mark.parametrize("route", ["/v1/score", "/v1/score/batch"])
def test_a_body_that_inflates_past_the_limit_is_refused_early(model_dir: Path, route: str) -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces in about 64 KiB
    fits = gzip.compress(orjson.dumps(EXAMPLE_REQUEST if route == "/v1/score" else _items(1)))
    settings = api_settings(model_dir, max_body_bytes=256 * 1024)
    with TestClient(create_app(settings)) as small:
        refused = small.post(route, content=bomb, headers=GZIP)
        scored = small.post(route, content=fits, headers=GZIP)

    assert len(bomb) < settings.max_body_bytes
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "body_too_large"
    assert "once decompressed" in error["message"]
    assert scored.status_code == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (orjson.dumps(EXAMPLE_REQUEST), "not valid gzip"),
        (gzip.compress(orjson.dumps(EXAMPLE_REQUEST))[:-9], "ends before"),
        (gzip.compress(orjson.dumps(EXAMPLE_REQUEST)) + b"trailing", "not valid gzip"),
    ],
    ids=["plain-json", "cut-short", "trailing-garbage"],
)
@pytest.mark.parametrize("route", ["/v1/score", "/v1/score/batch"])
def test_broken_gzip_data_is_a_400_naming_the_body(
    client: TestClient, route: str, content: bytes, message: str
) -> None:
    response = client.post(route, content=content, headers=GZIP)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_encoding"
    assert message in error["message"]
    assert [f["field"] for f in error["fields"]] == ["body"]
    assert error["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("coding", ["br", "deflate", "zstd", "gzip, gzip", "gzip, br"])
@pytest.mark.parametrize("route", ["/v1/score", "/v1/score/batch"])
def test_other_codings_are_a_415_naming_the_header(
    client: TestClient, route: str, coding: str
) -> None:
    response = client.post(
        route,
        content=orjson.dumps(EXAMPLE_REQUEST),
        headers={**JSON, "content-encoding": coding},
    )

    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_encoding"
    assert [f["field"] for f in error["fields"]] == ["header.content-encoding"]


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        (["gzip", "br"], 415),
        (["gzip", "gzip"], 415),
        (["identity", "gzip"], 200),
    ],
)
@pytest.mark.parametrize("route", ["/v1/score", "/v1/score/batch"])
def test_codings_on_several_header_lines_are_read_as_one_list(
    client: TestClient, route: str, lines: list[str], status: int
) -> None:
    """``Content-Encoding`` sent on two lines means what it means on one (RFC 9110): a
    proxy that reads them all and this service read the same body."""
    body = _items(2) if route.endswith("batch") else EXAMPLE_REQUEST
    headers = [("content-type", "application/json")]
    headers += [("content-encoding", coding) for coding in lines]

    response = client.post(route, content=gzip.compress(orjson.dumps(body)), headers=headers)

    assert response.status_code == status, response.text
    if status == 415:
        assert response.json()["error"]["code"] == "unsupported_encoding"


def test_the_openapi_document_lists_the_coding_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/v1/score", "/v1/score/batch"):
        assert {"400", "413", "415"} <= set(paths[route]["post"]["responses"])
