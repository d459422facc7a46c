"""OpenAI request schemas: validation at the edge and the shapes shown in /docs; unknown fields are allowed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Open):
    include_usage: bool | None = None


class FunctionDefinition(_Open):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: Literal["function"]
    function: FunctionDefinition


class ToolCallFunction(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class PromptReference(BaseModel):
    """A Sluice prompt template to render instead of (or before) `messages` (see docs/observability.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    version: int | Literal["latest"] | None = None
    variables: dict[str, Any] = {}


class ChatCompletionRequest(_Open):
    """`POST /v1/chat/completions`."""

    model: str = Field(min_length=1)
    prompt: PromptReference | None = None
    """Sluice extension: a prompt template, rendered into the messages sent upstream."""
    messages: list[ChatMessage] | None = Field(None, min_length=1, validate_default=True)
    """Required unless `prompt` is given; with both, the rendered template comes first."""
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    user: str | None = None

    @field_validator("messages", mode="after")
    @classmethod
    def _messages_or_prompt(cls, messages: list[ChatMessage] | None, info: ValidationInfo
                            ) -> list[ChatMessage] | None:
        if messages is None and info.data.get("prompt") is None:
            raise PydanticCustomError("missing", "Field required")
        return messages


class CompletionRequest(_Open):
    """`POST /v1/completions` (legacy)."""

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    stop: str | list[str] | None = None


class EmbeddingRequest(_Open):
    """`POST /v1/embeddings`."""

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error Sluice returns."""

    error: ErrorObject
