"""Chat completion replies translated to OpenAI Responses API `response` objects, and the chat turn to store."""

from __future__ import annotations

import time
from typing import Any

import orjson

from sluice.errors import GatewayError
from sluice.frontdoors.responses_request import namespaces_of
from sluice.ids import random_hex

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Chat finish reasons that make a response `incomplete`, with the Responses reason."""
ECHOED = ("instructions", "max_output_tokens", "previous_response_id", "temperature", "top_p", "user",
          "safety_identifier", "prompt_cache_key", "service_tier")
"""Request fields the real API echoes in the response as they were sent (None when absent)."""
ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
"""The `response.error.code` values (SDK `ResponseError`) a chat failure can map to; others become server_error."""


def new_item_id(prefix: str) -> str:
    """An output item id in OpenAI's style: `msg_…`, `fc_…`, `rs_…`."""
    return f"{prefix}_{random_hex(128)}"


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


Namespaces = dict[str, tuple[str, str]]
"""Chat function name → (namespace, function name), from `namespaces_of` the request's tools."""


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str,
                       namespaces: Namespaces | None = None) -> dict[str, Any]:
    """A function call item; a call of a namespace tool's function (`{namespace}__{name}` to the chat model) under
    the caller's own names."""
    item: dict[str, Any] = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                            "arguments": arguments, "status": status}
    if namespaces and name in namespaces:
        item["namespace"], item["name"] = namespaces[name]
    return item


def reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """A reasoning item; chat's `reasoning_content` is the raw reasoning, so it is `reasoning_text` content."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content, "status": status}


def reasoning_text(message: dict[str, Any]) -> str | None:
    """The reasoning an OpenAI-compatible upstream returned (`reasoning_content`: DeepSeek, vLLM before 0.10;
    `reasoning`: vLLM, OpenRouter)."""
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """Chat `usage` in the Responses shape; None when the upstream reported none."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    cached = _count(as_object(usage.get("prompt_tokens_details")).get("cached_tokens"))
    reasoning = _count(as_object(usage.get("completion_tokens_details")).get("reasoning_tokens"))
    total = _count(usage.get("total_tokens")) or prompt + completion
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total,
    }


