"""Admission: whether a request may go upstream now, by its client address, key, model and budget.

The routes call `admit_ip` before authentication (only when `limits.per_ip` is set) and `admit` once the key
(and, on the OpenAI routes, the model) is known (only when `needed` says so: a key with no limits and no
budget on an unlimited model costs one branch). Each returns a `Grant`, whose headers go on the response and
whose `release()` gives back its concurrency slots when the response (or stream) ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from sluice.errors import ServiceUnavailable
from sluice.limits.backend import BackendFailure, Charge, Limiter, Policy, State, Verdict
from sluice.limits.client_ip import ClientAddress
from sluice.limits.failures import FailureReport
from sluice.limits.headers import Headers, limit_headers, throttled
from sluice.limits.options import Limits
from sluice.limits.policies import KeyPolicies, model_policies, policies_of
from sluice.limits.tokens import TokenCharger, estimate_tokens

if TYPE_CHECKING:
    from prometheus_client import Counter

    from sluice.config import ModelConfig
    from sluice.exchange import Exchange
    from sluice.keys.principal import Principal

_ADDRESSES_KEPT = 10_000
"""Client addresses whose charges are kept built (the same few addresses send most requests)."""
_SUBJECTS = {"key": "this API key", "ip": "your address", "model": "model"}


class BudgetCheck(Protocol):
    """The spend check (`limits/budgets.py`): raises QuotaExceeded when the key's budget is spent."""

    async def check(self, principal: Principal) -> None: ...


class Grant:
    """What a request was admitted with: the states its headers show and the slots to release at its end."""

    __slots__ = ("_limiter", "states", "verdicts")

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self.states: list[State] = []
        self.verdicts: list[Verdict] = []

    def headers(self) -> Headers:
        return limit_headers(self.states) if self.states else []

    def release(self) -> None:
        """Give back every slot (once: a second call does nothing)."""
        for verdict in self.verdicts:
            if verdict.slots:
                self._limiter.release(verdict)
        self.verdicts.clear()


class Admission:
    """The limits of one config, kept by `limiter`; `budgets` is the spend check, when budgets are kept."""

    def __init__(self, limits: Limits, models: Iterable[ModelConfig], limiter: Limiter, report: FailureReport,
                 rejections: Counter, budgets: BudgetCheck | None = None) -> None:
        self.limiter = limiter
        self.budgets = budgets
        self.per_ip = policies_of(limits.per_ip, "ip", "")
        """The per-address policies (keys without the address); empty: `admit_ip` need not be called."""
        self.models = model_policies(models)
        self._key_policies = KeyPolicies()
        self._address_charges: dict[str, list[Charge]] = {}
        self._client_address = ClientAddress(limits.trusted_proxies)
        self._fail_closed = limits.on_backend_failure == "closed"
        self._report = report
        self._rejections = {subject: rejections.labels(subject) for subject in _SUBJECTS}
        self.tokens = TokenCharger(limiter, self._key_policies, self.models)
        """The observer that charges the tokens a call really used (register it in the gateway's observers)."""

    def needed(self, principal: Principal, model: str | None = None) -> bool:
        """Whether `admit` has anything to check for this caller (and model)."""
        return principal.budget is not None or not principal.limits.unlimited or model in self.models

    async def admit_ip(self, scope: Any) -> Grant:
        """Charge the client's address (before authentication); Throttled (429) when it is over its limits."""
        address = self._client_address(scope)
        charges = self._address_charges.get(address)
        if charges is None:
            if len(self._address_charges) >= _ADDRESSES_KEPT:
                self._address_charges.clear()
            charges = self._address_charges[address] = [
                Charge(Policy(p.name, f"rl:ip:{address}{p.key}", p.quota, p.unit)) for p in self.per_ip]
        grant = Grant(self.limiter)
        await self._charge(grant, charges, "ip")
        return grant

    async def admit(self, principal: Principal, grant: Grant | None = None, *, model: str | None = None,
                    body: dict[str, Any] | None = None, size: int = 0, exchange: Exchange | None = None,
                    per_key: bool = True) -> Grant:
        """Check the budget, then charge the key's and the model's policies at once (the token policies with an
        estimate from `body` and its `size` in bytes, corrected after the call for `exchange`; without a body
        they are only checked, not charged). Adds to `grant` (the address's) when given. `per_key=False`
        charges the model's policies only (a call inside a request the key was already admitted for)."""
        grant = grant or Grant(self.limiter)
        if per_key and principal.budget is not None and self.budgets is not None:
            await self.budgets.check(principal)
        models = self.models.get(model or "", ())
        policies = self._key_policies(principal.key_id, principal.limits) + models if per_key else models
        if not policies:
            return grant
        estimate = estimate_tokens(body, size) if body is not None else 0
        charges = [Charge(p, min(estimate, p.quota) if p.unit == "tokens" else 1) for p in policies]
        charged = await self._charge(grant, charges, "key", model)
        if exchange is not None and any(p.unit == "tokens" for p in policies):
            self.tokens.expect(exchange, [c if charged else Charge(c.policy, 0) for c in charges
                                          if c.policy.unit == "tokens"])
        return grant

    async def _charge(self, grant: Grant, charges: list[Charge], subject: str, model: str | None = None) -> bool:
        """Acquire `charges` into `grant`; False when the backend failed and the request goes through anyway."""
        try:
            verdict = await self.limiter.acquire(charges)
        except BackendFailure as exc:
            self._report("acquire", exc)
            if self._fail_closed:
                raise ServiceUnavailable("Rate limits cannot be checked right now; please retry shortly.") from None
            return False
        grant.states.extend(verdict.states)
        if verdict.allowed:
            grant.verdicts.append(verdict)
            return True
        violated = verdict.violated
        assert violated is not None
        kind = violated.name.partition("-")[0]
        self._rejections[kind].inc()
        who = f"model {model!r}" if kind == "model" else _SUBJECTS[kind]
        raise throttled(grant.states, violated, verdict.retry_after, who)
