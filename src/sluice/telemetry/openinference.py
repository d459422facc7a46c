"""OpenInference attributes of one exchange, decoded from the bytes that crossed the wire.

Runs in the span exporter process, never on the request path. Bodies are OpenAI-shaped (Sluice's
normalised format): requests and replies as JSON, streams as SSE `chat.completion.chunk` events, which
`stream_reader.py` assembles into the reply first.
"""

from __future__ import annotations

from typing import Any

import orjson
from openinference.semconv.trace import (
    EmbeddingAttributes,
    ImageAttributes,
    MessageAttributes,
    MessageContentAttributes,
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
    ToolAttributes,
    ToolCallAttributes,
)

from sluice.prompts import render_template_json

Attributes = dict[str, Any]
REDACTED = "__REDACTED__"
"""What a hidden input or output is replaced with (OpenInference's own marker)."""
_NOT_PARAMETERS = frozenset({"messages", "model", "tools", "functions", "prompt", "input", "prompt_template"})
_JSON = OpenInferenceMimeTypeValues.JSON.value
_TEXT = OpenInferenceMimeTypeValues.TEXT.value
PROVIDERS = {"openai": "openai", "azure": "azure", "anthropic": "anthropic", "gemini": "google", "bedrock": "aws",
             "mistral": "mistralai", "groq": "groq", "deepseek": "deepseek"}
"""Provider type → `llm.provider`; `SYSTEMS` → `llm.system` (the API family the model speaks)."""
SYSTEMS = {"openai": "openai", "azure": "openai", "anthropic": "anthropic", "gemini": "vertexai",
           "mistral": "mistralai", "groq": "openai", "deepseek": "openai"}


def span_kind(operation: str | None) -> str:
    """The OpenInference kind of an upstream call."""
    if operation == "embeddings":
        return OpenInferenceSpanKindValues.EMBEDDING.value
    if operation in ("chat", "completions"):
        return OpenInferenceSpanKindValues.LLM.value
    if operation == "mcp":
        return OpenInferenceSpanKindValues.TOOL.value
    return OpenInferenceSpanKindValues.CHAIN.value


def load_json(raw: bytes | None) -> Any:
    """The decoded body, or None when there is none or it is not JSON."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def request_attributes(operation: str | None, body: Any, raw: bytes | None, *, hide: bool) -> Attributes:
    """input.value, the input messages (or embedded texts), tools and invocation parameters."""
    attributes: Attributes = {}
    if raw:
        attributes[SpanAttributes.INPUT_VALUE] = REDACTED if hide else raw.decode("utf-8", "replace")
        attributes[SpanAttributes.INPUT_MIME_TYPE] = _TEXT if hide else _JSON
    if not isinstance(body, dict):
        return attributes
    parameters = {key: value for key, value in body.items() if key not in _NOT_PARAMETERS}
    if operation == "embeddings":
        attributes[SpanAttributes.EMBEDDING_INVOCATION_PARAMETERS] = _dumps(parameters)
        if not hide:
            attributes.update(_embedded_texts(body.get("input")))
        return attributes
    attributes[SpanAttributes.LLM_INVOCATION_PARAMETERS] = _dumps(parameters)
    for index, tool in enumerate(body.get("tools") or ()):
        attributes[f"{SpanAttributes.LLM_TOOLS}.{index}.{ToolAttributes.TOOL_JSON_SCHEMA}"] = _dumps(tool)
    if hide:
        return attributes
    if isinstance(body.get("messages"), list):
        attributes.update(messages_attributes(SpanAttributes.LLM_INPUT_MESSAGES, body["messages"]))
    elif "prompt" in body:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        for index, prompt in enumerate(prompts):
            attributes[f"{SpanAttributes.LLM_PROMPTS}.{index}.prompt.text"] = str(prompt)
    return attributes


def with_prompt(body: dict[str, Any], template_json: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A chat request that named a prompt template, as sent upstream: rendered messages first, no `prompt`."""
    given = body.get("messages")
    rendered = render_template_json(template_json, variables) + (given if isinstance(given, list) else [])
    return {**{key: value for key, value in body.items() if key != "prompt"}, "messages": rendered}


def prompt_template_attributes(template_json: str, variables: Any, name: str | None, version: int | None, *,
                               hide: bool) -> Attributes:
    """`llm.prompt_template.*` of a request rendered from a Sluice prompt template."""
    return {
        SpanAttributes.LLM_PROMPT_TEMPLATE: template_json,
        SpanAttributes.LLM_PROMPT_TEMPLATE_VARIABLES: REDACTED if hide else _dumps(variables or {}),
        SpanAttributes.LLM_PROMPT_TEMPLATE_VERSION: str(version),
        "sluice.prompt.name": name or "",
    }


