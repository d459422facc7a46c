"""Counting and logging limiter backend failures: every one counted, at most one warning per interval."""

from __future__ import annotations

import logging
from time import monotonic

from prometheus_client import Counter

logger = logging.getLogger("sluice.limits")

LOG_INTERVAL = 10.0


class FailureReport:
    """Counts each failure in `sluice_limiter_failures_total{operation}`; logs a warning at most every 10 s."""

    def __init__(self, counter: Counter, mode: str) -> None:
        self._children = {op: counter.labels(op) for op in ("acquire", "release", "adjust", "refresh")}
        self._mode = mode
        self._logged_at = -LOG_INTERVAL
        self._unlogged = 0

    def __call__(self, operation: str, error: BaseException) -> None:
        self._children[operation].inc()
        now = monotonic()
        if now - self._logged_at < LOG_INTERVAL:
            self._unlogged += 1
            return
        logger.warning("rate limit backend failed on %s (%s: %s); requests fail %s; %d more failures since the "
                       "last warning", operation, type(error).__name__, error, self._mode, self._unlogged)
        self._logged_at, self._unlogged = now, 0
