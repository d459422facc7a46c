"""OpenAI Responses API create bodies translated to Sluice's internal chat request bodies."""

from __future__ import annotations

from typing import Any

CHAT_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
"""Responses message roles → chat roles; `developer` is sent as `system`, which every chat upstream knows."""
TOOL_CHOICE_WORDS = frozenset({"auto", "none", "required"})
KEPT_AS_IS = ("model", "temperature", "top_p", "user", "safety_identifier", "prompt_cache_key", "service_tier")
"""Fields with the same name and meaning in chat; `None` values are not sent."""
PLAIN_FIELDS = frozenset({"model", "input", "stream", "store"})
"""The fields of the simplest requests, translated without the general way's checks (none applies to them)."""
REFUSED_WHEN_SET = {
    "conversation": "Conversations are not supported here; use 'previous_response_id'.",
    "prompt": "Stored prompt templates are not supported on /v1/responses.",
    "background": "Background responses are not supported.",
}
"""Fields whose silent omission would change what the caller gets, refused when truthy."""
HOSTED_TOOLS = frozenset({
    "web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11", "file_search",
    "code_interpreter", "image_generation", "computer_use_preview", "computer", "mcp", "local_shell", "shell",
    "apply_patch", "tool_search", "programmatic_tool_calling",
})
"""Tools that run on OpenAI's side: left out of a translated request (the model is not offered them)."""
NAMESPACE_SEPARATOR = "__"
"""A namespace tool's functions are offered to a chat model as `{namespace}__{name}`."""
# Dropped on purpose: `store` (Sluice stores the turn itself, an upstream must not), `metadata` (echoed in the
# response only: OpenAI's chat refuses it without `store`), `include`, `truncation`, `max_tool_calls` (built-in
# tools only), `top_logprobs`, `stream_options`, `reasoning.summary`, `previous_response_id` (the caller resolves
# it into `history`).


class ResponsesRequestError(ValueError):
    """A Responses request that cannot be expressed as a chat request; `param` is the field path
    (``input.3.content.0.type``)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def responses_to_chat(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The chat request body for the Responses create `body`; `history` holds the earlier turns' chat messages
    (from `previous_response_id`), placed after the instructions and before the new input."""
    if not isinstance(body, dict):
        raise ResponsesRequestError("The request body must be a JSON object.")
    model, input_ = body.get("model"), body.get("input")
    if history is None and type(input_) is str and type(model) is str and model and body.keys() <= PLAIN_FIELDS:
        # What the general way below gives such a request (a model, an input string, at most stream and store)
        plain: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": input_}]}
        if body.get("stream"):
            plain["stream"] = True
            plain["stream_options"] = {"include_usage": True}
        return plain
    _refuse_unsupported_fields(body)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ResponsesRequestError("'model' must be a non-empty string.", "model")
    messages = _instructions(body.get("instructions")) + [dict(message) for message in history or []]
    messages.extend(_input_messages(body.get("input")))
    if not any(message.get("role") != "system" for message in messages):
        raise ResponsesRequestError("'input' must hold at least one message or item.", "input")
    out: dict[str, Any] = {name: body[name] for name in KEPT_AS_IS if body.get(name) is not None}
    out["messages"] = messages
    out.update(_tools(body.get("tools"), body.get("tool_choice"), body.get("parallel_tool_calls")))
    out.update(_text_options(body.get("text")))
    out.update(_limits(body))
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _refuse_unsupported_fields(body: dict[str, Any]) -> None:
    for name, message in REFUSED_WHEN_SET.items():
        if body.get(name):
            raise ResponsesRequestError(message, name)


def _instructions(instructions: Any) -> list[dict[str, Any]]:
    if instructions is None or instructions == "":
        return []
    if not isinstance(instructions, str):
        raise ResponsesRequestError("'instructions' must be a string.", "instructions")
    return [{"role": "system", "content": instructions}]


def _limits(body: dict[str, Any]) -> dict[str, Any]:
    """`max_output_tokens` as `max_completion_tokens` (OpenAI's reasoning models refuse `max_tokens`; the
    Anthropic adapter reads both), and `reasoning.effort` as `reasoning_effort`."""
    out: dict[str, Any] = {}
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ResponsesRequestError("'max_output_tokens' must be a positive integer.", "max_output_tokens")
        out["max_completion_tokens"] = limit
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise ResponsesRequestError("'reasoning' must be an object.", "reasoning")
        if reasoning.get("effort") is not None:
            out["reasoning_effort"] = reasoning["effort"]
    return out


# --- input ----------------------------------------------------------------------------------------------------


