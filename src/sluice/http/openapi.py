"""Adds the raw-ASGI routes (hot and light) to FastAPI's OpenAPI document, so /docs shows and tries them."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from sluice.http.health import Health
from sluice.http.models import Model, ModelList
from sluice.http.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ErrorResponse

HOT_ROUTE_DOCS: dict[str, tuple[type[BaseModel], str]] = {
    "/v1/chat/completions": (ChatCompletionRequest, "Create a chat completion (JSON, or SSE with `stream: true`)"),
    "/v1/completions": (CompletionRequest, "Create a legacy text completion"),
    "/v1/embeddings": (EmbeddingRequest, "Create embeddings"),
}
ERROR_STATUSES = {"400": "Invalid request", "401": "Missing or wrong API key", "404": "Unknown model",
                  "413": "Body too large", "502": "Upstream unreachable", "504": "Upstream timeout"}


_MODE_SCHEMA = {"type": "string", "enum": ["sse", "ndjson", "json"]}
STREAM_MODE_PARAMETERS = [
    {"name": "stream_mode", "in": "query", "required": False, "schema": _MODE_SCHEMA,
     "description": "Response framing: `sse` (text/event-stream), `ndjson` (application/x-ndjson, one chunk "
                    "object per line, no [DONE]) or `json` (one complete body). Overrides the body's `stream`; "
                    "wins over X-Stream-Mode. Default: the body's `stream` decides."},
    {"name": "X-Stream-Mode", "in": "header", "required": False, "schema": _MODE_SCHEMA,
     "description": "Same as `stream_mode`, for clients that cannot change the URL."},
]


def _operation(schema_ref: str, summary: str) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    responses: dict[str, Any] = {"200": {"description": "The upstream's answer in OpenAI's format",
                                         "content": {"application/json": {}, "text/event-stream": {},
                                                     "application/x-ndjson": {}}}}
    responses.update({status: {"description": text, **error} for status, text in ERROR_STATUSES.items()})
    return {
        "tags": ["openai"], "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": schema_ref}}}},
        "parameters": STREAM_MODE_PARAMETERS,
        "responses": responses,
        "security": KEY_SECURITY,
    }


KEY_SECURITY: list[dict[str, list[str]]] = [{"HTTPBearer": []}]
KEY_SCHEMES: dict[str, dict[str, str]] = {
    "HTTPBearer": {"type": "http", "scheme": "bearer",
                   "description": "A Sluice API key, sent as `Authorization: Bearer <key>` (clients may send "
                                  "`X-API-Key: <key>` instead)."},
    "AdminBearer": {"type": "http", "scheme": "bearer",
                    "description": "SLUICE_ADMIN_KEY, or an API key with the admin scope, for /admin (sent as "
                                   "`Authorization: Bearer <key>`; `X-API-Key` works too)."},
}
"""The two schemes of the "Authorize" dialog: callers and admins. The X-API-Key header the routes also accept is
left out of the document, so the dialog asks for each key once."""


def _light_operations(refs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """/health, /metrics and the models routes, as FastAPI documented them when they were its routes."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}

    def ok(name: str) -> dict[str, Any]:
        return {"description": "Successful Response", "content": {"application/json": {"schema": {"$ref": refs[name]}}}}

    keyed = {"401": {"description": "Missing or wrong API key", **error},
             "429": {"description": "Over a rate limit", **error}}
    model_id = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/health": {"get": {"tags": ["health"], "summary": "Liveness (no key)", "operationId": "health",
                            "responses": {"200": ok("Health")}}},
        "/health/ready": {"get": {"tags": ["health"], "summary": "Readiness (no key): 503 while no model has a "
                                  "usable deployment or the config's database does not answer",
                                  "operationId": "ready",
                                  "responses": {"200": {"description": "Ready", "content": {"application/json": {}}},
                                                "503": {"description": "Not ready, with the reasons",
                                                        "content": {"application/json": {}}}}}},
        "/metrics": {"get": {"tags": ["operations"], "summary": "Prometheus metrics", "operationId": "metrics",
                             "responses": {"200": {"description": "Prometheus text exposition",
                                                   "content": {"text/plain": {}}},
                                           "401": {"description": "Not allowed to scrape", **error}},
                             "security": KEY_SECURITY}},
        "/v1/models": {"get": {"tags": ["openai"], "summary": "List the models the key may use",
                               "operationId": "list_models", "responses": {"200": ok("ModelList"), **keyed},
                               "security": KEY_SECURITY}},
        "/v1/models/{model_id}": {"get": {
            "tags": ["openai"], "summary": "One model", "operationId": "get_model", "parameters": [model_id],
            "responses": {"200": ok("Model"), "404": {"description": "Unknown model", **error}, **keyed},
            "security": KEY_SECURITY}},
    }


