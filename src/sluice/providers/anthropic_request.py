"""OpenAI chat request bodies translated to Anthropic Messages API request bodies."""

from __future__ import annotations

import json
from typing import Any

# From this version on, Anthropic rejects `temperature`, `top_p` and `top_k` (ISO dates compare as strings).
SAMPLING_REMOVED_IN = "2026-10-21"
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
SYSTEM_ROLES = frozenset({"system", "developer"})
TOOL_CHOICES: dict[str, dict[str, Any]] = {
    "auto": {"type": "auto"},
    "required": {"type": "any"},
    "none": {"type": "none"},
}


class TranslationError(ValueError):
    """An OpenAI request that cannot be expressed as an Anthropic request; `param` names the field."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def to_anthropic_request(
    body: dict[str, Any], *, model: str, api_version: str, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """The Messages API body for the OpenAI chat request `body`, sent as `model`."""
    system, messages = _conversation(body.get("messages"))
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens), "messages": messages}
    if system:
        out["system"] = system
    if body.get("stop") is not None:
        out["stop_sequences"] = _stop_sequences(body["stop"])
    if api_version < SAMPLING_REMOVED_IN:
        out.update({name: body[name] for name in SAMPLING_PARAMS if body.get(name) is not None})
    if body.get("user") is not None:
        out["metadata"] = {"user_id": str(body["user"])}
    if body.get("stream") is not None:
        out["stream"] = body["stream"]
    _check_single_choice(body)
    out.update(_tools(body))
    return out


def _max_tokens(body: dict[str, Any], default: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TranslationError(f"'{name}' must be a positive integer.", param=name)
        return value
    return default


def _stop_sequences(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        return list(stop)
    raise TranslationError("'stop' must be a string or a list of strings.", param="stop")


def _check_single_choice(body: dict[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise TranslationError("Anthropic models return one choice per request; 'n' must be 1.", param="n")


# --- messages -------------------------------------------------------------------------------------------------


def _conversation(messages: Any) -> tuple[str, list[dict[str, Any]]]:
    """The top-level `system` text and the alternating user/assistant messages."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("'messages' must be a non-empty list.", param="messages")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError("Each message must be an object.", param=where)
        role = message.get("role")
        if role in SYSTEM_ROLES:
            system.append(_plain_text(message.get("content"), f"{where}.content"))
            continue
        turn_role = _turn_role(role, where)
        _append_turn(turns, turn_role, _blocks(message, str(role), where))
    return "\n\n".join(text for text in system if text), turns


def _turn_role(role: Any, where: str) -> str:
    if role in ("user", "tool"):
        return "user"
    if role == "assistant":
        return "assistant"
    raise TranslationError(f"Unsupported message role {role!r}.", param=f"{where}.role")


def _append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add a turn, merging it into the previous one when the roles match (Anthropic requires alternation)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _blocks(message: dict[str, Any], role: str, where: str) -> list[dict[str, Any]]:
    if role == "tool":
        return [_tool_result(message, where)]
    blocks = _content_blocks(message.get("content"), f"{where}.content")
    if role == "assistant":
        blocks.extend(_tool_uses(message.get("tool_calls"), f"{where}.tool_calls"))
    return blocks


def _plain_text(content: Any, where: str) -> str:
    """The text of string content or of a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(block["text"] for block in _content_blocks(content, where) if block["type"] == "text")


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Anthropic content blocks for OpenAI message content; empty text is dropped (Anthropic rejects it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    if not isinstance(content, list):
        raise TranslationError("Message content must be a string or a list of parts.", param=where)
    blocks = [_content_part(part, f"{where}[{j}]") for j, part in enumerate(content)]
    return [block for block in blocks if block["type"] != "text" or block["text"]]


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _content_part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return _text_block(part["text"])
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return _text_block(part["refusal"])
    if kind == "image_url":
        return _image_block(part.get("image_url"), f"{where}.image_url")
    raise TranslationError(f"Unsupported content part type {kind!r} for Anthropic models.", param=f"{where}.type")


def _image_block(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise TranslationError("'image_url.url' must be a string.", param=f"{where}.url")
    if url.startswith("data:"):
        return {"type": "image", "source": _base64_source(url, f"{where}.url")}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError("Image URLs must be http(s) or base64 data URLs.", param=f"{where}.url")


def _base64_source(url: str, where: str) -> dict[str, Any]:
    """`data:image/png;base64,AAAA` as an Anthropic base64 image source."""
    header, sep, data = url[len("data:") :].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise TranslationError("Data URLs must look like 'data:<media type>;base64,<data>'.", param=where)
    return {"type": "base64", "media_type": media_type, "data": data}


def _tool_uses(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise TranslationError("'tool_calls' must be a list.", param=where)
    return [_tool_use(call, f"{where}[{k}]") for k, call in enumerate(tool_calls)]


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not call.get("id"):
        raise TranslationError("Each tool call needs an 'id' and a 'function.name'.", param=where)
    arguments = _arguments(function.get("arguments"), f"{where}.function.arguments")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": arguments}


def _arguments(arguments: Any, where: str) -> dict[str, Any]:
    """Tool call arguments (a JSON object in a string) decoded; an empty string means no arguments."""
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        decoded = json.loads(arguments) if isinstance(arguments, str) else None
    except (ValueError, RecursionError) as exc:  # not JSON; or a number over 4,300 digits, or nested too deep
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "too large or too deeply nested"
        raise TranslationError(f"Tool call arguments are not valid JSON: {reason}.", param=where) from exc
    if not isinstance(decoded, dict):
        raise TranslationError("Tool call arguments must be a JSON object in a string.", param=where)
    return decoded


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise TranslationError("Tool messages need a 'tool_call_id'.", param=f"{where}.tool_call_id")
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    if isinstance(content, list):
        result["content"] = _content_blocks(content, f"{where}.content")
    else:
        result["content"] = _plain_text(content, f"{where}.content")
    return result


# --- tools ----------------------------------------------------------------------------------------------------


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """The `tools` and `tool_choice` fields, with `parallel_tool_calls: false` folded into `tool_choice`."""
    out: dict[str, Any] = {}
    if body.get("tools") is not None:
        out["tools"] = _tool_definitions(body["tools"])
    choice = _tool_choice(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False and out.get("tools"):
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        out["tool_choice"] = choice
    return out


def _tool_definitions(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise TranslationError("'tools' must be a list.", param="tools")
    return [_tool_definition(tool, f"tools[{i}]") for i, tool in enumerate(tools)]


def _tool_definition(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise TranslationError("Only tools of type 'function' are supported.", param=f"{where}.type")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise TranslationError("Each tool needs a 'function.name'.", param=f"{where}.function.name")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = schema
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return dict(TOOL_CHOICES[choice])
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {"type": "tool", "name": function["name"]}
    raise TranslationError(
        "'tool_choice' must be 'auto', 'required', 'none' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
    )
