"""Anthropic Messages API request bodies translated to OpenAI chat request bodies (Sluice's internal form).

What does not survive, on purpose:
- `thinking` and `redacted_thinking` blocks in assistant turns are dropped: their signatures only mean something
  to Anthropic, and OpenAI-shaped models take no reasoning input.
- `cache_control` on blocks and tools, `top_k`, `service_tier`, `container` and `context_management` (Anthropic's
  server-side context editing) are dropped (no OpenAI counterpart).
- `tool_result.is_error: true` becomes the prefix "Error: " on the tool message's text (OpenAI has no flag).
- Images inside a `tool_result` move into a user message right after the tool messages (OpenAI tool messages
  carry text only); a user turn's tool results always come first, as Anthropic requires of its callers anyway.
- Text blocks of `system` and of a `tool_result` are joined with a blank line into one string.
- A `role: "system"` message inside `messages` (Anthropic's mid-conversation system messages, which Claude Code
  sends) becomes an OpenAI system message at the same place, its text blocks joined the same way.
- `thinking: {"type": "enabled", "budget_tokens": n}` becomes `reasoning_effort`: "low" below 4,096 tokens,
  "medium" below 16,384, else "high"; `output_config.effort` (low…max, the same words OpenAI uses) wins over it.
  `adaptive` and `disabled` thinking send no `reasoning_effort` (the model's default).
"""

from __future__ import annotations

import json
from typing import Any

ROLES = frozenset({"user", "assistant", "system"})
TOOL_CHOICES: dict[str, str] = {"auto": "auto", "any": "required", "none": "none"}
EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
# Upper bounds (exclusive) of `thinking.budget_tokens` for each `reasoning_effort`; larger budgets are "high".
BUDGET_EFFORTS: tuple[tuple[int, str], ...] = ((4096, "low"), (16384, "medium"))
IS_ERROR_PREFIX = "Error: "
JOINER = "\n\n"
DROPPED_ASSISTANT_BLOCKS = frozenset({"thinking", "redacted_thinking"})


class MessagesRequestError(ValueError):
    """A Messages request Sluice cannot take; `param` is the field path, e.g. `messages.2.content.0.type`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def messages_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat request for the Anthropic Messages request `body`."""
    if not isinstance(body, dict):
        raise MessagesRequestError("The request body must be a JSON object.")
    out: dict[str, Any] = {"model": _model(body.get("model")), "messages": _chat_messages(body)}
    out["max_tokens"] = _max_tokens(body.get("max_tokens"))
    out.update(_sampling(body))
    out.update(_tools(body))
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    effort = _reasoning_effort(body.get("thinking"), body.get("output_config"))
    if effort is not None:
        out["reasoning_effort"] = effort
    return out


