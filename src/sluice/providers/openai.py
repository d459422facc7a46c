"""OpenAI and every OpenAI-compatible upstream: bodies and streams pass through as bytes, checked as they go
(providers/protocol.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from sluice.config import OpenAIProviderConfig
from sluice.providers.base import OPERATION_PATHS, UpstreamRequest
from sluice.providers.protocol import check_reply, checked_events
from sluice.providers.upstream import UpstreamClient, raise_for_openai_error


class OpenAIProvider:
    """An OpenAI-compatible base URL (OpenAI, OpenRouter, vLLM, Ollama, LM Studio, Gemini)."""

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        self.name = name
        headers = dict(config.headers)
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self.client = UpstreamClient(name, config.base_url, headers, config.timeout, config.max_connections)

    async def start(self) -> None:
        await self.client.start()

    async def aclose(self) -> None:
        await self.client.aclose()

    def _target(self, request: UpstreamRequest) -> tuple[str, Mapping[str, str] | None]:
        return OPERATION_PATHS[request.operation], None

    async def send(self, request: UpstreamRequest) -> bytes:
        path, params = self._target(request)
        status, body, retry_after = await self.client.post(path, request.encoded(), request.headers, params)
        raise_for_openai_error(self.name, status, body, retry_after)
        check_reply(self.name, request.operation, body)
        return body

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[bytes, None]:
        path, params = self._target(request)
        reply = await self.client.open(path, request.encoded(), request.headers, params)
        if reply.status >= 400:
            try:
                body = await reply.read()
            finally:
                await reply.close()
            raise_for_openai_error(self.name, reply.status, body, reply.response.get_header("retry-after"))
        return checked_events(reply, self.name)
