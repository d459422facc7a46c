"""One provider's circuit breaker and retry policy around its calls: what the routes call instead of the provider.

The first try costs a couple of attribute checks more than calling the provider directly; the retry loop and
the breaker's bookkeeping of failures only run once a try has failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TypeVar

from sluice.config import SluiceConfig
from sluice.errors import GatewayError, UpstreamError
from sluice.providers.base import Provider, UpstreamRequest
from sluice.routing.breaker import CircuitBreaker, CircuitOpen
from sluice.routing.retry import RetryPolicy, is_failure, retry_reason
from sluice.telemetry.metrics import Metrics

T = TypeVar("T")


class UpstreamGuard:
    """`send` and `stream` of one provider, refused while its breaker is open and retried (bounded, with
    backoff) when a try fails before the upstream sent a successful reply's headers. A service instance's guard
    has no provider: its caller makes the call and reports it (`admit`, `answered`, `judge`)."""

    __slots__ = ("provider", "name", "breaker", "retry", "_metrics")

    def __init__(self, provider: Provider | None, breaker: CircuitBreaker | None, retry: RetryPolicy | None,
                 metrics: Metrics, name: str | None = None) -> None:
        self.provider = provider
        self.name = name if name is not None else provider.name if provider is not None else ""
        """The `provider` label of the retries metric."""
        self.breaker = breaker
        self.retry = retry if retry is not None and retry.attempts > 0 else None
        self._metrics = metrics

    async def send(self, request: UpstreamRequest, *, retry: bool = True) -> bytes:
        """The provider's complete reply (see `Provider.send`); `retry=False`: one try (the caller has somewhere
        else to send the call, which beats waiting out a backoff here)."""
        assert self.provider is not None
        return await self._call(self.provider.send, request, retry)

    async def stream(self, request: UpstreamRequest, *, retry: bool = True) -> AsyncGenerator[bytes, None]:
        """The provider's open stream (see `Provider.stream`); retried only until the upstream sent its 200."""
        assert self.provider is not None
        return await self._call(self.provider.stream, request, retry)

    def admit(self) -> None:
        """Raise CircuitOpen (503) while the breaker refuses calls (for callers that make the call themselves)."""
        if self.breaker is not None:
            self.breaker.admit()

    def answered(self, status: int) -> None:
        """The upstream answered with `status`: a 5xx is a failure, anything else a sign of health."""
        if self.breaker is not None:
            if status >= 500:
                self.breaker.failed()
            else:
                self.breaker.succeeded()

    def broke(self) -> None:
        """A stream the upstream had opened broke midway (reset, read timeout): a failure; never retried."""
        if self.breaker is not None:
            self.breaker.failed()

    def judge(self, error: BaseException) -> None:
        """Report a failed call's `error` to the breaker (a failure, an answer, or no verdict)."""
        breaker = self.breaker
        if breaker is None:
            return
        if isinstance(error, GatewayError) and is_failure(error):
            breaker.failed()
        elif isinstance(error, UpstreamError):
            breaker.succeeded()  # a 4xx: the upstream is up and answering
        else:
            breaker.released()

    async def _call(self, call: Callable[[UpstreamRequest], Awaitable[T]], request: UpstreamRequest,
                    retry: bool = True) -> T:
        breaker = self.breaker
        if breaker is None and self.retry is None:
            return await call(request)
        if breaker is not None:
            breaker.admit()
        try:
            result = await call(request)
        except GatewayError as exc:
            if not retry:
                self.judge(exc)
                raise
            return await self._recover(call, request, exc)
        except BaseException as exc:
            self.judge(exc)
            raise
        if breaker is not None:
            breaker.succeeded()
        return result

    async def _recover(self, call: Callable[[UpstreamRequest], Awaitable[T]], request: UpstreamRequest,
                       error: GatewayError) -> T:
        """Judge the failed try, then retry while the error, the attempts left and the breaker allow it."""
        retry = 0
        while True:
            self.judge(error)
            retry += 1
            reason = retry_reason(error)
            pause = self.retry.delay(retry, error) \
                if self.retry is not None and reason is not None and retry <= self.retry.attempts else None
            if pause is None:
                raise error
            await asyncio.sleep(pause)
            try:
                self.admit()
            except CircuitOpen:
                raise error from None  # the breaker opened meanwhile: the caller sees the upstream's own error
            self._metrics.upstream_retries.labels(self.name, reason).inc()
            try:
                result = await call(request)
            except GatewayError as exc:
                error = exc
                continue
            except BaseException as exc:
                self.judge(exc)
                raise
            if self.breaker is not None:
                self.breaker.succeeded()
            return result


def build_guards(config: SluiceConfig, providers: Mapping[str, Provider], metrics: Metrics
                 ) -> dict[str, UpstreamGuard]:
    """A guard per provider for its passthrough requests, from its `breaker:` and `retries:` settings (the mock
    provider has neither); each model's deployments have guards of their own (`deployment_guard`)."""
    return {name: _guard(config, provider, metrics) for name, provider in providers.items()}


def deployment_guard(config: SluiceConfig, provider: Provider, upstream_model: str, metrics: Metrics, *,
                     cool_down_at_once: bool = False) -> UpstreamGuard:
    """The guard of one deployment: its provider's settings, its own breaker (opened by one failure when
    `cool_down_at_once`: traffic then goes where the model can fall back to)."""
    return _guard(config, provider, metrics, f"{provider.name}/{upstream_model}", cool_down_at_once)


def _guard(config: SluiceConfig, provider: Provider, metrics: Metrics, deployment: str = "",
           cool_down_at_once: bool = False) -> UpstreamGuard:
    entry = config.providers[provider.name]
    breaker_options = getattr(entry, "breaker", None)
    retry_options = getattr(entry, "retries", None)
    breaker = None
    if breaker_options is not None and breaker_options.enabled:
        if cool_down_at_once:
            breaker_options = breaker_options.model_copy(update={"failure_threshold": 1})
        breaker = CircuitBreaker(provider.name, breaker_options, metrics, deployment=deployment)
    retry = RetryPolicy(retry_options) if retry_options is not None else None
    return UpstreamGuard(provider, breaker, retry, metrics)
