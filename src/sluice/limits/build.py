"""Builds the limiter the config asks for (memory, or Redis when configured) and the admission step on it."""

from __future__ import annotations

from sluice.config import ConfigError, SluiceConfig
from sluice.limits.admission import Admission, BudgetCheck
from sluice.limits.backend import Limiter
from sluice.limits.failures import FailureReport
from sluice.limits.memory import MemoryLimiter
from sluice.telemetry.metrics import Metrics


def build_admission(config: SluiceConfig, redis_url: str | None, metrics: Metrics,
                    budgets: BudgetCheck | None = None) -> Admission:
    """`limits.backend`: `memory`, `redis` (SLUICE_REDIS_URL required), or `auto` (Redis when the URL is set)."""
    limits = config.limits
    report = FailureReport(metrics.limiter_failures, limits.on_backend_failure)
    backend = limits.backend
    if backend == "auto":
        backend = "redis" if redis_url else "memory"
    limiter: Limiter
    if backend == "redis":
        if not redis_url:
            raise ConfigError("limits.backend is 'redis' but SLUICE_REDIS_URL is not set")
        from sluice.limits.redis_backend import RedisLimiter  # redis-py adds ~22 MB resident: only when used

        limiter = RedisLimiter(redis_url, limits.redis_prefix, limits.redis_timeout_seconds, report,
                               share=limits.redis_local_share)
    else:
        limiter = MemoryLimiter()
    return Admission(limits, config.models, limiter, report, metrics.rate_limited, budgets)
