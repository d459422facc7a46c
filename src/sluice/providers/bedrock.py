"""AWS Bedrock's Converse API behind the OpenAI interface: signed calls, errors and eventstream replies translated."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import orjson

from sluice.config import BedrockProviderConfig
from sluice.errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from sluice.json_bytes import dumps_to_size
from sluice.providers.anthropic import chat_body, completion_chunk, completion_from_chat
from sluice.providers.anthropic_request import TranslationError
from sluice.providers.base import JSONObject, UpstreamRequest
from sluice.providers.bedrock_request import converse_path, to_converse_request
from sluice.providers.bedrock_response import BedrockError, bedrock_error, from_converse_response
from sluice.providers.bedrock_signing import RequestSigner
from sluice.providers.bedrock_stream import (
    BedrockStreamError,
    BedrockStreamTranslator,
    EventDecoder,
    FramingError,
    StreamEvent,
)
from sluice.providers.protocol import not_a_reply, shown
from sluice.providers.upstream import OpenStream, UpstreamClient
from sluice.streaming import DONE_EVENT, encode_data

CONTENT_TYPE = "application/json"


class BedrockProvider:
    """Translates OpenAI chat requests to signed Converse / ConverseStream calls and the replies back."""

    def __init__(self, name: str, config: BedrockProviderConfig) -> None:
        self.name = name
        token = config.session_token.get_secret_value() if config.session_token is not None else None
        self.signer = RequestSigner(config.access_key_id.get_secret_value(),
                                    config.secret_access_key.get_secret_value(), token, config.region)
        self.signed_headers = {"Content-Type": CONTENT_TYPE, **config.headers}
        """The headers sent with every call, all under the signature (the configured ones too: AWS wants any
        `x-amz-*` header signed)."""
        self.client = UpstreamClient(name, config.base_url, {}, config.timeout, config.max_connections)

    async def start(self) -> None:
        await self.client.start()

    async def aclose(self) -> None:
        await self.client.aclose()

    def _prepared(self, request: UpstreamRequest, *, stream: bool) -> tuple[str, bytes, dict[str, str]]:
        """The path, the Converse body and the headers (the caller's propagated ones plus the signature)."""
        if request.operation == "embeddings":
            raise InvalidRequest(f"Provider {self.name!r} (Bedrock Converse) does not offer embeddings.",
                                 param="model", code="unsupported_operation")
        body = chat_body(request.body) if request.operation == "completions" else request.body
        try:
            encoded = dumps_to_size(to_converse_request(body))
        except TranslationError as exc:
            raise InvalidRequest(str(exc), param=exc.param) from exc
        path = converse_path(str(request.body["model"]), stream=stream)
        signature = self.signer.signature_headers("POST", self.client.base_url + path, self.signed_headers, encoded)
        return path, encoded, request.headers | self.signed_headers | signature

    async def _open(self, request: UpstreamRequest, *, stream: bool) -> OpenStream:
        """The reply once its headers arrived; an error status raised as the upstream error it stands for."""
        reply = await self.client.open(*self._prepared(request, stream=stream))
        if reply.status >= 400:
            try:
                body = await reply.read()
            finally:
                await reply.close()
            response = reply.response
            raise _failure(bedrock_error(reply.status, body, response.get_header("x-amzn-errortype")),
                           response.get_header("retry-after"))
        return reply

    async def send(self, request: UpstreamRequest) -> bytes:
        reply = await self._open(request, stream=False)
        try:
            body = await reply.read()
        finally:
            await reply.close()
        try:
            decoded = orjson.loads(body)
            if not isinstance(decoded, dict):
                raise ValueError("not an object")
            chat = from_converse_response(decoded, model=str(request.body["model"]), created=int(time.time()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # orjson's JSONDecodeError is a ValueError
            raise not_a_reply(self.name, "Converse reply", body.strip()) from exc
        return orjson.dumps(completion_from_chat(chat) if request.operation == "completions" else chat)

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[bytes, None]:
        reply = await self._open(request, stream=True)
        translator = BedrockStreamTranslator(model=str(request.body["model"]), created=int(time.time()),
                                             include_usage=request.include_usage)
        return self._translate_stream(reply, translator, request.operation == "completions")

    async def _translate_stream(self, reply: OpenStream, translator: BedrockStreamTranslator,
                                as_completion: bool) -> AsyncGenerator[bytes, None]:
        decoder = EventDecoder()
        relay = self.client.relay(reply)
        try:
            async for data in relay:
                for event in self._events(decoder, data):
                    for chunk in _feed(self.name, translator, event):
                        yield encode_data(completion_chunk(chunk) if as_completion else chunk)
        finally:
            await relay.aclose()
        if decoder.pending:
            raise UpstreamProtocolError(f"Upstream provider {self.name!r} ended the stream mid-message.")
        try:
            closing = translator.end()
        except ValueError:
            raise UpstreamProtocolError(f"Upstream provider {self.name!r} ended the stream before "
                                        "messageStop.") from None
        for chunk in closing:
            yield encode_data(completion_chunk(chunk) if as_completion else chunk)
        yield DONE_EVENT

    def _events(self, decoder: EventDecoder, data: bytes) -> list[StreamEvent]:
        try:
            return list(decoder.feed(data))
        except (FramingError, ValueError) as exc:  # ValueError: a payload that is not a JSON object
            raise UpstreamProtocolError(f"Upstream provider {self.name!r} sent bytes that are not an AWS "
                                        f"eventstream of JSON events ({exc}): {shown(data)}.") from None


def _feed(provider: str, translator: BedrockStreamTranslator, event: StreamEvent) -> list[JSONObject]:
    try:
        return translator.feed(event)
    except BedrockStreamError as exc:
        raise _failure(bedrock_error(200, exc.payload, exc.error_type)) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UpstreamProtocolError(f"Upstream provider {provider!r} sent an unreadable {event.event_type!r} "
                                    f"event: {shown(orjson.dumps(event.payload))}.") from exc


def _failure(error: BedrockError, retry_after: str | None = None) -> UpstreamError:
    failure = UpstreamError(error.message, status=error.status, type=error.type, code=error.code)
    failure.keep_retry_after(retry_after)
    return failure
