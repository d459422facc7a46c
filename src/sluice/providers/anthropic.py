"""Anthropic's Messages API behind the OpenAI interface: calls, errors and streams translated both ways."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import orjson

from sluice.config import AnthropicProviderConfig
from sluice.errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from sluice.json_bytes import dumps_to_size
from sluice.providers.anthropic_translate import (
    AnthropicStreamError,
    AnthropicStreamTranslator,
    TranslationError,
    from_anthropic_response,
    openai_error_from_anthropic,
    to_anthropic_request,
)
from sluice.providers.base import JSONObject, NativeCall, UpstreamRequest
from sluice.providers.protocol import not_a_reply, shown
from sluice.providers.upstream import OpenStream, UpstreamClient
from sluice.streaming import DONE_EVENT, NotSSE, SSEDecoder, encode_data

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


class AnthropicProvider:
    """Translates OpenAI chat requests to Messages API calls and the replies back."""

    def __init__(self, name: str, config: AnthropicProviderConfig) -> None:
        self.name = name
        self.api_version = config.api_version
        self.default_max_tokens = config.default_max_tokens
        headers = {"anthropic-version": config.api_version, **config.headers}
        if config.api_key is not None:
            headers["x-api-key"] = config.api_key.get_secret_value()
        self.client = UpstreamClient(name, config.base_url, headers, config.timeout, config.max_connections)

    async def start(self) -> None:
        await self.client.start()

    async def aclose(self) -> None:
        await self.client.aclose()

    def _translate(self, request: UpstreamRequest) -> bytes:
        if request.operation == "embeddings":
            raise InvalidRequest(f"Provider {self.name!r} (Anthropic) does not offer embeddings.", param="model",
                                 code="unsupported_operation")
        body = chat_body(request.body) if request.operation == "completions" else request.body
        try:
            translated = to_anthropic_request(body, model=str(body["model"]), api_version=self.api_version,
                                              default_max_tokens=self.default_max_tokens)
        except TranslationError as exc:
            raise InvalidRequest(str(exc), param=exc.param) from exc
        return dumps_to_size(translated)

    def _raise_for_status(self, status: int, body: bytes, retry_after: str | None = None) -> None:
        if status >= 400:
            client_status, error = openai_error_from_anthropic(status, body)
            failure = UpstreamError(str(error.get("message")), status=client_status, type=error.get("type"),
                                    code=error.get("code"), param=error.get("param"))
            failure.keep_retry_after(retry_after)
            raise failure

    def _native(self, request: UpstreamRequest, native: NativeCall) -> tuple[bytes, dict[str, str]]:
        """The caller's Messages request as it is, with the deployment's model, and its protocol headers."""
        body = native.body
        if body.get("model") != request.body["model"]:
            body = {**body, "model": request.body["model"]}
        return dumps_to_size(body), request.headers | native.headers

    async def send(self, request: UpstreamRequest) -> bytes:
        native = request.native
        if native is not None:
            status, body, retry_after = await self.client.post(MESSAGES_PATH, *self._native(request, native))
            self._raise_for_status(status, body, retry_after)
            stripped = body.strip()
            if not (stripped[:1] == b"{" and stripped[-1:] == b"}" and b'"content"' in stripped):
                raise not_a_reply(self.name, "Messages API message", stripped)
            native.answered = True
            return body
        status, body, retry_after = await self.client.post(MESSAGES_PATH, self._translate(request), request.headers)
        self._raise_for_status(status, body, retry_after)
        try:
            message = orjson.loads(body)
            if not isinstance(message, dict) or not isinstance(message.get("content"), list):
                raise ValueError("not a message")
            reply = from_anthropic_response(message, model=str(request.body["model"]), created=int(time.time()))
            if request.operation == "completions":
                reply = completion_from_chat(reply)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # orjson's JSONDecodeError is a ValueError
            raise not_a_reply(self.name, "Messages API message", body.strip()) from exc
        return orjson.dumps(reply)

    async def count_tokens(self, request: UpstreamRequest) -> bytes:
        """The upstream's `POST /v1/messages/count_tokens` answer to the caller's request (`request.native`)."""
        assert request.native is not None
        status, body, retry_after = await self.client.post(COUNT_TOKENS_PATH, *self._native(request, request.native))
        self._raise_for_status(status, body, retry_after)
        if b'"input_tokens"' not in body:
            raise not_a_reply(self.name, "token count", body.strip())
        return body

    async def stream(self, request: UpstreamRequest) -> AsyncGenerator[bytes, None]:
        native = request.native
        if native is not None:
            reply = await self.client.open(MESSAGES_PATH, *self._native(request, native))
        else:
            reply = await self.client.open(MESSAGES_PATH, self._translate(request), request.headers)
        if reply.status >= 400:
            try:
                body = await reply.read()
            finally:
                await reply.close()
            self._raise_for_status(reply.status, body, reply.response.get_header("retry-after"))
        if native is not None:
            native.answered = True
            return self._relay_native(reply)
        translator = AnthropicStreamTranslator(model=str(request.body["model"]), created=int(time.time()),
                                               include_usage=request.include_usage)
        return self._translate_stream(reply, translator, request.operation == "completions")

    async def _translate_stream(self, reply: OpenStream, translator: AnthropicStreamTranslator,
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
                    for chunk in _feed(self.name, translator, event.event, event.data):
                        yield encode_data(completion_chunk(chunk) if as_completion else chunk)
                if translator.done:
                    yield DONE_EVENT
                    return
        finally:
            await relay.aclose()
        how = "mid-event" if decoder.pending else "before message_stop"
        raise UpstreamProtocolError(f"Upstream provider {self.name!r} ended the stream {how}.")


    async def _relay_native(self, reply: OpenStream) -> AsyncGenerator[bytes, None]:
        """The upstream's event stream relayed byte for byte; a stream that closes before `message_stop` is an
        upstream protocol error (the front door ends it with an `error` event)."""
        relay = self.client.relay(reply)
        tail = b""
        try:
            async for data in relay:
                yield data
                tail = (tail + data[-64:])[-64:]
                if STOP_EVENT in tail:
                    return
        finally:
            await relay.aclose()
        raise UpstreamProtocolError(f"Upstream provider {self.name!r} ended the stream before message_stop.")


STOP_EVENT = b"event: message_stop"


def _feed(provider: str, translator: AnthropicStreamTranslator, event: str, data: str) -> list[JSONObject]:
    try:
        decoded = orjson.loads(data) if data else {}
        if not isinstance(decoded, dict):
            raise ValueError("not an object")
        return translator.feed(event, decoded)
    except AnthropicStreamError as exc:
        status = 503 if exc.error_type == "overloaded_error" else 502
        raise UpstreamError(exc.message, status=status, type=exc.error_type) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # orjson's JSONDecodeError is a ValueError
        raise UpstreamProtocolError(f"Upstream provider {provider!r} sent an unreadable {event!r} event: "
                                    f"{shown(data.encode())}.") from exc


def chat_body(body: JSONObject) -> JSONObject:
    """A legacy completions request as a one-message chat request."""
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else "".join(map(str, prompt)) if isinstance(prompt, list) else ""
    chat = {key: value for key, value in body.items() if key not in ("prompt", "echo", "suffix", "logprobs", "best_of")}
    chat["messages"] = [{"role": "user", "content": text}]
    return chat


def completion_from_chat(reply: JSONObject) -> JSONObject:
    """A `chat.completion` reshaped as a legacy `text_completion`."""
    choices = [{"index": c["index"], "text": c["message"].get("content") or "", "logprobs": None,
                "finish_reason": c["finish_reason"]} for c in reply["choices"]]
    return {"id": reply["id"], "object": "text_completion", "created": reply["created"], "model": reply["model"],
            "choices": choices, "usage": reply.get("usage")}


def completion_chunk(chunk: JSONObject) -> JSONObject:
    """A `chat.completion.chunk` reshaped as a streamed `text_completion`."""
    choices = [{"index": c["index"], "text": c["delta"].get("content") or "", "logprobs": None,
                "finish_reason": c.get("finish_reason")} for c in chunk["choices"]]
    out = {"id": chunk["id"], "object": "text_completion", "created": chunk["created"], "model": chunk["model"],
           "choices": choices}
    if chunk.get("usage") is not None:
        out["usage"] = chunk["usage"]
    return out
