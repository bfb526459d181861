"""Schemathesis over the served OpenAPI schema: generated requests (valid and invalid, bounded
examples per operation) never get a 5xx, and every reply conforms to the schema (status code,
content type, body, headers)."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from svc_support import ROOT, models_dir, service_settings

from service.app import create_app

EXAMPLES_PER_OPERATION = 25

# The app is created at import (cheap: bundles load in its lifespan) so that schemathesis can read
# its schema at collection time; the fixture below exports the bundles and runs the lifespan.
# Small limits keep every generated request cheap (a benchmark of at most 8 models × 20 requests).
APP = create_app(
    service_settings(
        ROOT / "models",
        admin_token="schema-test-token",
        max_k=50,
        max_batch=20,
        max_history=50,
        benchmark_max_requests=20,
        compare_max_users=10,
        remote_timeout_s=0.5,
        teacher_endpoints="down=http://127.0.0.1:9",
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def served():
    models_dir()
    with TestClient(APP) as client:
        assert client.get("/readyz").json()["ready"]
        yield


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    response = case.call_and_validate()
    assert response.status_code < 500
