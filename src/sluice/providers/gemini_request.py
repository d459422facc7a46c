"""OpenAI chat and embeddings request bodies translated to Gemini generateContent and batchEmbedContents bodies."""

from __future__ import annotations

import json
import mimetypes
from typing import Any
from urllib.parse import quote

from sluice.providers.anthropic_request import TranslationError

SYSTEM_ROLES = frozenset({"system", "developer"})
FUNCTION_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
SCHEMA_KEYWORDS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "items", "minItems", "maxItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "minimum", "maximum",
})
"""The OpenAPI Schema subset Gemini's `Schema` accepts (ai.google.dev/api/caching#Schema); the rest is dropped."""
FORMATS = {"STRING": {"enum", "date-time"}, "INTEGER": {"int32", "int64"}, "NUMBER": {"float", "double"}}
"""The only `format` values Gemini accepts per type (it answers 400 for e.g. `email` or `uri`)."""
MAX_REF_DEPTH = 8
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def model_path(model: str) -> str:
    """`models/{model}` for the URL, with a `models/` prefix given in the config accepted."""
    return "models/" + quote(model.removeprefix("models/"), safe="-._~")


def to_gemini_request(body: dict[str, Any], dropped: list[str] | None = None) -> dict[str, Any]:
    """The generateContent body for the OpenAI chat request `body`; schema keywords Gemini rejects are left out
    and their paths appended to `dropped`."""
    dropped = [] if dropped is None else dropped
    system, contents = _conversation(body.get("messages"))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": system}]}
    if body.get("tools") is not None:
        out["tools"] = [{"functionDeclarations": _declarations(body["tools"], dropped)}]
    if body.get("tool_choice") is not None:
        out["toolConfig"] = {"functionCallingConfig": _function_calling(body["tool_choice"])}
    config = _generation_config(body, dropped)
    if config:
        out["generationConfig"] = config
    return out