def as_object(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (chat fields that upstreams send as null)."""
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def response_object(
    request: dict[str, Any], *, response_id: str, created_at: int, status: str, output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None, finish_reason: str | None = None, error: dict[str, Any] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """A `response` object echoing `request` as the real API does; `finish_reason` (chat's) sets
    `incomplete_details` when the status is `incomplete`."""
    out = _response_head(request, response_id, created_at)
    reason = INCOMPLETE_REASONS.get(finish_reason or "") if status == "incomplete" else None
    out.update({
        "status": status,
        "completed_at": completed_at if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": reason} if reason else None,
        "model": request.get("model"),
        "output": output,
    })
    out.update(_response_tail(request))
    out["usage"] = usage
    return out


def _response_head(request: dict[str, Any], response_id: str, created_at: int) -> dict[str, Any]:
    """A `response` object's first fields, which no state of the response changes."""
    out: dict[str, Any] = {name: request.get(name) for name in ECHOED}
    out.update({"id": response_id, "object": "response", "created_at": created_at})
    return out


def _reasoning_echo(reasoning: Any) -> dict[str, Any] | None:
    if not isinstance(reasoning, dict):
        return None
    return {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}


def _response_tail(request: dict[str, Any]) -> dict[str, Any]:
    """The fields between `output` and `usage`, echoing the request."""
    return {
        "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": list(request.get("tools") or []),
        "text": request.get("text") or {"format": {"type": "text"}},
        "reasoning": _reasoning_echo(request.get("reasoning")),
        "metadata": request.get("metadata") or {},
        "store": request.get("store", True) is not False,
        "background": False,
        "truncation": "disabled",
    }


TAIL_FIELDS = ("parallel_tool_calls", "tool_choice", "tools", "text", "reasoning", "metadata")
"""The request fields `_response_tail` echoes, besides `store`."""


def _tail_bytes(request: dict[str, Any]) -> bytes:
    return b"," + orjson.dumps(_response_tail(request))[1:-1] + b',"usage":'


ECHOED_NAMES, TAIL_NAMES = frozenset(ECHOED), frozenset(TAIL_FIELDS)
"""The same names as sets: a request's keys are told apart from them by hash, not one by one."""
NO_ECHO = orjson.dumps({name: None for name in ECHOED})[:-1] + b',"id":'
"""The head of the `response` object of a request that sets none of the fields echoed there, up to its id."""
IN_PROGRESS_EMPTY = b'"in_progress","completed_at":null,"error":null,"incomplete_details":null'
"""An in-progress object's members from its status to its model (no error, not completed)."""
PLAIN_TAILS = {store: _tail_bytes({"store": store}) for store in (True, False)}
"""The tail of the `response` object of a request that sets none of `TAIL_FIELDS`, by its `store`."""


class ResponseBytes:
    """The `response` objects of one streamed request as bytes, as `orjson.dumps(response_object(...))` writes
    them: the parts that echo the request are encoded once, not for each of the stream's three objects (and
    not at all for a request that sets none of them)."""

    __slots__ = ("_head", "_model", "_tail")

    def __init__(self, request: dict[str, Any], *, response_id: str, created_at: int) -> None:
        fields = request.keys()
        if fields.isdisjoint(ECHOED_NAMES):
            self._head = (NO_ECHO + orjson.dumps(response_id) + b',"object":"response","created_at":'
                          + orjson.dumps(created_at) + b',"status":')
        else:
            self._head = orjson.dumps(_response_head(request, response_id, created_at))[:-1] + b',"status":'
        self._model = b',"model":' + orjson.dumps(request.get("model")) + b',"output":'
        self._tail = (PLAIN_TAILS[request.get("store", True) is not False] if fields.isdisjoint(TAIL_NAMES)
                      else _tail_bytes(request))

    def encode(self, status: str, output: bytes, *, usage: dict[str, Any] | None = None,
               finish_reason: str | None = None, error: dict[str, Any] | None = None,
               completed_at: int | None = None) -> bytes:
        """The object `response_object` builds for these values, `output` its encoded output list."""
        reason = INCOMPLETE_REASONS.get(finish_reason or "") if status == "incomplete" else None
        return b"".join((self._head, orjson.dumps(status), b',"completed_at":',
                         orjson.dumps(completed_at) if status == "completed" else b"null",
                         b',"error":', orjson.dumps(error), b',"incomplete_details":',
                         b'{"reason":' + orjson.dumps(reason) + b"}" if reason else b"null",
                         self._model, output, self._tail, orjson.dumps(usage), b"}"))

    def opening(self) -> bytes:
        """`encode("in_progress", b"[]")`: a stream's first object, from constants."""
        return b"".join((self._head, IN_PROGRESS_EMPTY, self._model, b"[]", self._tail, b"null}"))


def status_for(finish_reason: str | None) -> str:
    return "incomplete" if finish_reason in INCOMPLETE_REASONS else "completed"


def chat_to_response(
    reply: dict[str, Any], *, request: dict[str, Any], response_id: str, created_at: int,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """The `response` object for a `chat.completion` `reply` to the Responses `request` (its first choice)."""
    choice = _first_choice(reply)
    message = as_object(choice.get("message"))
    finish_reason = choice.get("finish_reason")
    status = status_for(finish_reason)
    output = output_items(message, status, namespaces_of(request.get("tools")))
    return response_object(
        request, response_id=response_id, created_at=created_at, status=status, output=output,
        usage=responses_usage(reply.get("usage")), finish_reason=finish_reason,
        completed_at=completed_at if completed_at is not None else int(time.time()),
    )


def chat_to_response_bytes(reply: dict[str, Any], *, request: dict[str, Any], response_id: str, created_at: int,
                           completed_at: int | None = None) -> bytes:
    """`orjson.dumps(chat_to_response(...))`, the object's fields that echo the request written from bytes (see
    `ResponseBytes`): for an answer that is not kept, which needs no object."""
    choice = _first_choice(reply)
    finish_reason = choice.get("finish_reason")
    status = status_for(finish_reason)
    output = output_items(as_object(choice.get("message")), status, namespaces_of(request.get("tools")))
    return ResponseBytes(request, response_id=response_id, created_at=created_at).encode(
        status, orjson.dumps(output), usage=responses_usage(reply.get("usage")), finish_reason=finish_reason,
        completed_at=completed_at if completed_at is not None else int(time.time()))


def _first_choice(reply: dict[str, Any]) -> dict[str, Any]:
    choices = reply.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def output_items(message: dict[str, Any], status: str, namespaces: Namespaces | None = None) -> list[dict[str, Any]]:
    """The output items for a chat assistant message: reasoning, then the message, then its function calls."""
    items: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning is not None:
        items.append(reasoning_item(new_item_id("rs"), reasoning, status))
    content: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append(output_text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append(refusal_part(message["refusal"]))
    if content:
        items.append(message_item(new_item_id("msg"), content, status))
    for call in message.get("tool_calls") or []:
        function = as_object(as_object(call).get("function"))
        items.append(function_call_item(
            new_item_id("fc"), str(as_object(call).get("id") or new_item_id("call")), str(function.get("name") or ""),
            str(function.get("arguments") or ""), status, namespaces,
        ))
    return items


def conversation_turn(chat_request: dict[str, Any], reply_message: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages to store for this turn: the request's non-system messages (history included) and the
    assistant's reply, without reasoning (some upstreams, e.g. DeepSeek, refuse it in later requests)."""
    messages = [message for message in chat_request.get("messages") or [] if message.get("role") != "system"]
    return [*messages, stored_assistant_message(reply_message)]


def stored_assistant_message(message: dict[str, Any]) -> dict[str, Any]:
    """The assistant message as a later request sends it back: role, content and tool calls only."""
    content = message.get("content")
    calls = [_stored_tool_call(as_object(call)) for call in message.get("tool_calls") or []]
    out: dict[str, Any] = {"role": "assistant", "content": content if isinstance(content, str) else None}
    if calls:
        out["tool_calls"] = calls
    elif out["content"] is None:
        out["content"] = ""
    return out


def _stored_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = as_object(call.get("function"))
    return {"id": call.get("id"), "type": "function",
            "function": {"name": function.get("name"), "arguments": function.get("arguments") or ""}}


def responses_error(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The error body for /v1/responses: OpenAI's one error shape, the same as every Sluice error
    (`GatewayError.to_dict`)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return GatewayError(message, param=param, code=code, status=status, type=kind).to_dict()


def response_error_object(message: str, code: str | None) -> dict[str, Any]:
    """`response.error` for a failed response; its `code` is one of the SDK's `ResponseError` codes."""
    return {"code": code if code in ERROR_CODES else "server_error", "message": message}
