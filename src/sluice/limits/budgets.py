"""Key budgets: spend accrued from real usage (an Observer), written atomically, and checked before a request.

`observe` prices the usage the upstream reported and adds it to an in-memory charge per (key, period); a task
adds the charges to `key_spend` every `FLUSH_SECONDS` and at shutdown with one atomic upsert, so instances that
share the database never lose each other's updates. A failed write keeps the charges for the next attempt.
`check` compares the key's stored spend (read once per key per `VIEW_TTL_SECONDS`, so instances agree within that
time) plus this process's unwritten charges with the budget, and refuses the request once it is spent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from sluice.config import SluiceConfig
from sluice.db.errors import database_errors
from sluice.db.urls import check_url, database_url, is_sqlite
from sluice.errors import QuotaExceeded, ServiceUnavailable
from sluice.exchange import Exchange
from sluice.keys.principal import Principal
from sluice.limits.options import Budget
from sluice.limits.periods import period_end, period_key, period_key_at
from sluice.limits.spend import Charge, SpendKey
from sluice.pricing import PriceTable
from sluice.serve.exchange_values import openai_view
from sluice.settings import Settings
from sluice.stream_reader import assemble_stream, reply_text, sse_events
from sluice.tasks import stop
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.usage import Usage, usage_of

if TYPE_CHECKING:
    from sluice.db.engine import Database
    from sluice.limits.spend_ledger import SpendStore

logger = logging.getLogger("sluice.budgets")
FLUSH_SECONDS = 1.0
VIEW_TTL_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0
SHUTDOWN_ATTEMPTS = 5
SHUTDOWN_RETRY_SECONDS = 0.5
_MAX_VIEWS = 10_000
_MAX_UNMETERED = 10_000
_BYTES_PER_TOKEN = 4


@dataclass(slots=True)
class _View:
    usd: float
    expires: float


class BudgetLedger:
    """An Observer that charges keys with a budget, and the check that refuses a key whose budget is spent."""

    def __init__(self, db: Database | Callable[[], Database], prices: PriceTable, metrics: Metrics, *,
                 owns_db: bool = False, migrate: bool = False, fail_open: bool = True,
                 flush_seconds: float = FLUSH_SECONDS, ttl_seconds: float = VIEW_TTL_SECONDS) -> None:
        """`db`: the spend database, or what opens it when first needed (until then SQLAlchemy stays unloaded)."""
        self._db: Database | None = None if callable(db) else db
        self._open_db: Callable[[], Database] | None = db if callable(db) else None
        self._store: SpendStore | None = None
        self.prices = prices
        self.metrics = metrics
        self.owns_db = owns_db
        self.migrate = migrate
        self.fail_open = fail_open
        self.flush_seconds = flush_seconds
        self.ttl_seconds = ttl_seconds
        self._pending: dict[SpendKey, Charge] = {}
        self._unmetered: list[Exchange] = []
        self._writing: dict[SpendKey, Charge] = {}
        self._views: dict[SpendKey, _View] = {}
        self._loads: dict[SpendKey, asyncio.Task[float]] = {}
        self._writes = 0
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            assert self._open_db is not None
            self._db = self._open_db()
        return self._db

    @property
    def store(self) -> SpendStore:
        if self._store is None:
            from sluice.limits.spend_ledger import SpendStore

            self._store = SpendStore(self.db)
        return self._store

    # --- charging (Observer) -------------------------------------------------------------------------------------

    def observe(self, exchange: Exchange) -> None:
        """Charge the exchange's usage to its key, in memory; never waits. Keys without a budget cost one check."""
        principal = exchange.principal
        if principal is None or principal.budget is None or exchange.provider is None:
            return
        usage = usage_of(exchange)
        if usage is None and exchange.status >= 400:
            return  # refused or failed before the upstream used anything (a 429 for this budget included)
        if usage is None or exchange.model is None:
            if len(self._unmetered) < _MAX_UNMETERED:
                self._unmetered.append(exchange)  # no usage or no model (passthrough): worked out off the request path
                return
        self._charge(exchange, principal.key_id, principal.budget, usage or estimated_usage(exchange), exchange.model)

    def _charge(self, exchange: Exchange, key_id: str, budget: Budget, usage: Usage, model: str | None) -> None:
        cost = self.prices.cost(model, exchange.upstream_model, usage.prompt, usage.completion)
        charge = Charge(cost or 0.0, 1, usage.prompt, usage.completion)
        key = (key_id, period_key_at(budget.period, exchange.started_at))
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = charge
        else:
            pending.add(charge)

    def _meter(self) -> None:
        """Charge the exchanges `observe` put aside: those that reported no usage are charged an estimate (a stream
        without `include_usage`), and provider passthrough calls are priced by the model their request names."""
        unmetered, self._unmetered = self._unmetered, []
        for exchange in unmetered:
            principal = exchange.principal
            assert principal is not None and principal.budget is not None
            try:
                usage = usage_of(exchange) or estimated_usage(exchange)
            except Exception:  # noqa: BLE001  (an odd reply must not stop the ledger: charge the request alone)
                logger.warning("spend ledger: cannot estimate the usage of request %s", exchange.request_id)
                usage = Usage()
            self._charge(exchange, principal.key_id, principal.budget, usage,
                         exchange.model or requested_model(exchange))

    # --- checking ------------------------------------------------------------------------------------------------

    async def check(self, principal: Principal) -> None:
        """QuotaExceeded (429 insufficient_quota) when the key's spend in the current period reaches its budget."""
        budget = principal.budget
        if budget is None:
            return
        now = datetime.now(UTC)
        key = (principal.key_id, period_key(budget.period, now))
        spent = await self._stored(key) + self._unwritten(key)
        if spent >= budget.usd:
            self.metrics.budget_rejections.inc()
            raise QuotaExceeded(quota_message(budget, now))

    async def spent(self, key_id: str, budget: Budget) -> float:
        """The key's spend in the current period, as `check` sees it."""
        key = (key_id, period_key(budget.period, datetime.now(UTC)))
        return await self._stored(key) + self._unwritten(key)

    def _unwritten(self, key: SpendKey) -> float:
        pending, writing = self._pending.get(key), self._writing.get(key)
        return (pending.usd if pending is not None else 0.0) + (writing.usd if writing is not None else 0.0)

    async def _stored(self, key: SpendKey) -> float:
        """The key's stored spend: cached for the TTL, read by one query per key however many requests wait."""
        view = self._views.get(key)
        if view is not None and view.expires > time.monotonic():
            return view.usd
        load = self._loads.get(key)
        if load is None:
            load = self._loads[key] = asyncio.create_task(self._load(key, view))
        return await asyncio.shield(load)

    async def _load(self, key: SpendKey, previous: _View | None) -> float:
        writes = self._writes
        try:
            usd = await asyncio.wait_for(self.store.spent(*key), READ_TIMEOUT_SECONDS)
        except database_errors(TimeoutError) as exc:
            self.metrics.budget_failures.labels("read").inc()
            if not self.fail_open:
                logger.warning("budget check failed, refusing the request (limits.on_backend_failure: closed): %s",
                               exc)
                raise ServiceUnavailable("The spend database is unavailable; try again later.") from None
            logger.warning("budget check failed, using the last known spend (limits.on_backend_failure: open): %s",
                           exc)
            usd = previous.usd if previous is not None else 0.0
        finally:
            self._loads.pop(key, None)
        # A write that landed during the read may be missing from it: read again at the next check.
        expires = time.monotonic() + (self.ttl_seconds if writes == self._writes else 0.0)
        if len(self._views) >= _MAX_VIEWS:
            self._views.clear()
        self._views[key] = _View(usd, expires)
        return usd

    # --- writing -------------------------------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Add the pending charges to the database; on failure they stay pending (logged, counted). True if done."""
        self._meter()
        async with self._flush_lock:
            if not self._pending:
                return True
            batch, self._pending = self._pending, {}
            self._writing = batch
            try:
                await self.store.add(batch, datetime.now(UTC))
            except Exception as exc:  # noqa: BLE001  (whatever went wrong, the charges are kept and retried)
                self._restore(batch)
                self.metrics.budget_failures.labels("write").inc()
                logger.warning("spend ledger: writing %d charges failed, will retry: %s", len(batch), exc)
                return False
            else:
                self._writes += 1
                for key, charge in batch.items():
                    view = self._views.get(key)
                    if view is not None:
                        view.usd += charge.usd
                return True
            finally:
                self._writing = {}
                self.metrics.budget_unflushed.set(sum(charge.usd for charge in self._pending.values()))

    def _restore(self, batch: dict[SpendKey, Charge]) -> None:
        for key, charge in batch.items():
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = charge
            else:
                pending.add(charge)

    async def start(self) -> None:
        if self.migrate:
            from sluice.db.migrate import upgrade

            await upgrade(self.db)
        self._task = asyncio.create_task(self._run(), name="sluice-spend-ledger")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def aclose(self) -> None:
        """Stop the task and write what is pending (a few attempts); what cannot be written is logged as an error
        with its amounts."""
        await stop(self._task)
        for _ in range(SHUTDOWN_ATTEMPTS):
            if await self.flush():
                break
            await asyncio.sleep(SHUTDOWN_RETRY_SECONDS)
        if self._pending:
            lost = ", ".join(f"{key_id} {period}: ${charge.usd:.6f} ({charge.requests} requests)"
                             for (key_id, period), charge in sorted(self._pending.items()))
            logger.error("spend ledger: charges not written at shutdown (add them by hand): %s", lost)
        if self.owns_db and self._db is not None:
            await self._db.aclose()


