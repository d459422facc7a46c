"""The gateway's own MCP tools: `list_models` (what this key may use) and `chat` (one chat completion)."""

from __future__ import annotations

from typing import Any

from mcp import types

from sluice.errors import NotFound
from sluice.http.models import visible_models
from sluice.mcp.chat import Pieces, chat, reply_text
from sluice.pipeline.flow import Flow

LIST_MODELS = types.Tool(
    name="list_models",
    description="The models this API key may use through the gateway (the names `chat` takes).",
    inputSchema={"type": "object", "properties": {}, "additionalProperties": False},
)
CHAT = types.Tool(
    name="chat",
    description="One chat completion through the gateway, as this API key (its model scopes and limits apply); "
                "the reply's text. Give `messages` (OpenAI chat format) or a single `prompt`. Called with a "
                "progressToken, the reply is streamed: a progress notification per piece of text (its message).",
    inputSchema={
        "type": "object",
        "properties": {
            "model": {"type": "string", "description": "A model name from list_models."},
            "messages": {"type": "array", "description": "OpenAI chat messages: [{role, content}, ...].",
                         "items": {"type": "object"}},
            "prompt": {"type": "string", "description": "A single user message, instead of `messages`."},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        },
        "required": ["model"],
    },
)
OWN_TOOLS = {tool.name: tool for tool in (LIST_MODELS, CHAT)}


async def run_own(edge: Flow, name: str, arguments: dict[str, Any], pieces: Pieces | None = None
                  ) -> types.CallToolResult:
    """Run one of `OWN_TOOLS` for the edge flow's caller; GatewayError when the key may not (a model's scope).
    `pieces` (the caller asked for progress) makes `chat` stream, telling it each piece of the reply's text."""
    if name == LIST_MODELS.name:
        principal = edge.principal
        assert principal is not None
        names = [model["id"] for model in visible_models(edge.gateway, principal)]
        return types.CallToolResult(content=[types.TextContent(type="text", text="\n".join(names))],
                                    structuredContent={"models": names})
    if name == CHAT.name:
        reply = await chat(edge, arguments, pieces)
        text = reply_text(reply)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    structuredContent={"model": reply.get("model"), "text": text,
                                                       "usage": reply.get("usage")})
    raise NotFound(f"Unknown tool {name!r}.")