def _input_messages(input_: Any) -> list[dict[str, Any]]:
    """Chat messages for the `input` string or item list, function calls merged into the assistant turn."""
    if isinstance(input_, str):
        return [{"role": "user", "content": input_}]
    if input_ is None:
        return []
    if not isinstance(input_, list):
        raise ResponsesRequestError("'input' must be a string or a list of items.", "input")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(input_):
        where = f"input.{i}"
        if not isinstance(item, dict):
            raise ResponsesRequestError("Each input item must be an object.", where)
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            _add_tool_call(messages, _tool_call(item, where))
        elif kind == "function_call_output":
            messages.append(_tool_output(item, where))
        elif kind == "reasoning":
            continue  # a reasoning item a client sends back from an earlier output has no chat equivalent
        else:
            raise ResponsesRequestError(f"Input items of type {kind!r} are not supported.", f"{where}.type")
    return messages


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    given = item.get("role")
    role = CHAT_ROLES.get(given) if isinstance(given, str) else None
    if role is None:
        raise ResponsesRequestError(
            "'role' must be 'user', 'assistant', 'system' or 'developer'.", f"{where}.role"
        )
    content = item.get("content")
    if role == "assistant":
        return {"role": "assistant", "content": _assistant_content(content, f"{where}.content")}
    if role == "system":
        return {"role": "system", "content": _text_only(content, f"{where}.content")}
    return {"role": "user", "content": _user_content(content, f"{where}.content")}


def _text_only(content: Any, where: str) -> str:
    """System content: a string, or input_text parts joined."""
    if isinstance(content, str):
        return content
    parts = _parts(content, where)
    for j, part in enumerate(parts):
        if part.get("type") != "input_text":
            raise ResponsesRequestError("System and developer messages take only 'input_text' parts.",
                                        f"{where}.{j}.type")
    return "".join(_text_of(part, f"{where}.{j}") for j, part in enumerate(parts))


def _user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [_user_part(part, f"{where}.{j}") for j, part in enumerate(_parts(content, where))]


def _user_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "input_text":
        return {"type": "text", "text": _text_of(part, where)}
    if kind == "input_image":
        return _image_part(part, where)
    if kind == "input_file":
        return _file_part(part, where)
    raise ResponsesRequestError(
        f"Content parts of type {kind!r} are not supported in user messages.", f"{where}.type"
    )


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    if part.get("file_id"):
        raise ResponsesRequestError(
            "Images by 'file_id' are not supported: send the image as 'image_url' (https or a data URL).",
            f"{where}.file_id",
        )
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise ResponsesRequestError("'input_image' needs an 'image_url' string.", f"{where}.image_url")
    image: dict[str, Any] = {"url": url}
    if part.get("detail") in ("low", "high", "auto"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    for name in ("file_id", "file_url"):
        if part.get(name):
            raise ResponsesRequestError(
                f"Files by '{name}' are not supported: send the file inline as 'file_data'.", f"{where}.{name}"
            )
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        raise ResponsesRequestError("'input_file' needs a 'file_data' string.", f"{where}.file_data")
    file: dict[str, Any] = {"file_data": data}
    if isinstance(part.get("filename"), str):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _assistant_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """Assistant content as a string when it is all text (what every upstream takes), else text/refusal parts."""
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(_parts(content, where)):
        kind = part.get("type")
        if kind in ("output_text", "input_text"):
            parts.append({"type": "text", "text": _text_of(part, f"{where}.{j}")})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "refusal", "refusal": part["refusal"]})
        else:
            raise ResponsesRequestError(
                f"Content parts of type {kind!r} are not supported in assistant messages.", f"{where}.{j}.type"
            )
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise ResponsesRequestError("'content' must be a string or a list of content parts.", where)
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise ResponsesRequestError("Each content part must be an object.", f"{where}.{j}")
    return content


