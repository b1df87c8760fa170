"""Schemathesis over the app's own OpenAPI document, every check on, positive and negative data.

``positive_data_acceptance`` also accepts 422: the data contract has rules a JSON schema
cannot state (every row's ``lead_id`` equals ``lead.lead_id``; ``as_of`` is not before the
rejection), so a body that fits the schema may still be refused, with the field named.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import PositiveDataAcceptanceConfig
from schemathesis.schemas import BaseSchema

from serving.app import create_app
from serving.examples import EXAMPLE_REQUEST
from tests.serving.conftest import API_KEY, api_settings

MAX_EXAMPLES = 60


@pytest.fixture(scope="module")
def api_schema(model_dir: Path) -> BaseSchema:
    app = create_app(api_settings(model_dir, api_keys=API_KEY, max_batch_items=5))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"X-API-Key": API_KEY})
    schema.config.update(headers={"X-API-Key": API_KEY})
    schema.config.checks.update(included_check_names=["all"])
    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=["2xx", "422"]
    )
    return schema


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_follows_its_own_openapi(api_schema: BaseSchema, mode: GenerationMode) -> None:
    @given(case=api_schema.as_strategy(mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate()

    check()


@pytest.mark.parametrize("written", ["page_view", "Webinar_Attended ", "Ｗebinar"])
def test_the_openapi_document_takes_any_activity_type_the_api_scores(
    client: TestClient, written: str
) -> None:
    # Given the activity row's schema in the app's OpenAPI document
    document = client.get("/openapi.json").json()
    schema = document["components"]["schemas"]["ActivityRecord"]
    row = {**EXAMPLE_REQUEST["activities"][0], "activity_type": written}

    # When a client checks a row of a type the contract keeps as `other` (or matches) first
    jsonschema.validate(row, schema)
    answer = client.post("/v1/score", json={**EXAMPLE_REQUEST, "activities": [row]})

    # Then the schema and the API agree: the row is scored
    assert answer.status_code == 200, answer.text
    assert "kept as `other`" in schema["properties"]["activity_type"]["description"]


@pytest.mark.parametrize("blank", [" ", "\u200b"], ids=repr)
def test_the_openapi_document_refuses_a_blank_activity_type_as_the_api_does(
    client: TestClient, blank: str
) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ActivityRecord"]
    row = {**EXAMPLE_REQUEST["activities"][0], "activity_type": blank}

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(row, schema)
    answer = client.post("/v1/score", json={**EXAMPLE_REQUEST, "activities": [row]})
    assert answer.status_code == 422
