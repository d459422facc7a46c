"""OpenAI chat request bodies translated to Bedrock Converse / ConverseStream bodies, and the model's URL path."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import quote

from sluice.providers.anthropic_request import TranslationError

SYSTEM_ROLES = frozenset({"system", "developer"})
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
"""The media types Converse's `image` block takes, by its `format` name."""


def converse_path(model: str, *, stream: bool) -> str:
    """`/model/{modelId}/converse[-stream]`, the model id (or ARN: `/` and `:` included) percent-encoded whole."""
    return f"/model/{quote(model, safe='')}/{'converse-stream' if stream else 'converse'}"


def to_converse_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Converse body for the OpenAI chat request `body` (the model goes in the URL, not the body)."""
    _refuse_unsupported(body)
    system, messages = _conversation(body.get("messages"))
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    tool_config = _tool_config(body.get("tools"), body.get("tool_choice"))
    if tool_config:
        out["toolConfig"] = tool_config
    inference = _inference_config(body)
    if inference:
        out["inferenceConfig"] = inference
    return out


def _refuse_unsupported(body: dict[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise TranslationError("Bedrock's Converse API returns one choice: 'n' must be 1.", param="n")
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind not in (None, "text"):
        raise TranslationError("Bedrock's Converse API has no JSON mode: 'response_format' must be 'text' (a tool "
                               "with the schema as its parameters gets structured output).", param="response_format")


# --- inference config -----------------------------------------------------------------------------------------


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            config["maxTokens"] = _positive(body[name], name)
            break
    for name, converse_name in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(name) is not None:
            config[converse_name] = body[name]
    if body.get("stop") is not None:
        config["stopSequences"] = _stop_sequences(body["stop"])
    return config


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TranslationError(f"'{name}' must be a positive integer.", param=name)
    return value


def _stop_sequences(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        return list(stop)
    raise TranslationError("'stop' must be a string or a list of strings.", param="stop")


# --- messages -------------------------------------------------------------------------------------------------


def _conversation(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `system` blocks and the user/assistant `messages` (tool results as user `toolResult` blocks)."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("'messages' must be a non-empty list.", param="messages")
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError("Each message must be an object.", param=where)
        role = message.get("role")
        if role in SYSTEM_ROLES:
            text = _plain_text(message.get("content"), f"{where}.content")
            if text:
                system.append({"text": text})
        elif role == "user":
            _append(out, "user", _blocks(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            blocks = _blocks(message.get("content"), f"{where}.content", images=False)
            blocks += _tool_uses(message.get("tool_calls"), f"{where}.tool_calls")
            _append(out, "assistant", blocks)
        elif role == "tool":
            _append(out, "user", [_tool_result(message, where)])
        else:
            raise TranslationError(f"Unsupported message role {role!r}.", param=f"{where}.role")
    return system, out


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add a message, merged into the previous one of the same role: Converse wants the roles to alternate, so
    consecutive tool results (and a user message after them) become one user message."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _plain_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(block["text"] for block in _blocks(content, where, images=False))


def _blocks(content: Any, where: str, *, images: bool = True) -> list[dict[str, Any]]:
    """Content blocks for a message's content; empty text is left out (Converse refuses blank text blocks)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError("Message content must be a string or a list of parts.", param=where)
    blocks = [_block(part, f"{where}[{j}]", images) for j, part in enumerate(content)]
    return [block for block in blocks if block.get("text") != ""]


def _block(part: Any, where: str, images: bool) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"text": part["text"]}
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"text": part["refusal"]}
    if kind == "image_url" and images:
        image = part.get("image_url")
        return _image(image.get("url") if isinstance(image, dict) else image, f"{where}.image_url.url")
    raise TranslationError(f"Unsupported content part type {kind!r} for Bedrock models.", param=f"{where}.type")


def _image(url: Any, where: str) -> dict[str, Any]:
    """A base64 data URL as an `image` block; Converse takes image bytes only, so http(s) URLs are refused."""
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        raise TranslationError("Bedrock's Converse API takes images as bytes only: send the image as a base64 data "
                               "URL ('data:image/png;base64,…'), not an http(s) URL.", param=where)
    if not isinstance(url, str) or not url.startswith("data:"):
        raise TranslationError("Image URLs must be base64 data URLs.", param=where)
    header, sep, data = url[len("data:"):].partition(",")
    mime, _, encoding = header.partition(";")
    image_format = IMAGE_FORMATS.get(mime.lower())
    if not sep or encoding != "base64" or image_format is None:
        raise TranslationError("Image data URLs must look like 'data:image/{png,jpeg,gif,webp};base64,<data>'.",
                               param=where)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TranslationError("The image data URL is not valid base64.", param=where) from exc
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _tool_uses(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise TranslationError("'tool_calls' must be a list.", param=where)
    blocks = []
    for k, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or \
                not isinstance(call.get("id"), str):
            raise TranslationError("Each tool call needs an 'id' and a 'function.name'.", param=f"{where}[{k}]")
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": function["name"],
                                   "input": _arguments(function.get("arguments"), f"{where}[{k}]")}})
    return blocks


def _arguments(arguments: Any, where: str) -> dict[str, Any]:
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        decoded = json.loads(arguments) if isinstance(arguments, str) else None
    except (ValueError, RecursionError) as exc:
        raise TranslationError("Tool call arguments are not valid JSON.", param=f"{where}.function.arguments") \
            from exc
    if not isinstance(decoded, dict):
        raise TranslationError("Tool call arguments must be a JSON object in a string.",
                               param=f"{where}.function.arguments")
    return decoded


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("A tool message needs the 'tool_call_id' of the call it answers.",
                               param=f"{where}.tool_call_id")
    text = _plain_text(message.get("content"), f"{where}.content")
    return {"toolResult": {"toolUseId": call_id, "content": [{"text": text}]}}


# --- tools ----------------------------------------------------------------------------------------------------


def _tool_config(tools: Any, choice: Any) -> dict[str, Any]:
    """`toolConfig` for `tools` and `tool_choice`; `tool_choice: none` sends no tools (Converse has no "none")."""
    if tools is None or choice == "none":
        return {}
    if not isinstance(tools, list):
        raise TranslationError("'tools' must be a list.", param="tools")
    if not tools:
        return {}
    config: dict[str, Any] = {"tools": [_tool_spec(tool, f"tools[{i}]") for i, tool in enumerate(tools)]}
    if choice is not None:
        config["toolChoice"] = _tool_choice(choice)
    return config


def _tool_spec(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise TranslationError("Only tools of type 'function' are supported.", param=f"{where}.type")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise TranslationError("Each tool needs a 'function.name'.", param=f"{where}.function.name")
    parameters = function.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise TranslationError("A tool's 'parameters' must be a JSON Schema object.",
                               param=f"{where}.function.parameters")
    spec: dict[str, Any] = {"name": function["name"], "inputSchema": {"json": parameters}}
    if function.get("description"):
        spec["description"] = function["description"]
    return {"toolSpec": spec}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"tool": {"name": function["name"]}}
    raise TranslationError(
        "'tool_choice' must be 'auto', 'required', 'none' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
    )
