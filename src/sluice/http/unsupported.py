"""The 404 for a path no route serves: OpenAI-shaped, and for OpenAI's own endpoints a pointer to passthrough."""

from __future__ import annotations

from collections.abc import Mapping

from sluice.config import ProviderConfig
from sluice.errors import GatewayError
from sluice.http.asgi import Scope, Send, send_error

OPENAI_RESOURCES = frozenset({
    "assistants", "audio", "batches", "chat", "chatkit", "completions", "containers", "conversations", "edits",
    "embeddings", "engines", "evals", "files", "fine-tunes", "fine_tuning", "images", "models", "moderations",
    "organization", "realtime", "responses", "threads", "uploads", "vector_stores", "videos",
})
"""The first path segment after `/v1/` of OpenAI's API resources; any path under one that Sluice does not serve is
an unsupported endpoint (e.g. `/v1/moderations`, `/v1/audio/speech`, `/v1/chat/completions/{id}`)."""

SERVED = ("/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, /v1/messages and "
          "/v1/models")


def is_openai_endpoint(path: str) -> bool:
    return path.startswith("/v1/") and path[4:].split("/", 1)[0] in OPENAI_RESOURCES


def unsupported_endpoint(method: str, path: str, providers: Mapping[str, ProviderConfig] | None) -> GatewayError:
    """404 `unsupported_endpoint`: what Sluice serves, and the `/provider/{name}/…` path that reaches a configured
    provider's own API (an `openai`-type one first, with the equivalent path)."""
    upstream = {name: config.type for name, config in (providers or {}).items()
                if config.type not in ("mock", "bedrock")}  # a bedrock provider refuses passthrough (unsigned)
    openai_named = [name for name, kind in upstream.items() if kind == "openai"]
    if openai_named:
        hint = (f"/provider/{{name}}/… reaches a provider's own API: here /provider/{openai_named[0]}/"
                f"{path[4:]} goes to {openai_named[0]}'s base URL + /{path[4:]}.")
    elif upstream:
        hint = f"/provider/{{name}}/… reaches a provider's own API (configured: {', '.join(sorted(upstream))})."
    elif providers is not None:
        hint = ("/provider/{name}/… reaches a provider's own API, once the config has one with an upstream "
                "(type openai, azure or anthropic; mock has none).")
    else:
        hint = "/provider/{name}/… reaches a configured provider's own API."
    return GatewayError(f"{method} {path} is not supported by this gateway: Sluice serves {SERVED}. {hint}",
                        status=404, type="invalid_request_error", code="unsupported_endpoint")


async def unknown_route(scope: Scope, send: Send, providers: Mapping[str, ProviderConfig] | None = None) -> None:
    """Answer a path no route serves: `unsupported_endpoint` under OpenAI's resources, else `not_found`."""
    method, path = scope["method"], scope["path"]
    if is_openai_endpoint(path):
        error = unsupported_endpoint(method, path, providers)
    else:
        error = GatewayError(f"Unknown route: {method} {path}", status=404, type="invalid_request_error",
                             code="not_found")
    await send_error(send, error, [])
