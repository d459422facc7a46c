"""The sample project: `POST /projects/demo/summary` summarises a text, then titles the summary.

Two chained upstream calls, made through the gateway client: the summary with `summary_model`, then a title
for that summary with `title_model` (another model, or another provider). With `stream_mode=sse|ndjson` the
summary arrives as one object, then the title streams as it is written, then the whole result.
By default the project may call only the `mock` model; a `projects:` entry in the config can allow others.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from sluice.projects.api import GatewayClient, Project, ProjectClient
from sluice.projects.streams import STREAM_CONTENT, RequestedStreamMode, stream_response
from sluice.providers.base import JSONObject

router = APIRouter()

SUMMARY_PROMPT = "Summarise the user's text in at most {words} words. Answer with the summary only."
TITLE_PROMPT = "Write a title of at most eight words for this summary. Answer with the title only."


class SummaryRequest(BaseModel):
    """A text to summarise, and the models for each of the two steps."""

    text: str = Field(min_length=1, max_length=50_000, description="The text to summarise")
    summary_model: str = Field("mock", description="Model for step 1, the summary")
    title_model: str = Field("mock", description="Model for step 2, the title (may be another provider's)")
    max_words: int = Field(60, ge=5, le=500, description="Longest summary wanted, in words")


class Step(BaseModel):
    """One upstream call of the chain."""

    model: str
    usage: dict[str, Any] | None = None


class SummaryResult(BaseModel):
    """The title and summary, and the calls that made them, in order."""

    title: str
    summary: str
    steps: list[Step]


@router.post("/summary", response_model=SummaryResult, responses=STREAM_CONTENT,
             summary="Summarise a text, then title the summary (two chained upstream calls)")
async def summary(body: SummaryRequest, client: ProjectClient,
                  mode: RequestedStreamMode) -> SummaryResult | StreamingResponse:
    first = await client.chat(body.summary_model, summary_messages(body))
    summary_text = message_text(first)
    steps = [Step(model=body.summary_model, usage=first.get("usage"))]
    if mode is None or mode == "json":
        second = await client.chat(body.title_model, title_messages(summary_text))
        steps.append(Step(model=body.title_model, usage=second.get("usage")))
        return SummaryResult(title=message_text(second).strip(), summary=summary_text, steps=steps)
    return stream_response(mode, streamed_title(client, body, summary_text, steps))


async def streamed_title(client: GatewayClient, body: SummaryRequest, summary_text: str,
                         steps: list[Step]) -> AsyncGenerator[JSONObject, None]:
    """The summary, then each piece of the title as the second model writes it, then the whole result."""
    yield {"type": "summary", "summary": summary_text, "model": body.summary_model}
    title, usage = "", None
    async for chunk in client.stream_chat(body.title_model, title_messages(summary_text),
                                          stream_options={"include_usage": True}):
        usage = chunk.get("usage") or usage
        delta = (chunk["choices"][0].get("delta") or {}).get("content") if chunk.get("choices") else None
        if delta:
            title += delta
            yield {"type": "title.delta", "delta": delta}
    steps = [*steps, Step(model=body.title_model, usage=usage)]
    result = SummaryResult(title=title.strip(), summary=summary_text, steps=steps)
    yield {"type": "result", "result": result.model_dump()}


def summary_messages(body: SummaryRequest) -> list[JSONObject]:
    return [{"role": "system", "content": SUMMARY_PROMPT.format(words=body.max_words)},
            {"role": "user", "content": body.text}]


def title_messages(summary_text: str) -> list[JSONObject]:
    return [{"role": "system", "content": TITLE_PROMPT}, {"role": "user", "content": summary_text}]


def message_text(reply: JSONObject) -> str:
    """The first choice's text of a chat completion."""
    choices = reply.get("choices") or [{}]
    return str((choices[0].get("message") or {}).get("content") or "")


project = Project(router=router, models={"mock"}, description=__doc__ or "")
