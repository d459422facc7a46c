"""A scripted fake of Google Gemini's native REST API (v1beta) that speaks the real wire format, with builders.

Serves `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (`?alt=sse`: SSE of
GenerateContentResponse objects, each `data: {json}` ending in CRLF CRLF; without it a JSON array, as the real
API does) and `:batchEmbedContents`. The key must come in `x-goog-api-key`; a key in the URL is refused. Default
replies echo the last user text (``"echo: " + text``) once per `candidateCount`; tests append `Reply` entries to
``app.state.script`` (each answers one request) and read ``app.state.requests``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FAKE_KEY = "gem-secret"
ECHO_PREFIX = "echo: "
EMBEDDING_DIMENSIONS = 8
TOP_LEVEL_FIELDS = frozenset({
    "contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent",
    "labels",
})
GENERATION_FIELDS = frozenset({
    "temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "responseMimeType",
    "responseSchema", "responseJsonSchema", "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs",
    "logprobs", "thinkingConfig", "responseModalities", "mediaResolution", "speechConfig",
})
SCHEMA_FIELDS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "items", "minItems", "maxItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "minimum", "maximum",
})
PART_FIELDS = frozenset({"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                         "codeExecutionResult"})
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}

Event = dict[str, Any]


@dataclass
class ErrorReply:
    """A Google API error: ``{"error": {"code", "message", "status", "details"}}``."""

    status: int
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.status, "message": self.message,
                          "status": STATUS_NAMES.get(self.status, "UNKNOWN"), "details": self.details}}


@dataclass
class StreamReply:
    """Stream these events (dicts as `data: {json}`, strings verbatim), `delay` seconds apart."""

    events: Sequence[Event | str]
    delay: float = 0.0


Reply = dict[str, Any] | StreamReply | ErrorReply


@dataclass
class RecordedRequest:
    """What the fake received: model, method (`generateContent`, …), query, lower-cased headers, decoded body."""

    model: str
    method: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


# --- builders -------------------------------------------------------------------------------------------------


def function_call(name: str, args: dict[str, Any], signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def candidate(parts: Sequence[dict[str, Any] | str], finish: str | None = "STOP", index: int = 0) -> dict[str, Any]:
    """One candidate; strings are text parts."""
    content = [{"text": part} if isinstance(part, str) else part for part in parts]
    out: dict[str, Any] = {"content": {"parts": content, "role": "model"}, "index": index}
    if finish is not None:
        out["finishReason"] = finish
    return out


def usage(prompt: int = 10, candidates: int = 5, thoughts: int = 0, cached: int = 0) -> dict[str, Any]:
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates + thoughts}
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    if cached:
        meta["cachedContentTokenCount"] = cached
    return meta


def response(*candidates: dict[str, Any], meta: dict[str, Any] | None = None, model: str = "gemini-fake",
             response_id: str = "fake-response-1") -> dict[str, Any]:
    """A GenerateContentResponse."""
    return {"candidates": list(candidates), "usageMetadata": meta or usage(), "modelVersion": model,
            "responseId": response_id}


def stream_events(reply: dict[str, Any], chunks: int = 3) -> list[Event]:
    """The events with which the API streams `reply`: text cut into `chunks` pieces per event, each function call
    whole in an event of its own, the finishReason and the full usage on the last event."""
    events: list[Event] = []
    last = len(reply["candidates"]) - 1
    for number, cand in enumerate(reply["candidates"]):
        pieces: list[dict[str, Any]] = []
        for part in cand["content"]["parts"]:
            if "text" in part:
                pieces += [{**part, "text": piece} for piece in split(part["text"], chunks)]
            else:
                pieces.append(part)
        for i, piece in enumerate(pieces):
            final = i == len(pieces) - 1
            event_cand = candidate([piece], cand.get("finishReason") if final else None, cand.get("index", number))
            meta = reply["usageMetadata"] if final and number == last else {
                "promptTokenCount": reply["usageMetadata"]["promptTokenCount"]}
            events.append({"candidates": [event_cand], "usageMetadata": meta,
                           "modelVersion": reply["modelVersion"], "responseId": reply["responseId"]})
    return events


def split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, parts)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def rate_limited(message: str = "Resource has been exhausted (e.g. check quota).", retry_delay: str = "7s",
                 headers: dict[str, str] | None = None) -> ErrorReply:
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]
    return ErrorReply(429, message, details, dict(headers or {}))


def bad_request(message: str) -> ErrorReply:
    return ErrorReply(400, message)


def embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic vector for `text` (values exact in float32, so base64 round trips compare equal)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] - 128) / 128 for i in range(dimensions)]


# --- the app --------------------------------------------------------------------------------------------------


def create_fake_gemini(*, api_key: str = FAKE_KEY) -> Starlette:
    """The fake API: validates bodies as the real one does (unknown fields, schema keywords, roles, parts)."""

    async def models(request: Request) -> Response:
        state = request.app.state
        model, _, method = request.path_params["rest"].partition(":")
        body = _decode(await request.body())
        state.requests.append(RecordedRequest(model, method, dict(request.query_params),
                                              {k.lower(): v for k, v in request.headers.items()}, body))
        problem = _check_key(request, api_key) or _check(method, body)
        if problem is not None:
            return _error(problem)
        reply: Reply = state.script.pop(0) if state.script else _default(method, body)
        return _respond(reply, method, request.query_params.get("alt") == "sse")

    app = Starlette(routes=[Route("/v1beta/models/{rest:path}", models, methods=["POST"])])
    app.state.script = []
    app.state.requests = []
    return app


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _check_key(request: Request, api_key: str) -> ErrorReply | None:
    if "key" in request.query_params:
        return ErrorReply(400, "Test fake: the API key must travel in x-goog-api-key, never in the URL.")
    if request.headers.get("x-goog-api-key") != api_key:
        return ErrorReply(400, "API key not valid. Please pass a valid API key.")
    return None


def _check(method: str, body: Any) -> ErrorReply | None:
    if not isinstance(body, dict):
        return bad_request("Invalid JSON payload received.")
    if method == "batchEmbedContents":
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return bad_request("* BatchEmbedContentsRequest.requests: must not be empty")
        return None
    if method not in ("generateContent", "streamGenerateContent"):
        return ErrorReply(404, f"Method {method!r} not found.")
    for name in body:
        if name not in TOP_LEVEL_FIELDS:
            return bad_request(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
    for name in body.get("generationConfig") or {}:
        if name not in GENERATION_FIELDS:
            return bad_request(f'Invalid JSON payload received. Unknown name "{name}" at \'generation_config\'.')
    schema = (body.get("generationConfig") or {}).get("responseSchema")
    return (_check_contents(body.get("contents")) or _check_tools(body.get("tools"))
            or (_check_schema(schema, "generation_config.response_schema") if schema is not None else None))


def _check_contents(contents: Any) -> ErrorReply | None:
    if not isinstance(contents, list) or not contents:
        return bad_request("* GenerateContentRequest.contents: contents is not specified")
    called: set[str] = set()
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") not in ("user", "model"):
            return bad_request(f"Please use a valid role: user, model. (contents[{i}])")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return bad_request(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        for part in parts:
            data = [name for name in part if name in PART_FIELDS] if isinstance(part, dict) else []
            if len(data) != 1:
                return bad_request(f"* GenerateContentRequest.contents[{i}].parts: a part needs one data field.")
            if "functionCall" in part:
                called.add(part["functionCall"].get("name"))
            if "functionResponse" in part and (part["functionResponse"].get("name") not in called
                                               or not isinstance(part["functionResponse"].get("response"), dict)):
                return bad_request(f"* contents[{i}]: a functionResponse must name an earlier functionCall and "
                                   "have an object response.")
    return None


def _check_tools(tools: Any) -> ErrorReply | None:
    for tool in tools or []:
        for declaration in tool.get("functionDeclarations") or []:
            parameters = declaration.get("parameters")
            if parameters is not None:
                problem = _check_schema(parameters, "tools.function_declarations.parameters")
                if problem is not None:
                    return problem
                if parameters.get("type") == "OBJECT" and not parameters.get("properties"):
                    return bad_request("* GenerateContentRequest.tools[0].function_declarations[0].parameters."
                                       "properties: should be non-empty for OBJECT type")
    return None


def _check_schema(schema: Any, where: str) -> ErrorReply | None:
    if not isinstance(schema, dict):
        return bad_request(f"Invalid value at '{where}'.")
    for name, value in schema.items():
        if name not in SCHEMA_FIELDS:
            return bad_request(f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': Cannot find '
                               "field.")
        subs = list(value.values()) if name == "properties" else value if name == "anyOf" else \
            [value] if name == "items" else []
        for sub in subs:
            problem = _check_schema(sub, f"{where}.{name}")
            if problem is not None:
                return problem
    return None


def _default(method: str, body: dict[str, Any]) -> Reply:
    if method == "batchEmbedContents":
        vectors = []
        for item in body["requests"]:
            text = "".join(part.get("text", "") for part in item["content"]["parts"])
            vectors.append({"values": embedding(text, item.get("outputDimensionality") or EMBEDDING_DIMENSIONS)})
        return {"embeddings": vectors}
    text = ECHO_PREFIX + _last_user_text(body["contents"])
    count = (body.get("generationConfig") or {}).get("candidateCount") or 1
    candidates = [candidate([text if count == 1 else f"{text} #{k}"], index=k) for k in range(count)]
    words = len(json.dumps(body["contents"]).split())
    return response(*candidates, meta=usage(words, len(text.split()) * count))


def _last_user_text(contents: list[dict[str, Any]]) -> str:
    for content in reversed(contents):
        if content["role"] == "user":
            return "".join(part.get("text", "") for part in content["parts"])
    return ""


def _respond(reply: Reply, method: str, sse: bool) -> Response:
    if isinstance(reply, ErrorReply):
        return _error(reply)
    if method != "streamGenerateContent":
        return JSONResponse(reply)
    stream = reply if isinstance(reply, StreamReply) else StreamReply(stream_events(reply))
    if not sse:
        return JSONResponse([event for event in stream.events if isinstance(event, dict)])
    return StreamingResponse(_sse(stream), media_type="text/event-stream")


def _error(error: ErrorReply) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _sse(stream: StreamReply) -> AsyncIterator[bytes]:
    for number, event in enumerate(stream.events):
        if number and stream.delay:
            await anyio.sleep(stream.delay)
        yield event.encode() if isinstance(event, str) else f"data: {json.dumps(event)}\r\n\r\n".encode()
