"""A scripted fake of AWS Bedrock Runtime's Converse API that speaks the real wire format and checks signatures.

Serves `POST /model/{modelId}/converse` (JSON) and `/converse-stream` (`application/vnd.amazon.eventstream`:
binary eventstream messages, encoded here since botocore only decodes them). Every request's AWS Signature
Version 4 is recomputed with botocore from the known test credentials and the request as received (method, raw
path, query, the signed headers, the body); a wrong one gets AWS's 403 `InvalidSignatureException`. Default
replies echo the last user text (``"echo: " + text``); tests append `Reply` entries to ``app.state.script`` (each
answers one request) and read ``app.state.requests``.
"""

from __future__ import annotations

import binascii
import datetime
import json
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import anyio
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ACCESS_KEY_ID = "AKIAFAKEBEDROCK00001"
SECRET_ACCESS_KEY = "fake/bedrock+secret/key0000000000000000"
REGION = "us-east-1"
SERVICE = "bedrock"
ECHO_PREFIX = "echo: "
EVENTSTREAM = "application/vnd.amazon.eventstream"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)
TOP_LEVEL_FIELDS = frozenset({
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
    "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig",
})
INFERENCE_FIELDS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
BLOCK_FIELDS = frozenset({"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
                          "cachePoint", "reasoningContent"})
STATUSES = {"ValidationException": 400, "AccessDeniedException": 403, "InvalidSignatureException": 403,
            "UnrecognizedClientException": 403, "ResourceNotFoundException": 404, "ThrottlingException": 429,
            "InternalServerException": 500, "ServiceUnavailableException": 503, "ModelTimeoutException": 408}

Event = tuple[str, dict[str, Any]]


@dataclass
class ErrorReply:
    """An AWS JSON error: the status, `x-amzn-ErrorType` and ``{"message": …}``."""

    error_type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return STATUSES.get(self.error_type, 400)


@dataclass
class StreamReply:
    """Stream these events (`(event type, payload)` pairs, `exception(...)` messages or raw bytes), `delay` apart."""

    events: Sequence[Event | bytes]
    delay: float = 0.0


Reply = dict[str, Any] | StreamReply | ErrorReply


@dataclass
class RecordedRequest:
    """What the fake received: the decoded model id, the operation, lower-cased headers and the decoded body."""

    model: str
    operation: str
    headers: dict[str, str]
    body: Any
    raw_path: str


# --- eventstream encoding ---------------------------------------------------------------------------------------


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One eventstream message: prelude (total length, headers length, prelude CRC32), string headers (type 7),
    payload, message CRC32; all big-endian."""
    encoded = b"".join(struct.pack(">B", len(name.encode())) + name.encode() + b"\x07"
                       + struct.pack(">H", len(value.encode())) + value.encode() for name, value in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """An event as Bedrock sends it (with its `p` padding field, which clients must ignore)."""
    body = json.dumps({**payload, "p": "abcdefghij"[: len(event_type) % 10]}).encode()
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, body)


def exception(exception_type: str, message: str) -> bytes:
    """An exception message in a stream (`:message-type: exception`, e.g. `throttlingException`)."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps({"message": message}).encode())


# --- builders -------------------------------------------------------------------------------------------------


def tool_use(name: str, arguments: dict[str, Any], tool_use_id: str = "tooluse_fake0001") -> dict[str, Any]:
    return {"toolUse": {"toolUseId": tool_use_id, "name": name, "input": arguments}}


def usage(prompt: int = 10, completion: int = 5, cache_read: int = 0) -> dict[str, Any]:
    out = {"inputTokens": prompt, "outputTokens": completion, "totalTokens": prompt + completion + cache_read}
    if cache_read:
        out["cacheReadInputTokens"] = cache_read
    return out


def response(*blocks: dict[str, Any] | str, stop: str = "end_turn", meta: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """A Converse reply; strings are text blocks."""
    content = [{"text": block} if isinstance(block, str) else block for block in blocks]
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": meta or usage(), "metrics": {"latencyMs": 12}}


def stream_events(reply: dict[str, Any], chunks: int = 3) -> list[Event]:
    """The events with which ConverseStream sends `reply`: text in `chunks` pieces, a tool use's start (id, name)
    then its input JSON in pieces, messageStop, then metadata with the usage."""
    events: list[Event] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(reply["output"]["message"]["content"]):
        if "toolUse" in block:
            use = block["toolUse"]
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": {
                "toolUseId": use["toolUseId"], "name": use["name"]}}}))
            pieces = [{"toolUse": {"input": piece}} for piece in split(json.dumps(use["input"]), chunks)]
        else:
            pieces = [{"text": piece} for piece in split(block["text"], chunks)]
        events += [("contentBlockDelta", {"contentBlockIndex": index, "delta": piece}) for piece in pieces]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": reply["stopReason"]}))
    events.append(("metadata", {"usage": reply["usage"], "metrics": {"latencyMs": 12}}))
    return events


def split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, parts)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- signatures -----------------------------------------------------------------------------------------------