def _model(model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise MessagesRequestError("'model' is required and must be a non-empty string.", "model")
    return model


def _max_tokens(value: Any) -> int:
    if value is None:
        raise MessagesRequestError("'max_tokens' is required.", "max_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MessagesRequestError("'max_tokens' must be a positive integer.", "max_tokens")
    return value


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """`stop`, `temperature`, `top_p` and `user`; `top_k` has no OpenAI counterpart and is dropped."""
    out: dict[str, Any] = {}
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
            raise MessagesRequestError("'stop_sequences' must be a list of strings.", "stop_sequences")
        if stop:
            out["stop"] = list(stop)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MessagesRequestError(f"'{name}' must be a number.", name)
        out[name] = value
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise MessagesRequestError("'metadata' must be an object.", "metadata")
    user_id = (metadata or {}).get("user_id")
    if user_id is not None:
        if not isinstance(user_id, str):
            raise MessagesRequestError("'metadata.user_id' must be a string.", "metadata.user_id")
        out["user"] = user_id
    return out


def _reasoning_effort(thinking: Any, output_config: Any) -> str | None:
    if isinstance(output_config, dict) and output_config.get("effort") is not None:
        effort = output_config["effort"]
        if effort not in EFFORTS:
            raise MessagesRequestError(f"Unsupported effort {effort!r}.", "output_config.effort")
        return str(effort)
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
        raise MessagesRequestError("'thinking' must be an object with a 'type'.", "thinking.type")
    if thinking["type"] != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise MessagesRequestError("'thinking.budget_tokens' must be a positive integer.", "thinking.budget_tokens")
    return next((effort for bound, effort in BUDGET_EFFORTS if budget < bound), "high")


# --- messages -------------------------------------------------------------------------------------------------


def _chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = _system_text(body.get("system"), "system")
    if system is not None:
        out.append({"role": "system", "content": system})
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MessagesRequestError("'messages' is required and must be a non-empty list.", "messages")
    for i, message in enumerate(messages):
        out.extend(_turn(message, f"messages.{i}"))
    return out


def _system_text(system: Any, where: str) -> str | None:
    """The text of a system prompt (the top-level `system`, or a system message's content at `where`)."""
    if system is None:
        return None
    if isinstance(system, str):
        return system or None
    if not isinstance(system, list):
        raise MessagesRequestError(f"'{where}' must be a string or a list of text blocks.", where)
    texts = [_text_of(block, f"{where}.{j}") for j, block in enumerate(system)]
    return JOINER.join(texts) if texts else None


def _text_of(block: Any, where: str) -> str:
    """The text of a block that must be a text block."""
    if not isinstance(block, dict) or block.get("type") != "text":
        kind = block.get("type") if isinstance(block, dict) else None
        raise MessagesRequestError(f"Expected a text block, got type {kind!r}.", f"{where}.type")
    if not isinstance(block.get("text"), str):
        raise MessagesRequestError("A text block needs a string 'text'.", f"{where}.text")
    text: str = block["text"]
    return text


def _turn(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise MessagesRequestError("Each message must be an object.", where)
    role = message.get("role")
    if role not in ROLES:
        raise MessagesRequestError(f"Message role must be 'user', 'assistant' or 'system', got {role!r}.",
                                   f"{where}.role")
    content = message.get("content")
    if not isinstance(content, (str, list)):
        raise MessagesRequestError("Message content must be a string or a list of blocks.", f"{where}.content")
    if role == "system":
        text = _system_text(content, f"{where}.content")
        return [{"role": "system", "content": text or ""}]
    if role == "assistant":
        return [_assistant_message(content, f"{where}.content")]
    return _user_messages(content, f"{where}.content")


def _block_type(block: Any, where: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if not isinstance(kind, str):
        raise MessagesRequestError("Each content block must be an object with a string 'type'.", f"{where}.type")
    return kind


def _user_messages(content: str | list[Any], where: str) -> list[dict[str, Any]]:
    """Tool messages for the turn's tool results, then one user message for the rest (if any)."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        kind = _block_type(block, at)
        if kind == "tool_result":
            message, images = _tool_result(block, at)
            tool_messages.append(message)
            tool_images.extend(images)
        elif kind == "text":
            parts.append({"type": "text", "text": _text_of(block, at)})
        elif kind == "image":
            parts.append(_image_part(block, at))
        else:
            raise MessagesRequestError(f"Unsupported content block type {kind!r} in a user turn.", f"{at}.type")
    rest = tool_images + parts
    if rest or not tool_messages:
        tool_messages.append({"role": "user", "content": rest})
    return tool_messages


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not media_type:
            raise MessagesRequestError("A base64 image needs a 'media_type'.", f"{where}.source.media_type")
        if not isinstance(data, str):
            raise MessagesRequestError("A base64 image needs string 'data'.", f"{where}.source.data")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if kind == "url" and isinstance(source, dict):
        if not isinstance(source.get("url"), str) or not source["url"]:
            raise MessagesRequestError("A url image needs a 'url'.", f"{where}.source.url")
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise MessagesRequestError(f"Unsupported image source type {kind!r}.", f"{where}.source.type")


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The tool message for a `tool_result` block, and the images its content carried."""
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise MessagesRequestError("A tool_result needs a 'tool_use_id'.", f"{where}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, item in enumerate(content):
            at = f"{where}.content.{k}"
            if _block_type(item, at) == "image":
                images.append(_image_part(item, at))
            else:
                texts.append(_text_of(item, at))
    elif content is not None:
        raise MessagesRequestError("tool_result content must be a string or a list of blocks.", f"{where}.content")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise MessagesRequestError("'is_error' must be a boolean.", f"{where}.is_error")
    text = JOINER.join(texts)
    if is_error:
        text = IS_ERROR_PREFIX + text
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, images


def _assistant_message(content: str | list[Any], where: str) -> dict[str, Any]:
    """One assistant message: text blocks as content (a string stays a string), tool uses as `tool_calls`."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        kind = _block_type(block, at)
        if kind == "text":
            parts.append({"type": "text", "text": _text_of(block, at)})
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block, at))
        elif kind not in DROPPED_ASSISTANT_BLOCKS:
            raise MessagesRequestError(f"Unsupported content block type {kind!r} in an assistant turn.", f"{at}.type")
    message: dict[str, Any] = {"role": "assistant", "content": parts or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def compact_json(value: Any) -> str:
    """`value` as JSON without insignificant whitespace, as OpenAI sends tool call arguments."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    for name in ("id", "name"):
        if not isinstance(block.get(name), str) or not block[name]:
            raise MessagesRequestError(f"A tool_use block needs a string '{name}'.", f"{where}.{name}")
    tool_input = block.get("input")
    if not isinstance(tool_input, dict):
        raise MessagesRequestError("A tool_use block's 'input' must be an object.", f"{where}.input")
    function = {"name": block["name"], "arguments": compact_json(tool_input)}
    return {"id": block["id"], "type": "function", "function": function}


# --- tools ----------------------------------------------------------------------------------------------------


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise MessagesRequestError("'tools' must be a list.", "tools")
        if tools:
            out["tools"] = [_tool(tool, f"tools.{i}") for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is not None:
        out.update(_tool_choice(choice))
    return out


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise MessagesRequestError("Each tool must be an object.", where)
    if tool.get("type") not in (None, "custom"):
        raise MessagesRequestError(f"Server tools ({tool['type']!r}) are not supported here.", f"{where}.type")
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise MessagesRequestError("Each tool needs a string 'name'.", f"{where}.name")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise MessagesRequestError("Each tool needs an 'input_schema' object.", f"{where}.input_schema")
    function: dict[str, Any] = {"name": tool["name"]}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise MessagesRequestError("A tool's 'description' must be a string.", f"{where}.description")
        function["description"] = description
    function["parameters"] = schema
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> dict[str, Any]:
    """`tool_choice`, and `parallel_tool_calls: false` for `disable_parallel_tool_use`."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    out: dict[str, Any] = {}
    if isinstance(kind, str) and kind in TOOL_CHOICES:
        out["tool_choice"] = TOOL_CHOICES[kind]
    elif kind == "tool" and isinstance(choice, dict):
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise MessagesRequestError("tool_choice of type 'tool' needs a 'name'.", "tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise MessagesRequestError("'tool_choice.type' must be 'auto', 'any', 'none' or 'tool'.", "tool_choice.type")
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out
