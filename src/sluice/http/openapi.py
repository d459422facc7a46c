"""Adds the raw-ASGI hot routes to FastAPI's OpenAPI document, so /docs shows and tries them."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

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
        "security": [{"HTTPBearer": []}, {"APIKeyHeader": []}],
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
        "security": [{"HTTPBearer": []}, {"APIKeyHeader": []}],
    }


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` with one that also lists the hot routes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        mode: Literal["validation"] = "validation"
        models = [(model, mode) for model, _ in HOT_ROUTE_DOCS.values()] + [(ErrorResponse, mode)]
        refs, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(definitions.get("$defs", {}))
        for path, (model, summary) in HOT_ROUTE_DOCS.items():
            document.setdefault("paths", {})[path] = {"post": _operation(refs[(model, "validation")]["$ref"], summary)}
        document["paths"][PASSTHROUGH_PATH] = {method: _passthrough_operation(method)
                                               for method in ("get", "post", "put", "patch", "delete")}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
