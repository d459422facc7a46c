"""The Provider protocol and the normalised request type every provider adapter receives.

Inside Sluice the OpenAI wire format is the normalised format: requests are OpenAI request
objects, replies are OpenAI JSON bytes and streams are OpenAI SSE events. Adapters translate
at their edge; nothing else knows a provider's own format.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sluice.json_bytes import dumps_to_size

JSONObject = dict[str, Any]
Operation = Literal["chat", "completions", "embeddings"]

OPERATION_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


@dataclass(slots=True)
class NativeCall:
    """The caller's own request in a provider's protocol (a `/v1/messages` body for Anthropic, a `/v1/responses` one
    for OpenAI), for a deployment that speaks it: sent as it is (the deployment's model set) instead of the chat
    form, and its reply relayed unchanged."""

    protocol: Literal["anthropic", "responses"]
    body: JSONObject
    headers: dict[str, str] = field(default_factory=dict)
    """The caller's protocol headers to pass on (`anthropic-version`, `anthropic-beta`)."""
    answered: bool = False
    """Set by the adapter that answered in the protocol: the reply or stream is the provider's own bytes."""


@dataclass(slots=True)
class UpstreamRequest:
    """One call to make upstream, in OpenAI's format, with the model already set to the upstream's name."""

    operation: Operation
    body: JSONObject
    raw: bytes | None = None
    """The caller's bytes when `body` is unchanged, so a pass-through needs no re-encoding."""
    headers: dict[str, str] = field(default_factory=dict)
    """Headers to propagate upstream (request id, trace context)."""
    native: NativeCall | None = None
    """The caller's request in its own protocol, for an adapter that can send it as it is."""

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    def encoded(self) -> bytes:
        """The body as JSON bytes, reusing the caller's bytes when nothing changed."""
        return self.raw if self.raw is not None else dumps_to_size(self.body)


class Provider(Protocol):
    """An upstream behind one interface: complete replies, streams, and lifecycle."""

    name: str

    async def start(self) -> None:
        """Open pooled connections; called once at start-up."""

    async def aclose(self) -> None:
        """Close pooled connections; called once at shutdown."""

    async def send(self, request: UpstreamRequest) -> bytes:
        """Make a non-streaming call and return the OpenAI-shaped JSON reply; raise GatewayError on failure."""

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[bytes, None]:
        """Start a streaming call; raise GatewayError before the first byte, then yield OpenAI SSE bytes.

        The caller must close the returned iterator (`aclose`) if it stops early, which
        cancels the upstream request.
        """
        raise NotImplementedError
