"""The OpenAPI document says what the API really answers, errors included.

FastAPI documents a route's success and, for validated input, a 422 in its own shape. Ours
are all problem+json, and some come from layers no route declares: the input guard (400),
the body limit (413), authentication (401), the request rate (429), the database (503).
`documented` adds them by rule from what each operation is: authenticated or not, with path
parameters, with a body. What only a route knows (403 for admins only, 409, 415) it declares
in its decorator with `problems(...)`; every error response then gets the Problem schema.
`make test` holds the document to this with schemathesis (tests/e2e/test_schema_fuzz.py).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from backburner.api.auth import current_principal
from backburner.api.problems import PROBLEM_JSON

DESCRIPTIONS = {
    400: "Malformed: not JSON, or a path or query with bytes that are not text",
    401: "No API key, or an unknown or revoked one",
    402: "The owner's monthly budget is spent",
    403: "This needs an admin key",
    404: "No such thing, or it belongs to another owner",
    409: "Conflicts with the current state",
    413: "The body is larger than allowed",
    415: "Not a supported type of document",
    422: "A field is wrong (see `errors`)",
    429: "Over a request rate limit (see Retry-After)",
    502: "The model provider refused or answered something unusable",
    503: "The database, object storage or the model provider is unavailable (see Retry-After)",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error, as RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own error answers, for its decorator's `responses=`."""
    return {status: {"description": DESCRIPTIONS[status]} for status in statuses}


def _operation_statuses(operation: dict[str, Any], authenticated: bool) -> set[int]:
    statuses = {400, 503}
    has_params = bool(operation.get("parameters"))
    if authenticated:
        statuses |= {401, 429}
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        statuses.add(404)
    if has_params or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses.add(413)
    return statuses


def documented(schema: dict[str, Any], authenticated: set[tuple[str, str]]) -> dict[str, Any]:
    """`schema` with every operation's error answers, each a Problem (pure)."""
    out = copy.deepcopy(schema)
    components = out.setdefault("components", {})
    component_schemas = components.setdefault("schemas", {})
    component_schemas.pop("HTTPValidationError", None)
    component_schemas.pop("ValidationError", None)
    component_schemas["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in out.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            needs_key = (method, path) in authenticated
            if needs_key:
                operation["security"] = [{"bearer": []}]
            responses = operation["responses"]
            for status in _operation_statuses(operation, needs_key):
                responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    if "model" not in response and not _is_json_model(response):
                        response["content"] = problem
                    response.setdefault("description", DESCRIPTIONS.get(int(status), "Error"))
                    if status in ("429", "503"):
                        response["headers"] = RETRY_AFTER
    return out


def _is_json_model(response: dict[str, Any]) -> bool:
    """A documented error answered with a model of its own (as /readyz's 503 is)."""
    content = response.get("content", {}).get("application/json", {})
    ref = content.get("schema", {}).get("$ref", "")
    return bool(ref) and not ref.endswith("/HTTPValidationError")


def _needs_key(route: APIRoute) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if dependency.call is current_principal:
            return True
        stack.extend(dependency.dependencies)
    return False


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            authenticated = {
                (method.lower(), route.path_format)
                for route in app.routes
                if isinstance(route, APIRoute) and _needs_key(route)
                for method in route.methods or ()
            }
            app.openapi_schema = documented(schema, authenticated)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
