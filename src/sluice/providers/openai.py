"""OpenAI and every OpenAI-compatible upstream: bodies and streams pass through as bytes, checked as they go
(providers/protocol.py); a `/v1/responses` call is sent to the upstream's own Responses API where it has one."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from urllib.parse import urlsplit

from sluice.config import OpenAIProviderConfig
from sluice.errors import UpstreamProtocolError
from sluice.json_bytes import dumps_to_size
from sluice.providers.base import OPERATION_PATHS, NativeCall, UpstreamRequest
from sluice.providers.protocol import check_reply, checked_events, not_a_reply
from sluice.providers.upstream import OpenStream, UpstreamClient, raise_for_openai_error
from sluice.streaming import NotSSE, SSEDecoder

RESPONSES_PATH = "/responses"
OPENAI_HOSTS = frozenset({"api.openai.com"})
RESPONSE_ENDINGS = frozenset({"response.completed", "response.incomplete", "response.failed"})
"""The events that end a Responses stream (an `error` event may follow a failed one)."""


class OpenAIProvider:
    """An OpenAI-compatible base URL (OpenAI, OpenRouter, vLLM, Ollama, LM Studio, Gemini)."""

    native_responses = False
    """Whether `/v1/responses` calls go to the upstream's own Responses API (`NativeCall` "responses")."""

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        self.name = name
        headers = dict(config.headers)
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self.client = UpstreamClient(name, config.base_url, headers, config.timeout, config.max_connections)
        native = config.native_responses
        self.native_responses = urlsplit(config.base_url).hostname in OPENAI_HOSTS if native is None else native

    async def start(self) -> None:
        await self.client.start()

    async def aclose(self) -> None:
        await self.client.aclose()

    def _target(self, request: UpstreamRequest) -> tuple[str, Mapping[str, str] | None]:
        return OPERATION_PATHS[request.operation], None

    def _native(self, request: UpstreamRequest) -> NativeCall | None:
        native = request.native
        return native if native is not None and native.protocol == "responses" and self.native_responses else None

    async def send(self, request: UpstreamRequest) -> bytes:
        native = self._native(request)
        if native is not None:
            status, body, retry_after = await self.client.post(RESPONSES_PATH, native_bytes(request, native),
                                                               request.headers)
            raise_for_openai_error(self.name, status, body, retry_after)
            stripped = body.strip()
            if not (stripped[:1] == b"{" and b'"output"' in stripped):
                raise not_a_reply(self.name, "Responses API response", stripped)
            native.answered = True
            return body
        path, params = self._target(request)
        status, body, retry_after = await self.client.post(path, request.encoded(), request.headers, params)
        raise_for_openai_error(self.name, status, body, retry_after)
        check_reply(self.name, request.operation, body)
        return body

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[bytes, None]:
        native = self._native(request)
        if native is not None:
            reply = await self.client.open(RESPONSES_PATH, native_bytes(request, native), request.headers)
        else:
            path, params = self._target(request)
            reply = await self.client.open(path, request.encoded(), request.headers, params)
        if reply.status >= 400:
            try:
                body = await reply.read()
            finally:
                await reply.close()
            raise_for_openai_error(self.name, reply.status, body, reply.response.get_header("retry-after"))
        if native is not None:
            native.answered = True
            return self._relay_native(reply)
        return checked_events(reply, self.name)

    async def _relay_native(self, reply: OpenStream) -> AsyncGenerator[bytes, None]:
        """The upstream's Responses event stream relayed byte for byte; one that closes before its ending event is
        an upstream protocol error (the front door ends it with an `error` event)."""
        decoder = SSEDecoder()
        relay = self.client.relay(reply)
        ended = False
        try:
            async for data in relay:
                yield data
                if not ended:
                    try:
                        ended = any(event.event in RESPONSE_ENDINGS for event in decoder.feed(data))
                    except NotSSE:
                        break
        finally:
            await relay.aclose()
        if not ended:
            raise UpstreamProtocolError(f"Upstream provider {self.name!r} ended the Responses stream before "
                                        "response.completed.")


def native_bytes(request: UpstreamRequest, native: NativeCall) -> bytes:
    """The caller's Responses request with the deployment's model."""
    body = native.body
    if body.get("model") != request.body["model"]:
        body = {**body, "model": request.body["model"]}
    return dumps_to_size(body)
