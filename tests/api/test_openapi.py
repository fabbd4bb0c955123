"""The OpenAPI document at /api/v1/openapi.json: it names every route of /api/v1/ and /agent/v1/
and nothing else, it is valid OpenAPI 3.1, and the app answers as it says (Schemathesis)."""
import re

import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from portal.blueprints.api.openapi import document
from portal.services import enrollment
from portal.services.actors import Actor
from tests.factories import AGENT_FACTS, add_dp, make_boundary, make_group, make_token, make_user

PREFIXES = ("/api/v1/", "/agent/v1/")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# Examples per operation and caller: input as the document describes it, then input it calls
# wrong (a documented 4xx, never a 5xx). About 1,200 calls, split in SHARDS tests that the
# suite's processes share. Wrong ids in the path are left out: the path names a record that
# exists (ids past the column in a path have their own test, in test_input_limits.py).
EXAMPLES = {GenerationMode.POSITIVE: 5, GenerationMode.NEGATIVE: 2}
SHARDS = 3
# Operations left out of the property-based run, and why. They are in the document (the drift
# test checks them) and have tests of their own (tests/api/test_local_dps.py, tests/cloud).
NOT_FUZZED = {
    ("POST", "/api/v1/distribution-points"): "connects to the URL it is given",
    ("POST", "/api/v1/distribution-points/test"): "connects to the URL it is given",
    ("PATCH", "/api/v1/distribution-points/{dp_id}"): "a new url or key is tested by connecting",
    ("POST", "/api/v1/distribution-points/{dp_id}/accept-certificate"): "connects to the DP",
    ("GET", "/agent/v1/deployments/{deployment_id}"): "asks the DP for links",
}