PASSTHROUGH_PATH = "/provider/{name}/{path}"
_PASSTHROUGH_ERRORS = {"400": "Path would leave the provider's base URL", "401": "Missing or wrong API key",
                       "403": "The key may not use this provider", "404": "Unknown provider, or `mock`",
                       "502": "Upstream unreachable", "504": "Upstream timeout"}


def _passthrough_operation(method: str) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    responses: dict[str, Any] = {"default": {"description": "The upstream's reply: status, headers and body unchanged"}}
    responses.update({status: {"description": text, **error} for status, text in _PASSTHROUGH_ERRORS.items()})
    return {
        "tags": ["provider passthrough"], "operationId": f"passthrough_{method}",
        "summary": f"{method.upper()} forwarded to the provider's base URL + /path, with its credentials",
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "A provider name from the config"},
            {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "The rest of the path; the query string is forwarded too. Swagger UI percent-encodes "
                            "slashes here, which Sluice refuses (400): use curl or a client for nested paths"},
        ],
        "responses": responses,
        "security": KEY_SECURITY,
    }


def _only_known_schemes(paths: dict[str, Any]) -> None:
    """Drop the alternatives FastAPI derived from the routes' X-API-Key dependencies (`APIKeyHeader`,
    `AdminAPIKey`): every operation keeps the `KEY_SCHEMES` entries it names."""
    for operations in paths.values():
        for operation in operations.values():
            if isinstance(operation, dict) and "security" in operation:
                operation["security"] = [requirement for requirement in operation["security"]
                                         if set(requirement) <= set(KEY_SCHEMES)]


_ERROR_REF = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
def error_responses(**statuses: str) -> dict[int | str, dict[str, Any]]:
    """A FastAPI route's `responses=` for the errors it raises itself, e.g. `error_responses(e409="…")`."""
    return {int(status.removeprefix("e")): {"model": ErrorResponse, "description": text}
            for status, text in statuses.items()}


_API_ERRORS = {"401": "Missing or wrong key", "403": "The key may not use this route", "429": "Over a rate limit"}


def _api_errors(document: dict[str, Any]) -> None:
    """The errors FastAPI's routes really answer: a validation error is a 400 in OpenAI's shape (http/errors.py),
    not FastAPI's 422, and a keyed route may refuse the key (401, 403) or be over a limit (429)."""
    for path, operations in document["paths"].items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None or operation.get("parameters") or "requestBody" in operation:
                responses.setdefault("400", {"description": "Invalid request", **_ERROR_REF})
            if "{" in path:
                responses.setdefault("404", {"description": "Not found", **_ERROR_REF})
            if operation.get("security"):
                responses.update({status: {"description": text, **_ERROR_REF} for status, text in _API_ERRORS.items()
                                  if status not in responses})
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` with one that also lists the hot routes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        document.setdefault("paths", {})
        _api_errors(document)  # before the raw routes are added: their errors are documented where they are built
        mode: Literal["validation"] = "validation"
        light: list[type[BaseModel]] = [Health, Model, ModelList]
        models = [(model, mode) for model, _ in HOT_ROUTE_DOCS.values()] + [(m, mode) for m in light] + [
            (ErrorResponse, mode)]
        refs, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(definitions.get("$defs", {}))
        components["securitySchemes"] = dict(KEY_SCHEMES)
        paths = document.setdefault("paths", {})
        for path, (model, summary) in HOT_ROUTE_DOCS.items():
            paths[path] = {"post": _operation(refs[(model, "validation")]["$ref"], summary)}
        paths.update(_light_operations({m.__name__: refs[(m, "validation")]["$ref"] for m in light}))
        paths[PASSTHROUGH_PATH] = {method: _passthrough_operation(method)
                                   for method in ("get", "post", "put", "patch", "delete")}
        _only_known_schemes(paths)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
