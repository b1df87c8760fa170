from __future__ import annotations
import pytest, schemathesis
from hypothesis import settings, HealthCheck
from serving.app import create_app
from tests.serving.conftest import api_settings, API_KEY

@pytest.fixture(scope="module")
def api_schema(model_dir):
    app = create_app(api_settings(model_dir, api_keys=API_KEY))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"X-API-Key": API_KEY})
    schema.config.update(headers={"X-API-Key": API_KEY})
    schema.config.generation.update(max_examples=60)
    return schema

schema = schemathesis.pytest.from_fixture("api_schema")

@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_api(case):
    case.call_and_validate()