def _rule_as_openapi(rule: str) -> str:
    """A Flask rule as an OpenAPI path: /users/<int:user_id> -> /users/{user_id}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _routes(app) -> set[tuple[str, str]]:
    return {(method.lower(), _rule_as_openapi(rule.rule)) for rule in app.url_map.iter_rules()
            if rule.rule.startswith(PREFIXES)
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def _documented(doc: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items()
            for method in item if method != "parameters"}


def test_anyone_may_read_the_document(app, client):
    """Is the document served without a token, as JSON, the same as the module builds?"""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == document()
    assert response.get_json()["openapi"] == "3.1.0"


def test_the_document_names_every_route_and_nothing_else(app):
    """Does every /api/v1 and /agent/v1 URL rule and method appear in the document, and does
    the document name no route the app lacks?"""
    routes, documented = _routes(app), _documented(document())
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "the OpenAPI document names routes the app lacks"
    assert ("post", "/api/v1/users/{user_id}") not in documented  # the comparison is by method
    assert len(routes) > 50


def test_a_route_added_without_its_entry_is_caught(app):
    """Would a new route with no entry in the document be reported (the check is not vacuous)?"""
    doc = document()
    del doc["paths"]["/api/v1/boundaries/{boundary_id}"]["delete"]
    assert _routes(app) - _documented(doc) == {("delete", "/api/v1/boundaries/{boundary_id}")}


def test_the_document_is_valid_openapi_3_1():
    """Does the document validate as OpenAPI 3.1, and would a broken one be refused?"""
    validate(document())
    broken = document()
    broken["paths"]["/api/v1/users"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"] = {"type": "no-such-type"}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_error_answer_is_documented_with_the_error_shape():
    """Does every operation document its errors with the one JSON error shape?"""
    doc = document()
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            errors = [s for s in op["responses"] if s[0] in "45"]
            assert errors, (method, path)
            for status in errors:
                assert op["responses"][status] == {"$ref": f"#/components/responses/{status}"}


def _seed(client) -> tuple[str, dict[str, object]]:
    """Records for the calls to meet (a DP, a group, a boundary, an enrolled device, an
    enrollment token, a user): (the device's token, their ids by path parameter name)."""
    dp = add_dp("Seattle")
    boundary = make_boundary("10.9.0.0/16", dp)
    group = make_group("Laptops", preferred=dp)
    token, secret = enrollment.create_enrollment_token(Actor(None, via="cli"), "fuzz")
    enrolled = client.post("/agent/v1/enroll", json={"enroll_token": secret, **AGENT_FACTS})
    assert enrolled.status_code == 201, enrolled.get_json()
    ids = {"dp_id": dp.id, "boundary_id": boundary.id, "group_id": group.id,
           "device_id": enrolled.get_json()["device_id"], "user_id": make_user("viewer").id,
           "token_id": token.id, "deployment_id": 1, "notification_id": 1, "job_id": "none"}
    return enrolled.get_json()["device_token"], ids


def _callers(operation, device_token: str) -> list[dict]:
    """The Authorization headers of the callers of one operation: admin, technician, viewer
    and anonymous (agent routes: the device and anonymous). New users each time: a call that
    changes or removes a user (PATCH, DELETE /users/{id}) must not silence the ones after it."""
    if operation.path.startswith("/agent/"):
        return [{"Authorization": f"Bearer {device_token}"}, {}]
    return [*({"Authorization": f"Bearer {make_token(make_user(role))}"}
              for role in ("admin", "technician", "viewer")), {}]


def _fuzz(operation, headers: dict, mode: GenerationMode, ids: dict) -> None:
    """Up to EXAMPLES[mode] generated calls of one operation by one caller (the same ones on
    every run), every answer checked. Wrong input goes in the query and body: the path names
    a record that exists (an id the document calls wrong is no route, see EXAMPLES)."""
    path_ids = None
    if mode is GenerationMode.NEGATIVE:
        path_ids = {p.name: ids[p.name] for p in operation.path_parameters} or None

    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(operation.as_strategy(mode, path_parameters=path_ids))
    def run(case):
        # The caller's credential, not one the generator made up (wrong input is for the rest).
        case.headers = {k: v for k, v in (case.headers or {}).items()
                        if k.lower() != "authorization"} | headers
        case.call_and_validate(checks=CHECKS)

    run()


@pytest.mark.parametrize("shard", range(SHARDS))
def test_the_app_answers_as_documented(app, client, shard):
    """Schemathesis against the app: for every operation but the few that connect out, calls
    as admin, technician, viewer and anonymous (/agent/v1/: a device and anonymous), with input
    as documented and input documented as wrong (among it: no credential, a made-up one), answer
    no 5xx, and only the documented statuses, media types and shapes."""
    device_token, ids = _seed(client)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    fuzzed, mine, failures = set(), set(), []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations[shard::SHARDS]:
        mine.add((operation.method.upper(), operation.path))
        if (operation.method.upper(), operation.path) in NOT_FUZZED:
            continue
        for headers in _callers(operation, device_token):
            for mode in EXAMPLES:
                try:
                    _fuzz(operation, headers, mode, ids)
                except (Exception, BaseExceptionGroup) as exc:  # all operations', not the first
                    failures.append(f"{operation.method.upper()} {operation.path} "
                                    f"({mode.value}, {'with' if headers else 'no'} token): {exc}")
        fuzzed.add((operation.method.upper(), operation.path))
    assert not failures, "\n\n".join(failures)
    # Schemathesis leaves out the document's own path (tested above); the rest was run.
    expected = {(method.upper(), path) for method, path in _documented(document())}
    everything = {(operation.method.upper(), operation.path) for operation in operations}
    assert everything == expected - {("GET", "/api/v1/openapi.json")}  # the shards cover all
    assert fuzzed == mine - set(NOT_FUZZED) and fuzzed


def test_the_run_catches_a_server_error_and_an_undocumented_shape(app, client, monkeypatch):
    """Would the run report a 500, and an answer whose shape the document does not say (the
    checks are not vacuous)?"""
    device_token, ids = _seed(client)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operation = schema["/api/v1/assets"]["GET"]
    admin = _callers(operation, device_token)[0]
    monkeypatch.setattr("portal.services.distribution_points.central_assets_with_status",
                        lambda: 1 / 0)
    with pytest.raises(BaseException, match="Server error"):
        _fuzz(operation, admin, GenerationMode.POSITIVE, ids)
    monkeypatch.setattr("portal.services.distribution_points.central_assets_with_status",
                        lambda: [{"key": 42, "status_by_dp": {}}])
    with pytest.raises(BaseException, match="Response violates schema"):
        _fuzz(operation, admin, GenerationMode.POSITIVE, ids)
