"""The metrics observer: counts each finished exchange into the Prometheus collectors.

`observe` adds the exchange's requests, tokens and cost to per-label-set totals and its durations to per-label-set
tallies (telemetry/tally.py), at once (a few µs, after its response was sent); its upstream errors are counted
then. A task applies the totals and tallies to the collectors every `FLUSH_SECONDS`, and a scrape applies them
first (`Metrics.before_render`), so `/metrics` always includes every finished request of the worker answering it.

It used to queue exchanges and count them in batches every 50 ms, in slices of 64 with yields between: a request
arriving meanwhile had a slice run at each of its awaits, ~1.3 ms added to the p99 of a cache hit at one
connection (docs/benchmarks.md). Counting each exchange as it ends leaves no backlog to wait on; a flush only adds
a few numbers per label set.
"""

from __future__ import annotations

import asyncio

from sluice.exchange import Exchange
from sluice.pricing import Price, PriceTable
from sluice.tasks import stop
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.tally import HistogramTally
from sluice.telemetry.usage import usage_of

FLUSH_SECONDS = 0.05
"""How often the totals go to the counters (a few label sets each time)."""
_UPSTREAM_ERROR_KINDS = {"upstream_timeout": "timeout", "upstream_unreachable": "unreachable",
                         "upstream_protocol_error": "protocol"}


def route_of(exchange: Exchange) -> str:
    """The route label: the matched service rule's pattern, the endpoint with passthrough paths cut to
    `/provider/<name>`, or the endpoint (bounded cardinality: never a path a caller chose)."""
    if exchange.route is not None:
        return exchange.route
    endpoint = exchange.endpoint
    if endpoint.startswith("/provider/"):
        return "/".join(endpoint.split("/", 3)[:3])
    return endpoint


def upstream_error_kind(exchange: Exchange) -> str | None:
    """Why the upstream call failed (`timeout`, `unreachable`, `protocol`, `http_4xx`, `http_5xx`, `stream`), or
    None."""
    if exchange.upstream_offset is None or exchange.error is None:
        return None
    if exchange.error_code in _UPSTREAM_ERROR_KINDS:
        return _UPSTREAM_ERROR_KINDS[exchange.error_code]
    if exchange.error_type is not None and exchange.error_type != "upstream_error":
        return None
    if exchange.status == 504:
        return "timeout"
    if exchange.status == 502 and exchange.error_type is None:
        return "unreachable"
    if exchange.status < 400:
        return "stream"  # the stream broke after its 200
    return f"http_{exchange.status // 100}xx"


class MetricsObserver:
    """Counts requests, latencies, time to first token, tokens and upstream errors per exchange."""

    def __init__(self, metrics: Metrics, prices: PriceTable | None = None) -> None:
        self.metrics = metrics
        self.prices = prices or PriceTable(defaults=False)
        self._totals: dict[_Children, list[int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._children: dict[tuple[str, str, str, int], _Children] = {}
        metrics.before_render.append(self.flush)

    def observe(self, exchange: Exchange) -> None:
        children = self._observe(exchange)
        total = self._totals.get(children)
        if total is None:
            total = self._totals[children] = [0, 0, 0, 0]
        total[0] += 1
        usage = usage_of(exchange) if exchange.provider else None
        if usage is not None:
            total[1] += usage.prompt
            total[2] += usage.completion
            total[3] += 1

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sluice-metrics")

    async def aclose(self) -> None:
        await stop(self._task)
        self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        """Apply the totals and tallies of what was observed since the last flush to the counters and histograms
        (and the gateway's own: `Metrics.flush`)."""
        self.metrics.flush()
        if not self._totals:
            return
        totals, self._totals = self._totals, {}
        for children, (requests, prompt, completion, reported) in totals.items():
            children.duration.apply()
            children.upstream.apply()
            children.first_token.apply()
            children.requests.inc(requests)
            if prompt:
                children.prompt_tokens.inc(prompt)
            if completion:
                children.completion_tokens.inc(completion)
            if children.price is None:
                if reported and children.model:
                    self.metrics.price_missing.labels(children.model).inc(reported)
            elif prompt or completion:
                children.cost.inc((prompt * children.price.input_per_million
                                   + completion * children.price.output_per_million) / 1_000_000)

    def _observe(self, exchange: Exchange) -> _Children:
        """Observe the histograms and errors of one exchange; return its label children for the counters."""
        provider = exchange.provider or ""
        model = (exchange.model or "") if provider else ""  # unresolved names would be unbounded label values
        route = route_of(exchange)
        key = (route, provider, model, exchange.status)
        children = self._children.get(key)
        if children is None:
            priced = provider and exchange.operation != "mcp"  # an MCP row's "model" is a tool: no price to find
            price = self.prices.lookup(exchange.model, exchange.upstream_model) if priced else None
            children = self._children[key] = _Children(self.metrics, route, provider, model, exchange.status,
                                                        price)
        if exchange.latency_total is not None:
            children.duration.observe(exchange.latency_total)
        if exchange.latency_upstream is not None and provider:
            children.upstream.observe(exchange.latency_upstream)
        if exchange.time_to_first_token is not None:
            children.first_token.observe(exchange.time_to_first_token)
        if exchange.error is not None:
            kind = upstream_error_kind(exchange)
            if kind is not None:
                self.metrics.upstream_errors.labels(provider, kind).inc()
        return children


class _Children:
    """The label children one (endpoint, provider, model, status) counts into, resolved once."""

    __slots__ = ("completion_tokens", "cost", "duration", "first_token", "model", "price", "prompt_tokens",
                 "requests", "upstream")

    def __init__(self, metrics: Metrics, route: str, provider: str, model: str, status: int,
                 price: Price | None) -> None:
        self.price, self.model = price, model
        self.cost = metrics.cost.labels(provider, model)
        self.requests = metrics.requests.labels(route, provider, model, str(status))
        self.duration = HistogramTally(metrics.request_duration.labels(route, provider, model))
        self.upstream = HistogramTally(metrics.upstream_duration.labels(provider, model))
        self.first_token = HistogramTally(metrics.time_to_first_token.labels(provider, model))
        self.prompt_tokens = metrics.tokens.labels(provider, model, "prompt")
        self.completion_tokens = metrics.tokens.labels(provider, model, "completion")
