"""`GET /demo/stream`: a browser page that shows a streamed answer from the `mock` provider via `EventSource`.

`EventSource` can only make GET requests and cannot send headers, so its event stream,
`GET /demo/stream/events?prompt=…`, needs no key. That is safe because it is limited to a provider of type
`mock` (no upstream, no cost) and to short prompts; `demo.enabled: false` in the config turns both routes off.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, StreamingResponse

from sluice.config import MockProviderConfig
from sluice.errors import InvalidRequest, NotFound
from sluice.gateway import Gateway
from sluice.http.auth import CurrentGateway
from sluice.providers.base import Provider, UpstreamRequest
from sluice.streaming import SSE_HEADERS

router = APIRouter(prefix="/demo", tags=["demo"])
PAGE = files("sluice.http").joinpath("demo_stream.html")
DEFAULT_PROMPT = "Hello from the Sluice streaming demo!"


def demo_provider(gateway: Gateway) -> Provider:
    """The first configured `mock` provider; NotFound when the demo is off or there is none."""
    if gateway.config.demo.enabled:
        for name, entry in gateway.config.providers.items():
            if isinstance(entry, MockProviderConfig):
                return gateway.providers[name]
    raise NotFound("The streaming demo is off: it needs `demo.enabled: true` and a provider of type mock.",
                   code="demo_disabled")


@router.get("/stream", response_class=HTMLResponse, summary="Browser page showing a streamed mock answer")
async def page(gateway: CurrentGateway) -> HTMLResponse:
    demo_provider(gateway)
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.get("/stream/events", response_class=StreamingResponse,
            summary="The demo's SSE stream: the mock provider's answer to `prompt` (no key; mock only)",
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(gateway: CurrentGateway, prompt: Annotated[str, Query()] = DEFAULT_PROMPT) -> StreamingResponse:
    provider = demo_provider(gateway)
    limit = gateway.config.demo.max_prompt_chars
    if len(prompt) > limit:
        raise InvalidRequest(f"The demo takes prompts of at most {limit} characters.", param="prompt")
    body = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    chunks = await provider.stream(UpstreamRequest("chat", body))
    headers = {name.decode(): value.decode() for name, value in SSE_HEADERS if name != b"content-type"}
    return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
