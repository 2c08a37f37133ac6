"""Both OpenAPI schemas fuzzed with schemathesis: no server error, and responses match their schemas.

Autocommit (transactional tests): a request the database refuses must not poison the ones after it.
Bounded for CI: a few derandomized examples per operation, each operation tried with generated path
parameters and with the ids of real objects (so requests get past 404s into validation and the views).
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.public_api.test_public_api import others_world  # noqa: F401 - the fixture

MAX_EXAMPLES = 4
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


def _fuzz(schema, key: str, pinned: dict[str, str]) -> list[str]:
    """Run every operation; return the failures (one line each) instead of stopping at the first."""
    failures: list[str] = []
    for operation in _operations(schema):
        if operation.method.upper() == "DELETE":
            continue  # deleting is covered by the API tests; here it would only empty the world early
        names = re.findall(r"{(\w+)}", operation.path)
        variants = [None] + ([{n: pinned[n] for n in names if n in pinned}] if names else [])
        for path_parameters in variants:
            strategy = operation.as_strategy(path_parameters=path_parameters or None)

            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case):
                response = case.call(headers={"X-Api-Key": key})
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Exception as exc:  # noqa: BLE001 - collected and reported together below
                failures.append(f"{operation.method.upper()} {operation.path}: {str(exc).strip()[:1500]}")
    return failures


@pytest.fixture
def fuzz_settings(settings):
    """The WSGI app in-process on the test's transaction, like Django's test client, without throttling."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    settings.API_KEY_THROTTLE_RATE = None  # thousands of requests in a few seconds, by design
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db(transaction=True)
def test_public_api_schema_fuzzed(others_world, owner_key, fuzz_settings):  # noqa: F811
    schema = schemathesis.openapi.from_wsgi("/public/api/v2/schema/?format=json", get_wsgi_application())
    pinned = {
        "raster_id": others_world["raster"],
        "detector_id": others_world["detector"],
        "folder_id": others_world["folder"],
        "vector_layer_id": others_world["layer"],
        "operation_id": others_world["operation"],
        "upload_id": others_world["upload"],
        "annotation_type": "outline",
        "kind": "detector",
        "resource_id": others_world["detector"],
    }
    failures = _fuzz(schema, owner_key, pinned)
    assert not failures, "\n\n".join(failures)


@pytest.mark.django_db(transaction=True)
def test_api_v1_schema_fuzzed(others_world, owner_key, fuzz_settings):  # noqa: F811
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    failures = _fuzz(schema, owner_key, {})
    assert not failures, "\n\n".join(failures)