def _embedded_texts(inputs: Any) -> Attributes:
    items: list[Any] = inputs if isinstance(inputs, list) else [inputs]
    prefix = SpanAttributes.EMBEDDING_EMBEDDINGS
    return {f"{prefix}.{index}.{EmbeddingAttributes.EMBEDDING_TEXT}": item
            for index, item in enumerate(items) if isinstance(item, str)}


def response_attributes(operation: str | None, reply: Any, output: str | None, *, hide: bool) -> Attributes:
    """output.value, the output messages, token counts and the served model."""
    attributes: Attributes = {}
    if output:
        attributes[SpanAttributes.OUTPUT_VALUE] = REDACTED if hide else output
        attributes[SpanAttributes.OUTPUT_MIME_TYPE] = _TEXT if hide else _JSON
    if not isinstance(reply, dict):
        return attributes
    if isinstance(reply.get("model"), str):
        name = SpanAttributes.EMBEDDING_MODEL_NAME if operation == "embeddings" else SpanAttributes.LLM_MODEL_NAME
        attributes[name] = reply["model"]
    attributes.update(usage_attributes(reply.get("usage")))
    found = reply.get("choices")
    choices: list[Any] = found if isinstance(found, list) else []
    if choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"):
        attributes["llm.finish_reason"] = choices[0]["finish_reason"]
    if hide:
        return attributes
    messages = [choice["message"] if isinstance(choice.get("message"), dict)
                else {"role": "assistant", "content": choice.get("text", "")}
                for choice in choices if isinstance(choice, dict)]
    attributes.update(messages_attributes(SpanAttributes.LLM_OUTPUT_MESSAGES, messages))
    return attributes


def usage_attributes(usage: Any) -> Attributes:
    """`llm.token_count.*` from an OpenAI `usage` object."""
    if not isinstance(usage, dict):
        return {}
    counts = {
        SpanAttributes.LLM_TOKEN_COUNT_PROMPT: usage.get("prompt_tokens"),
        SpanAttributes.LLM_TOKEN_COUNT_COMPLETION: usage.get("completion_tokens"),
        SpanAttributes.LLM_TOKEN_COUNT_TOTAL: usage.get("total_tokens"),
        SpanAttributes.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ:
            (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
        SpanAttributes.LLM_TOKEN_COUNT_COMPLETION_DETAILS_REASONING:
            (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
    }
    return {name: count for name, count in counts.items() if isinstance(count, int)}


def messages_attributes(prefix: str, messages: list[Any]) -> Attributes:
    """OpenAI messages flattened with indices, as OpenInference spells them."""
    attributes: Attributes = {}
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        at = f"{prefix}.{index}."
        for key, name in (("role", MessageAttributes.MESSAGE_ROLE), ("name", MessageAttributes.MESSAGE_NAME),
                          ("tool_call_id", MessageAttributes.MESSAGE_TOOL_CALL_ID)):
            if isinstance(message.get(key), str):
                attributes[at + name] = message[key]
        content = message.get("content")
        if isinstance(content, str):
            attributes[at + MessageAttributes.MESSAGE_CONTENT] = content
        elif isinstance(content, list):
            attributes.update(_content_parts(at + MessageAttributes.MESSAGE_CONTENTS, content))
        for number, call in enumerate(message.get("tool_calls") or ()):
            attributes.update(_tool_call(f"{at}{MessageAttributes.MESSAGE_TOOL_CALLS}.{number}.", call))
    return attributes


def _content_parts(prefix: str, parts: list[Any]) -> Attributes:
    attributes: Attributes = {}
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            continue
        at = f"{prefix}.{index}."
        kind = part.get("type")
        if kind == "text":
            attributes[at + MessageContentAttributes.MESSAGE_CONTENT_TYPE] = "text"
            attributes[at + MessageContentAttributes.MESSAGE_CONTENT_TEXT] = str(part.get("text", ""))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            attributes[at + MessageContentAttributes.MESSAGE_CONTENT_TYPE] = "image"
            attributes[f"{at}{MessageContentAttributes.MESSAGE_CONTENT_IMAGE}.{ImageAttributes.IMAGE_URL}"] = (
                url if not url.startswith("data:") else url.split(",", 1)[0] + ",…")
    return attributes


def _tool_call(at: str, call: Any) -> Attributes:
    if not isinstance(call, dict):
        return {}
    function = call.get("function") or {}
    found = {
        ToolCallAttributes.TOOL_CALL_ID: call.get("id"),
        ToolCallAttributes.TOOL_CALL_FUNCTION_NAME: function.get("name"),
        ToolCallAttributes.TOOL_CALL_FUNCTION_ARGUMENTS_JSON: function.get("arguments"),
    }
    return {at + name: value for name, value in found.items() if isinstance(value, str)}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
