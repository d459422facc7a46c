"""Stream modes for project routes: the `stream_mode` / `X-Stream-Mode` dependency and SSE or NDJSON framing.

A project route takes `mode: RequestedStreamMode` (None when the caller asked for nothing, so each route
picks its own default) and, for `sse` or `ndjson`, returns `stream_response(mode, objects)`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Query
from fastapi.responses import StreamingResponse

from sluice.errors import GatewayError, internal_error
from sluice.providers.base import JSONObject
from sluice.streaming import DONE_EVENT, NDJSON_TYPE, StreamMode, encode_data, encode_line, stream_mode

logger = logging.getLogger("sluice.projects")

_MODES = {"enum": ["sse", "ndjson", "json"]}
STREAM_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}, NDJSON_TYPE: {}},
          "description": "One JSON body, or with `stream_mode` sse/ndjson a stream of JSON objects"},
}
"""`responses=` for a project route that can stream, so /docs lists the streamed content types."""


def requested_stream_mode(
    stream_mode_query: Annotated[str | None, Query(alias="stream_mode", json_schema_extra=_MODES,
                                                   description="sse, ndjson or json; wins over X-Stream-Mode")] = None,
    x_stream_mode: Annotated[str | None, Header(json_schema_extra=_MODES)] = None,
) -> StreamMode | None:
    """The mode the caller asked for: `?stream_mode=` wins over `X-Stream-Mode`; None if neither was sent."""
    value = stream_mode_query if stream_mode_query is not None else x_stream_mode
    return None if value is None else stream_mode(value)


RequestedStreamMode = Annotated[StreamMode | None, Depends(requested_stream_mode)]


def stream_response(mode: StreamMode, objects: AsyncGenerator[JSONObject, None]) -> StreamingResponse:
    """`objects` framed as SSE events (then `[DONE]`) or NDJSON lines, each flushed as it is produced."""
    media_type = NDJSON_TYPE if mode == "ndjson" else "text/event-stream"
    return StreamingResponse(_framed(mode, objects), media_type=media_type,
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


async def _framed(mode: StreamMode, objects: AsyncGenerator[JSONObject, None]) -> AsyncIterator[bytes]:
    encode = encode_line if mode == "ndjson" else encode_data
    try:
        async for item in objects:
            yield encode(item)
    except GatewayError as exc:
        yield encode(exc.to_dict())
        return
    except Exception:
        logger.exception("project stream failed")
        yield encode(internal_error().to_dict())
        return
    finally:
        await objects.aclose()
    if mode == "sse":
        yield DONE_EVENT