def to_gemini_embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The batchEmbedContents body for an OpenAI embeddings request: one request per input text."""
    texts = _embedding_texts(body.get("input"))
    extra = {"outputDimensionality": body["dimensions"]} if body.get("dimensions") is not None else {}
    name = "models/" + model.removeprefix("models/")
    return {"requests": [{"model": name, "content": {"parts": [{"text": text}]}, **extra} for text in texts]}


def _embedding_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    raise TranslationError("Gemini embeddings take a string or a list of strings (token arrays are not "
                           "supported).", param="input")


# --- generation config ----------------------------------------------------------------------------------------


def _generation_config(body: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, gemini_name in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                              ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if body.get(name) is not None:
            config[gemini_name] = body[name]
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            config["maxOutputTokens"] = _positive(body[name], name)
            break
    if body.get("stop") is not None:
        config["stopSequences"] = _stop_sequences(body["stop"])
    if body.get("n") is not None:
        config["candidateCount"] = _positive(body["n"], "n")
    config.update(_response_format(body.get("response_format"), dropped))
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


def _response_format(value: Any, dropped: list[str]) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, dict) else value
    if kind is None or kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    spec = value.get("json_schema") if isinstance(value, dict) else None
    if kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        schema = gemini_schema(spec["schema"], dropped, "response_format.json_schema.schema")
        return {"responseMimeType": "application/json", "responseSchema": schema}
    raise TranslationError("'response_format' must be text, json_object or json_schema with a 'schema'.",
                           param="response_format")


# --- schemas --------------------------------------------------------------------------------------------------


def gemini_schema(schema: Any, dropped: list[str], path: str = "schema") -> dict[str, Any]:
    """A JSON Schema as Gemini's OpenAPI subset: local `$ref`s inlined, `type` lists read as `nullable`/`anyOf`,
    `oneOf` as `anyOf`, `const` as a one-value `enum`; every other keyword Gemini rejects (`additionalProperties`,
    `$schema`, `allOf`, …) is left out and its path added to `dropped`."""
    definitions = {**_mapping(schema, "definitions"), **_mapping(schema, "$defs")}
    return _schema(schema, definitions, dropped, path, 0)


def _mapping(schema: Any, key: str) -> dict[str, Any]:
    value = schema.get(key) if isinstance(schema, dict) else None
    return value if isinstance(value, dict) else {}


def _schema(node: Any, defs: dict[str, Any], dropped: list[str], path: str, depth: int) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1]) if ref.startswith(("#/$defs/", "#/definitions/")) else None
        if target is None or depth >= MAX_REF_DEPTH:
            dropped.append(f"{path}.$ref")
            return {}
        return _schema({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs, dropped, path, depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        where = f"{path}.{key}"
        if key == "type":
            out.update(_type(value))
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _schema(sub, defs, dropped, f"{where}.{name}", depth) for name, sub in value.items()}
        elif key == "items":
            out[key] = _schema(value, defs, dropped, where, depth)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out["anyOf"] = [_schema(sub, defs, dropped, f"{where}[{i}]", depth) for i, sub in enumerate(value)]
        elif key == "const" and isinstance(value, str):
            out["enum"] = [value]
        elif key == "enum" and isinstance(value, list) and all(isinstance(item, str) for item in value):
            out[key] = value
        elif key in SCHEMA_KEYWORDS and key not in ("enum", "format", "properties", "items", "anyOf"):
            out[key] = value
        elif key not in ("format", "$defs", "definitions"):
            dropped.append(where)
    _keep_format(node.get("format"), out, dropped, path)
    if out.get("type") == "OBJECT" and not out.get("properties"):
        out.pop("required", None)
    return out


def _type(value: Any) -> dict[str, Any]:
    """`"string"` → `STRING`; `["string", "null"]` → `STRING` + `nullable`; several types → `anyOf`."""
    names = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
        if isinstance(value, list) else []
    nullable = "null" in names
    kinds = [name.upper() for name in names if name != "null"]
    out: dict[str, Any] = {"nullable": True} if nullable else {}
    if len(kinds) == 1:
        out["type"] = kinds[0]
    elif kinds:
        out["anyOf"] = [{"type": kind} for kind in kinds]
    elif nullable:
        out["type"] = "NULL"
    return out


def _keep_format(value: Any, out: dict[str, Any], dropped: list[str], path: str) -> None:
    if value is None:
        return
    if value in FORMATS.get(str(out.get("type")), ()):
        out["format"] = value
    else:
        dropped.append(f"{path}.format")


# --- messages -------------------------------------------------------------------------------------------------


def _conversation(messages: Any) -> tuple[str, list[dict[str, Any]]]:
    """The system instruction text and the user/model contents (tool results as user `functionResponse`s)."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("'messages' must be a non-empty list.", param="messages")
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name, for the functionResponse parts
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError("Each message must be an object.", param=where)
        role = message.get("role")
        if role in SYSTEM_ROLES:
            system.append(_plain_text(message.get("content"), f"{where}.content"))
        elif role == "user":
            _append(contents, "user", _parts(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            parts = _parts(message.get("content"), f"{where}.content")
            parts += _function_calls(message.get("tool_calls"), names, f"{where}.tool_calls")
            _append(contents, "model", parts)
        elif role in ("tool", "function"):
            _append(contents, "user", [_function_response(message, names, where)])
        else:
            raise TranslationError(f"Unsupported message role {role!r}.", param=f"{where}.role")
    return "\n\n".join(text for text in system if text), contents


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    """Add a turn, merged into the previous one of the same role (parallel tool results become one turn)."""
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _plain_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part["text"] for part in _parts(content, where) if "text" in part)


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError("Message content must be a string or a list of parts.", param=where)
    parts = [_part(part, f"{where}[{j}]") for j, part in enumerate(content)]
    return [part for part in parts if part.get("text") != ""]


def _part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"text": part["text"]}
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"text": part["refusal"]}
    if kind == "image_url":
        image = part.get("image_url")
        return _media(image.get("url") if isinstance(image, dict) else image, f"{where}.image_url.url")
    if kind == "input_audio" and isinstance(part.get("input_audio"), dict):
        audio = part["input_audio"]
        mime = AUDIO_TYPES.get(str(audio.get("format")), f"audio/{audio.get('format')}")
        return {"inlineData": {"mimeType": mime, "data": str(audio.get("data", ""))}}
    if kind == "file" and isinstance(part.get("file"), dict) and isinstance(part["file"].get("file_data"), str):
        return _media(part["file"]["file_data"], f"{where}.file.file_data")
    raise TranslationError(f"Unsupported content part type {kind!r} for Gemini models.", param=f"{where}.type")