def signature_problem(request: Request, body: bytes, access_key_id: str, secret_access_key: str, region: str,
                      session_token: str | None = None) -> str | None:
    """Why this request's SigV4 signature is not the one the credentials make (None when it is); with
    `session_token`, the request must carry it, signed, in `X-Amz-Security-Token`."""
    authorization = request.headers.get("authorization", "")
    fields = dict(part.strip().split("=", 1) for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",")
                  if "=" in part)
    amz_date = request.headers.get("x-amz-date", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 ") or not {"Credential", "SignedHeaders", "Signature"} <= \
            fields.keys() or not amz_date:
        return "Authorization header requires Credential, SignedHeaders and Signature, and X-Amz-Date is required."
    key, date, scope_region, service, terminator = (fields["Credential"].split("/") + [""] * 5)[:5]
    if key != access_key_id:
        return "The security token included in the request is invalid."
    if (date, scope_region, service, terminator) != (amz_date[:8], region, SERVICE, "aws4_request"):
        return f"Credential should be scoped to a valid region and service ({region}/{SERVICE})."
    sent_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    if abs(datetime.datetime.now(datetime.UTC) - sent_at) > MAX_CLOCK_SKEW:
        return "Signature expired."
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "Host and X-Amz-Date must be signed."
    unsigned = [name for name in request.headers if name.startswith("x-amz-") and name not in signed]
    if unsigned:
        return f"The {unsigned[0]} header must be signed."
    if session_token is not None and request.headers.get("x-amz-security-token") != session_token:
        return "The security token included in the request is invalid."
    headers = {name: request.headers.get(name, "") for name in signed}
    url = f"{request.url.scheme}://{request.headers['host']}{request.scope['raw_path'].decode()}"
    if request.url.query:
        url += f"?{request.url.query}"
    aws_request = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws_request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(access_key_id, secret_access_key), SERVICE, region)
    expected = auth.signature(auth.string_to_sign(aws_request, auth.canonical_request(aws_request)), aws_request)
    if expected != fields["Signature"]:
        return ("The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method.")
    return None


# --- the app --------------------------------------------------------------------------------------------------


def create_fake_bedrock(*, access_key_id: str = ACCESS_KEY_ID, secret_access_key: str = SECRET_ACCESS_KEY,
                        region: str = REGION, session_token: str | None = None) -> Starlette:
    """The fake API: signatures checked, bodies validated as the real one does (fields, roles, blocks)."""

    async def model(request: Request) -> Response:
        state = request.app.state
        raw_path = request.scope["raw_path"].decode()
        encoded_model, _, operation = raw_path.removeprefix("/model/").rpartition("/")
        body = await request.body()
        decoded = _decode(body)
        state.requests.append(RecordedRequest(unquote(encoded_model), operation,
                                              {k.lower(): v for k, v in request.headers.items()}, decoded, raw_path))
        problem = signature_problem(request, body, access_key_id, secret_access_key, region, session_token)
        if problem is not None:
            return _error(ErrorReply("InvalidSignatureException", problem))
        if operation not in ("converse", "converse-stream") or "/" in encoded_model:
            return _error(ErrorReply("UnknownOperationException", f"Unknown operation {raw_path!r}."))
        invalid = _check(decoded)
        if invalid is not None:
            return _error(ErrorReply("ValidationException", invalid))
        reply: Reply = state.script.pop(0) if state.script else _echo(decoded)
        return _respond(reply, operation == "converse-stream")

    app = Starlette(routes=[Route("/model/{rest:path}", model, methods=["POST"])])
    app.state.script = []
    app.state.requests = []
    return app


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _check(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Malformed input request, please reformat your input and try again."
    unknown = [name for name in body if name not in TOP_LEVEL_FIELDS]
    if unknown:
        return f"Malformed input request: extraneous key [{unknown[0]}] is not permitted."
    unknown = [name for name in body.get("inferenceConfig") or {} if name not in INFERENCE_FIELDS]
    if unknown:
        return f"Malformed input request: extraneous key [inferenceConfig.{unknown[0]}] is not permitted."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "A conversation must start with a user message."
    used = False
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(message, dict) or message.get("role") != expected:
            return "A conversation must alternate between user and assistant roles."
        for block in message.get("content") or [None]:
            names = [name for name in block if name in BLOCK_FIELDS] if isinstance(block, dict) else []
            if len(names) != 1 or len(block) != 1:
                return f"messages.{i}.content: a content block needs exactly one member."
            if block.get("text") == "":
                return "The text field in the ContentBlock object is blank."
            used = used or "toolUse" in block or "toolResult" in block
    if used and not body.get("toolConfig"):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


def _echo(body: dict[str, Any]) -> Reply:
    text = ECHO_PREFIX + " ".join(_texts(body["messages"][-1]["content"]))
    words = len(json.dumps(body["messages"]).split())
    return response(text, meta=usage(words, len(text.split())))


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    """The text of text blocks and of tool results' text content, in order."""
    texts = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"])
        elif "toolResult" in block:
            texts += [item["text"] for item in block["toolResult"]["content"] if "text" in item]
    return texts


def _respond(reply: Reply, stream: bool) -> Response:
    if isinstance(reply, ErrorReply):
        return _error(reply)
    if not stream:
        return JSONResponse(reply)
    events = reply if isinstance(reply, StreamReply) else StreamReply(stream_events(reply))
    return StreamingResponse(_frames(events), media_type=EVENTSTREAM)


def _error(error: ErrorReply) -> JSONResponse:
    headers = {"x-amzn-ErrorType": f"{error.error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               **error.headers}
    return JSONResponse({"message": error.message}, status_code=error.status, headers=headers)


async def _frames(stream: StreamReply) -> AsyncIterator[bytes]:
    for number, event in enumerate(stream.events):
        if number and stream.delay:
            await anyio.sleep(stream.delay)
        yield event if isinstance(event, bytes) else event_message(*event)
