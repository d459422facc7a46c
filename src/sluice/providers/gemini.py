"""Google Gemini's native API (v1beta) behind the OpenAI interface: calls, errors and streams translated both ways."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

import orjson

from sluice.config import GeminiProviderConfig
from sluice.errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from sluice.json_bytes import dumps_to_size
from sluice.providers.anthropic import chat_body, completion_chunk, completion_from_chat
from sluice.providers.base import JSONObject, UpstreamRequest
from sluice.providers.gemini_translate import (
    GeminiError,
    GeminiStreamError,
    GeminiStreamTranslator,
    TranslationError,
    from_gemini_embeddings,
    from_gemini_response,
    gemini_error,
    model_path,
    to_gemini_embeddings,
    to_gemini_request,
)
from sluice.providers.protocol import not_a_reply, shown
from sluice.providers.upstream import OpenStream, UpstreamClient
from sluice.streaming import DONE_EVENT, NotSSE, SSEDecoder, encode_data

API_PREFIX = "/v1beta/"
STREAM_PARAMS = {"alt": "sse"}
logger = logging.getLogger("sluice.providers.gemini")


class GeminiProvider:
    """Translates OpenAI chat and embeddings requests to generateContent / batchEmbedContents calls and back."""

    def __init__(self, name: str, config: GeminiProviderConfig) -> None:
        self.name = name
        headers = dict(config.headers)
        if config.api_key is not None:
            headers["x-goog-api-key"] = config.api_key.get_secret_value()  # never `?key=`: URLs end up in logs
        self.client = UpstreamClient(name, config.base_url, headers, config.timeout, config.max_connections)

    async def start(self) -> None:
        await self.client.start()

    async def aclose(self) -> None:
        await self.client.aclose()

    def _path(self, request: UpstreamRequest, method: str) -> str:
        return f"{API_PREFIX}{model_path(str(request.body['model']))}:{method}"

    def _translate(self, request: UpstreamRequest) -> bytes:
        try:
            if request.operation == "embeddings":
                return dumps_to_size(to_gemini_embeddings(request.body, str(request.body["model"])))
            body = chat_body(request.body) if request.operation == "completions" else request.body
            dropped: list[str] = []
            translated = to_gemini_request(body, dropped)
        except TranslationError as exc:
            raise InvalidRequest(str(exc), param=exc.param) from exc
        if dropped:
            logger.debug("provider %s: JSON Schema keywords Gemini does not accept were left out: %s", self.name,
                         ", ".join(dropped))
        return dumps_to_size(translated)

    def _raise_for_status(self, status: int, body: bytes, retry_after: str | None = None) -> None:
        if status >= 400:
            raise _failure(gemini_error(status, body), retry_after)

    async def send(self, request: UpstreamRequest) -> bytes:
        method = "batchEmbedContents" if request.operation == "embeddings" else "generateContent"
        status, body, retry_after = await self.client.post(self._path(request, method), self._translate(request),
                                                           request.headers)
        self._raise_for_status(status, body, retry_after)
        model = str(request.body["model"])
        try:
            reply = orjson.loads(body)
            if not isinstance(reply, dict):
                raise ValueError("not an object")
            if request.operation == "embeddings":
                return orjson.dumps(from_gemini_embeddings(reply, model=model,
                                                           encoding_format=request.body.get("encoding_format")))
            chat = from_gemini_response(reply, model=model, created=int(time.time()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # orjson's JSONDecodeError is a ValueError
            expected = "batchEmbedContents reply" if request.operation == "embeddings" else "GenerateContentResponse"
            raise not_a_reply(self.name, expected, body.strip()) from exc
        return orjson.dumps(completion_from_chat(chat) if request.operation == "completions" else chat)

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[bytes, None]:
        if request.operation == "embeddings":
            raise InvalidRequest("Embeddings are not streamed.", param="stream")
        reply = await self.client.open(self._path(request, "streamGenerateContent"), self._translate(request),
                                       request.headers, STREAM_PARAMS)
        if reply.status >= 400:
            try:
                body = await reply.read()
            finally:
                await reply.close()
            self._raise_for_status(reply.status, body, reply.response.get_header("retry-after"))
        translator = GeminiStreamTranslator(model=str(request.body["model"]), created=int(time.time()),
                                            include_usage=request.include_usage)
        return self._translate_stream(reply, translator, request.operation == "completions")

    async def _translate_stream(self, reply: OpenStream, translator: GeminiStreamTranslator,
                                as_completion: bool) -> AsyncGenerator[bytes, None]:
        decoder = SSEDecoder(strict=True)
        relay = self.client.relay(reply)
        try:
            async for data in relay:
                try:
                    events = decoder.feed(data)
                except NotSSE as exc:
                    raise UpstreamProtocolError(f"Upstream provider {self.name!r} sent a line that is not "
                                                f"server-sent events: {shown(exc.line)}.") from None
                for event in events:
                    for chunk in _feed(self.name, translator, event.data):
                        yield encode_data(completion_chunk(chunk) if as_completion else chunk)
        finally:
            await relay.aclose()
        if decoder.pending:
            raise UpstreamProtocolError(f"Upstream provider {self.name!r} ended the stream mid-event.")
        try:
            closing = translator.end()
        except ValueError:
            raise UpstreamProtocolError(f"Upstream provider {self.name!r} ended the stream before a "
                                        "finishReason.") from None
        for chunk in closing:
            yield encode_data(completion_chunk(chunk) if as_completion else chunk)
        yield DONE_EVENT


def _feed(provider: str, translator: GeminiStreamTranslator, data: str) -> list[JSONObject]:
    if not data:
        return []
    try:
        decoded = orjson.loads(data)
        if not isinstance(decoded, dict):
            raise ValueError("not an object")
        return translator.feed(decoded)
    except GeminiStreamError as exc:
        raise _failure(gemini_error(200, {"error": exc.error})) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # orjson's JSONDecodeError is a ValueError
        raise UpstreamProtocolError(f"Upstream provider {provider!r} sent an unreadable event: "
                                    f"{shown(data.encode())}.") from exc


def _failure(error: GeminiError, retry_after: str | None = None) -> UpstreamError:
    status = error.status if error.status >= 400 else 502
    failure = UpstreamError(error.message, status=status, type=error.type, code=error.code)
    failure.keep_retry_after(retry_after or error.retry_after)
    return failure