def _media(url: Any, where: str) -> dict[str, Any]:
    """A data URL as `inlineData`, an http(s) URL as `fileData` (with a MIME type guessed from its name)."""
    if isinstance(url, str) and url.startswith("data:"):
        header, sep, data = url[len("data:"):].partition(",")
        mime, _, encoding = header.partition(";")
        if sep and encoding == "base64" and mime:
            return {"inlineData": {"mimeType": mime, "data": data}}
        raise TranslationError("Data URLs must look like 'data:<media type>;base64,<data>'.", param=where)
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        guessed = mimetypes.guess_type(url.split("?", 1)[0])[0]
        return {"fileData": {"fileUri": url, **({"mimeType": guessed} if guessed else {})}}
    raise TranslationError("Media URLs must be http(s) or base64 data URLs.", param=where)


def _function_calls(tool_calls: Any, names: dict[str, str], where: str) -> list[dict[str, Any]]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise TranslationError("'tool_calls' must be a list.", param=where)
    parts = []
    for k, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TranslationError("Each tool call needs a 'function.name'.", param=f"{where}[{k}]")
        if isinstance(call.get("id"), str):
            names[call["id"]] = function["name"]
        part: dict[str, Any] = {"functionCall": {"name": function["name"],
                                                 "args": _arguments(function.get("arguments"), f"{where}[{k}]")}}
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if isinstance(signature, str):
            part["thoughtSignature"] = signature  # Gemini 3 refuses a function call turn sent back without it
        parts.append(part)
    return parts


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


def _function_response(message: dict[str, Any], names: dict[str, str], where: str) -> dict[str, Any]:
    """A tool result as a `functionResponse`: a JSON object as it is, any other content as `{"output": text}`
    (Gemini reads the `output` key as the function's output)."""
    name = names.get(str(message.get("tool_call_id"))) or message.get("name")
    if not isinstance(name, str):
        raise TranslationError("A tool message's 'tool_call_id' must name a tool call of an earlier assistant "
                               "message.", param=f"{where}.tool_call_id")
    text = _plain_text(message.get("content"), f"{where}.content")
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        decoded = None
    return {"functionResponse": {"name": name, "response": decoded if isinstance(decoded, dict) else
                                 {"output": text}}}


# --- tools ----------------------------------------------------------------------------------------------------


def _declarations(tools: Any, dropped: list[str]) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise TranslationError("'tools' must be a list.", param="tools")
    return [_declaration(tool, f"tools[{i}]", dropped) for i, tool in enumerate(tools)]


def _declaration(tool: Any, where: str, dropped: list[str]) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise TranslationError("Only tools of type 'function' are supported.", param=f"{where}.type")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise TranslationError("Each tool needs a 'function.name'.", param=f"{where}.function.name")
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    parameters = gemini_schema(function.get("parameters"), dropped, f"{where}.function.parameters")
    if parameters.get("properties"):  # Gemini refuses an OBJECT schema without properties
        out["parameters"] = parameters
    return out


def _function_calling(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in FUNCTION_MODES:
        return {"mode": FUNCTION_MODES[choice]}
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"mode": "ANY", "allowedFunctionNames": [function["name"]]}
    raise TranslationError(
        "'tool_choice' must be 'auto', 'required', 'none' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
    )
