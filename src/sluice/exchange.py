"""The exchange record: one finished (or failed) request as the observers see it, and the observer contract."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from sluice.errors import GatewayError

if TYPE_CHECKING:
    from sluice.keys.principal import Principal
    from sluice.telemetry.trace_context import TraceIds
    from sluice.telemetry.usage import Usage

logger = logging.getLogger("sluice.exchange")


@dataclass(slots=True)
class Exchange:
    """Everything observers may record about one request; filled in by the edge as the request goes.

    Bodies are kept as the bytes that crossed the wire (`chunks` for streams, in arrival order), so the
    request path never parses or copies them for observers; observers decode them off the hot path.
    """

    request_id: str
    endpoint: str
    """The route, e.g. `/v1/chat/completions` or `/provider/openai/v1/files`."""
    method: str
    started_at: float
    """Wall-clock time (time.time()) when the request arrived."""
    operation: str | None = None
    """`chat`, `completions`, `embeddings`, `passthrough` or a project step."""
    key_id: str | None = None
    key_hash: str | None = None
    """The caller's key identifier, derived with the pepper at authentication (never the key or its plain hash)."""
    principal: Principal | None = None
    """The authenticated caller (its limits and budget are charged with the usage once the exchange ends)."""
    provider: str | None = None
    model: str | None = None
    """The public model name the caller asked for."""
    upstream_model: str | None = None
    project: str | None = None
    stream: bool = False
    status: int = 0
    request_headers: Sequence[tuple[bytes, bytes]] = ()
    request_body: bytes | None = None
    response_body: bytes | None = None
    chunks: list[bytes] = field(default_factory=list)
    """A relayed body's chunks as they came: the first `request_log.max_body_bytes` or so, then only the last few
    (`tap_stream`: memory stays bounded whatever the body's length)."""
    truncated_bytes: int = 0
    """Bytes of a relayed body not kept (between the kept head and tail of `chunks`)."""
    latency_total: float | None = None
    """Seconds from arrival to the last byte sent."""
    latency_upstream: float | None = None
    """Seconds spent waiting on the upstream."""
    time_to_first_token: float | None = None
    """Seconds from arrival to the first streamed chunk sent."""
    error: str | None = None
    """The error message a failed request was answered with."""
    error_type: str | None = None
    """The `type` of that error (`GatewayError.type`, e.g. `upstream_error`)."""
    error_code: str | None = None
    """The `code` of that error (e.g. `upstream_timeout`, `upstream_unreachable`)."""
    trace_id: str | None = None
    client_disconnected: bool = False
    trace: TraceIds | None = None
    """The ids of this request's spans, set only when tracing is on (the upstream got its traceparent)."""
    upstream_offset: float | None = None
    """Seconds from arrival to the start of the upstream call; None when no upstream call was made."""
    route: str | None = None
    """The service route rule that matched (its `path` or `path_regex`), for a service request."""
    hops: list[dict[str, str]] | None = None
    """How routing got to the deployment that answered: each failed try (`deployment`, `error`: the reason) and
    each switch to a fallback model (`from`, `fallback`, `reason`), in order; None when the first try answered."""
    prompt_name: str | None = None
    """The prompt template the request named (`"prompt"` on chat), if any; then the version used, the
    template's messages as JSON (`Template.template_json`) and the variables it was rendered with."""
    prompt_version: int | None = None
    prompt_template: str | None = None
    prompt_variables: dict[str, Any] | None = None
    cache: str | None = None
    """The response cache's verdict on a chat, completions or embeddings request (routing/cache.py): `HIT` (answered
    from the cache or by an identical request in flight: no upstream call, nothing charged), `MISS` (answered by
    the upstream, then stored) or `BYPASS` (not looked up: a stream, `Cache-Control: no-store`/`no-cache`, or a
    model without `cache:`); for a service route with `cache:` (services/cache.py) `HIT`, `MISS` or `REVALIDATED`;
    None for the other operations."""
    wire: str | None = None
    """The protocol of `response_body`/`chunks` when it is not OpenAI's: `anthropic` for a `/v1/messages` call an
    Anthropic deployment answered natively. Their readers see them in OpenAI's shape (serve/exchange_values.py
    `openai_view`, in the helper processes); in the gateway only the usage is read, from the bytes."""
    usage_read: tuple[Usage | None] | None = None
    """The reply's usage once an observer has read it (`telemetry/usage.py`: the token and budget charges and the
    metrics all want it), in a 1-tuple; None until then."""


class Observer(Protocol):
    """Receives finished exchanges. `observe` must return at once (enqueue, never wait on I/O)."""

    def observe(self, exchange: Exchange) -> None: ...


def notify(observers: Sequence[Observer], exchange: Exchange) -> None:
    """Hand the exchange to every observer; one failing observer never affects the request or the others."""
    for observer in observers:
        try:
            observer.observe(exchange)
        except Exception:
            logger.exception("observer %s failed", type(observer).__name__)


TAIL_CHUNKS = 4
"""Chunks kept from the end of a body past its head: a stream's usage and finish are in its last events."""


async def tap_stream(chunks: AsyncGenerator[bytes, None], exchange: Exchange, started: float, keep: int
                     ) -> AsyncGenerator[bytes, None]:
    """Pass a stream through unchanged while the exchange keeps its time to first chunk, its outcome and its chunks:
    about `keep` bytes of them from the start, then only the last `TAIL_CHUNKS` (after an empty line, so what the
    observers parse never joins two cut events), the rest counted in `truncated_bytes`.

    `started` is the request's `perf_counter()` at arrival.
    """
    kept = exchange.chunks
    size = 0
    tail: deque[bytes] | None = None
    try:
        async for chunk in chunks:
            if exchange.time_to_first_token is None:
                exchange.time_to_first_token = perf_counter() - started
            if tail is None:
                kept.append(chunk)
                size += len(chunk)
                if size > keep:
                    tail = deque(maxlen=TAIL_CHUNKS)
            else:
                if len(tail) == TAIL_CHUNKS:
                    exchange.truncated_bytes += len(tail[0])
                tail.append(chunk)
            yield chunk
    except GeneratorExit:
        exchange.client_disconnected = True
        raise
    except GatewayError as exc:
        exchange.error, exchange.error_type, exchange.error_code = exc.message, exc.type, exc.code
        raise
    finally:
        if tail:
            if exchange.truncated_bytes:
                kept.append(b"\n\n")
            kept.extend(tail)
        await chunks.aclose()