def _text_of(part: dict[str, Any], where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise ResponsesRequestError("'text' must be a string.", f"{where}.text")
    return text


def _tool_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    for name in ("call_id", "name"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ResponsesRequestError(f"'function_call' items need a '{name}' string.", f"{where}.{name}")
    arguments = item.get("arguments", "")
    if not isinstance(arguments, str):
        raise ResponsesRequestError("'arguments' must be a JSON string.", f"{where}.arguments")
    name = item["name"]
    namespace = item.get("namespace")
    if isinstance(namespace, str) and namespace:
        name = namespaced(namespace, name)
    return {"id": item["call_id"], "type": "function", "function": {"name": name, "arguments": arguments}}


def _add_tool_call(messages: list[dict[str, Any]], call: dict[str, Any]) -> None:
    """Append the call to the assistant message just before it (its text or earlier calls), else start one."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise ResponsesRequestError("'function_call_output' items need a 'call_id' string.", f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, str):
        return {"role": "tool", "tool_call_id": call_id, "content": output}
    # Text parts joined into one string: what every chat upstream takes for a tool result.
    texts = [_tool_output_text(part, f"{where}.output.{j}") for j, part in enumerate(_parts(output, f"{where}.output"))]
    return {"role": "tool", "tool_call_id": call_id, "content": "".join(texts)}


def _tool_output_text(part: dict[str, Any], where: str) -> str:
    if part.get("type") != "input_text":
        raise ResponsesRequestError("Chat tool results hold text only: use 'input_text' parts.", f"{where}.type")
    return _text_of(part, where)


# --- tools and output format ----------------------------------------------------------------------------------


def _tools(tools: Any, choice: Any, parallel: Any) -> dict[str, Any]:
    """`tools`, `tool_choice` and `parallel_tool_calls`; the last two only with tools (OpenAI's chat refuses
    them without, the Responses API accepts them)."""
    if tools is not None and not isinstance(tools, list):
        raise ResponsesRequestError("'tools' must be a list.", "tools")
    definitions: list[dict[str, Any]] = []
    for i, tool in enumerate(tools or []):
        definitions.extend(_tool(tool, f"tools.{i}"))
    chat_choice = _tool_choice(choice) if choice is not None else None
    if not definitions:
        return {}
    out: dict[str, Any] = {"tools": definitions}
    if chat_choice is not None:
        out["tool_choice"] = chat_choice
    if parallel is not None:
        out["parallel_tool_calls"] = parallel
    return out


def _tool(tool: Any, where: str) -> list[dict[str, Any]]:
    """The chat functions for one Responses tool: a function is one, a namespace one per function in it, a hosted
    tool none (it runs only on OpenAI's own Responses API; Codex sends `web_search` to every model)."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind == "function":
        return [_function(tool, where, tool.get("name"))]
    if kind == "namespace":
        namespace = tool.get("name")
        if not isinstance(namespace, str) or not namespace or not isinstance(tool.get("tools"), list):
            raise ResponsesRequestError("A namespace tool needs a 'name' and a list of 'tools'.", where)
        functions = []
        for j, inner in enumerate(tool["tools"]):
            at = f"{where}.tools.{j}"
            if not isinstance(inner, dict) or inner.get("type") != "function":
                raise ResponsesRequestError("Only function tools are supported inside a namespace here.",
                                            f"{at}.type")
            inner_name = inner.get("name")
            functions.append(_function(inner, at, namespaced(namespace, inner_name)
                                       if isinstance(inner_name, str) and inner_name else None))
        return functions
    if kind in HOSTED_TOOLS:
        return []
    raise ResponsesRequestError(
        f"Only function and namespace tools are supported here, not {kind!r} (hosted tools such as web_search are "
        "left out: they run only on OpenAI's own Responses API).",
        f"{where}.type",
    )


def _function(tool: dict[str, Any], where: str, name: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise ResponsesRequestError("Each function tool needs a 'name'.", f"{where}.name")
    function: dict[str, Any] = {"name": name}
    for field in ("description", "parameters", "strict"):
        if tool.get(field) is not None:
            function[field] = tool[field]
    return {"type": "function", "function": function}


def namespaced(namespace: str, name: str) -> str:
    """The chat function name of the function `name` in the namespace tool `namespace`."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}"


def namespaces_of(tools: Any) -> dict[str, tuple[str, str]]:
    """Chat function name → (namespace, function name) for the namespace tools of a Responses request, so that a
    reply's call goes back to the caller under the names it gave."""
    found: dict[str, tuple[str, str]] = {}
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and tool.get("type") == "namespace" and isinstance(tool.get("tools"), list):
            for inner in tool["tools"]:
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    found[namespaced(tool["name"], inner["name"])] = (tool["name"], inner["name"])
    return found


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str) and choice in TOOL_CHOICE_WORDS:
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise ResponsesRequestError(
        "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}.", "tool_choice"
    )


def _text_options(text: Any) -> dict[str, Any]:
    """`text.format` as `response_format` (plain text is chat's default and is not sent); `text.verbosity` as
    chat's `verbosity`."""
    if text is None:
        return {}
    if not isinstance(text, dict):
        raise ResponsesRequestError("'text' must be an object.", "text")
    out: dict[str, Any] = {}
    if text.get("verbosity") is not None:
        out["verbosity"] = text["verbosity"]
    form = text.get("format")
    if form is None:
        return out
    kind = form.get("type") if isinstance(form, dict) else None
    if kind == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        out["response_format"] = {"type": "json_schema", "json_schema": _json_schema(form)}
    elif kind != "text":
        raise ResponsesRequestError("'text.format.type' must be 'text', 'json_object' or 'json_schema'.",
                                    "text.format.type")
    return out


def _json_schema(form: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(form.get("name"), str) or not form["name"]:
        raise ResponsesRequestError("'json_schema' formats need a 'name'.", "text.format.name")
    if not isinstance(form.get("schema"), dict):
        raise ResponsesRequestError("'json_schema' formats need a 'schema' object.", "text.format.schema")
    out: dict[str, Any] = {"name": form["name"], "schema": form["schema"]}
    for name in ("description", "strict"):
        if form.get(name) is not None:
            out[name] = form[name]
    return out