def build_ledger(config: SluiceConfig, settings: Settings, metrics: Metrics, prices: PriceTable,
                 shared: Database | None = None) -> BudgetLedger:
    """The ledger on the request log's database: `shared` (the request log's own) or a new engine on its URL.

    With its own engine it migrates at start-up as the request log would (`request_log.auto_migrate`; unset
    means SQLite only), when any key can have a budget from the config."""
    log = config.request_log
    url = database_url(log, settings)
    check_url(url)  # an unusable URL fails start-up, not the first budget check

    def open_db() -> Database:
        from sluice.db.engine import Database

        return Database(url, timeout=log.write_timeout_seconds)

    budgets = config.limits.default_budget is not None or any(key.budget for key in config.static_keys)
    migrate = shared is None and budgets and (log.auto_migrate or (log.auto_migrate is None and is_sqlite(url)))
    return BudgetLedger(shared or open_db, prices, metrics, owns_db=shared is None, migrate=bool(migrate),
                        fail_open=config.limits.on_backend_failure == "open")


def requested_model(exchange: Exchange) -> str | None:
    """The `model` a JSON request body names (a passthrough call's), or None."""
    try:
        body = orjson.loads(exchange.request_body or b"null")
    except orjson.JSONDecodeError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def estimated_usage(exchange: Exchange) -> Usage:
    """About four bytes per token: of the request body, and of the reply's text."""
    exchange = openai_view(exchange)  # type: ignore[assignment]  # an Exchange stays an Exchange
    if exchange.stream:
        text = assemble_stream(sse_events(exchange.chunks))[1]
    else:
        try:
            text = reply_text(orjson.loads(exchange.response_body or b"null"))
        except orjson.JSONDecodeError:
            text = None
    prompt = -(-len(exchange.request_body or b"") // _BYTES_PER_TOKEN)
    completion = -(-len((text or "").encode()) // _BYTES_PER_TOKEN)
    return Usage(prompt, completion, prompt + completion)


def quota_message(budget: Budget, now: datetime) -> str:
    """OpenAI's wording, with the budget and when it resets."""
    ends = period_end(budget.period, now)
    if ends is None:
        return (f"You exceeded your current quota: this key's total budget of ${_usd(budget.usd)} is spent; "
                "it does not reset.")
    return (f"You exceeded your current quota: this key's {budget.period} budget of ${_usd(budget.usd)} is spent; "
            f"it resets at {ends.strftime('%Y-%m-%d %H:%M')} UTC.")


def _usd(amount: float) -> str:
    text = f"{amount:.2f}"
    return text if float(text) == amount else f"{amount:.6f}".rstrip("0")
