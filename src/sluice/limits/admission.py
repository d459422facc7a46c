"""Admission: whether a request may go upstream now, by its client address, key, model and budget.

The routes call `admit_ip` before authentication (only when `limits.per_ip` is set) and `admit` once the key
(and, on the OpenAI routes, the model) is known (only when `needed` says so: a key with no limits and no
budget on an unlimited model costs one branch). Each returns a `Grant`, whose headers go on the response and
whose `release()` gives back its concurrency slots when the response (or stream) ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sluice.errors import ServiceUnavailable
from sluice.limits.backend import BackendFailure, Charge, Limiter, Policy, State, Verdict
from sluice.limits.client_ip import ClientAddress
from sluice.limits.failures import FailureReport
from sluice.limits.headers import Headers, limit_headers, policy_line, throttled
from sluice.limits.options import Limits, RateLimit
from sluice.limits.policies import KeyPolicies, model_policies, policies_of
from sluice.limits.tokens import TokenCharger, estimate_tokens

if TYPE_CHECKING:
    from prometheus_client import Counter

    from sluice.config import ModelConfig
    from sluice.exchange import Exchange
    from sluice.keys.principal import Principal

_ADDRESSES_KEPT = 10_000
"""Client addresses whose charges are kept built (the same few addresses send most requests)."""
_PLANS_KEPT = 10_000
"""Keys (by model) whose plans are kept built."""
_SUBJECTS = {"key": "this API key", "ip": "your address", "model": "model"}
_new_tuple = tuple.__new__
"""Makes `Charge`s without a NamedTuple's own `__new__` (a Python call)."""
_NO_VERDICTS: list[Verdict] = []
"""A grant's verdicts until one holds slots (shared, never appended to: most grants hold none)."""


class BudgetCheck(Protocol):
    """The spend check (`limits/budgets.py`): raises QuotaExceeded when the key's budget is spent."""

    async def check(self, principal: Principal) -> None: ...


class Grant:
    """What a request was admitted with: the states its headers show and the slots to release at its end.

    `line` is the `RateLimit-Policy` value of `states` (each plan's, built once, joined in admission order);
    `verdicts` holds only the verdicts that took concurrency slots."""

    __slots__ = ("_limiter", "states", "verdicts", "line")

    def __init__(self, limiter: Limiter, states: list[State] | None = None, line: bytes = b"") -> None:
        self._limiter = limiter
        self.states: list[State] = [] if states is None else states
        self.verdicts: list[Verdict] = _NO_VERDICTS
        self.line = line

    def headers(self) -> Headers:
        return limit_headers(self.states, line=self.line) if self.states else []

    def release(self) -> None:
        """Give back every slot (once: a second call does nothing)."""
        verdicts = self.verdicts
        if verdicts:
            for verdict in verdicts:
                if verdict.slots:
                    self._limiter.release(verdict)
            verdicts.clear()

    def hold(self, verdict: Verdict) -> None:
        """Keep `verdict`'s concurrency slots until `release`."""
        if self.verdicts is _NO_VERDICTS:
            self.verdicts = [verdict]
        else:
            self.verdicts.append(verdict)


class Plan:
    """What one request of a subject is charged, built once per key (and model) and its limits: the policies,
    the charges of a request without a token estimate (tokens cost 0 there), where the token policies are, and
    their `RateLimit-Policy` value."""

    __slots__ = ("policies", "flat", "tokens", "unestimated", "line")

    def __init__(self, policies: tuple[Policy, ...]) -> None:
        self.policies = policies
        self.flat = tuple(Charge(p, 0 if p.unit == "tokens" else 1) for p in policies)
        self.tokens = tuple(i for i, p in enumerate(policies) if p.unit == "tokens")
        self.unestimated = [self.flat[i] for i in self.tokens]
        self.line = policy_line(policies)

    def charges(self, estimate: int) -> Sequence[Charge]:
        """The charges with `estimate` tokens (at most each token policy's quota)."""
        if not estimate or not self.tokens:
            return self.flat
        charges = list(self.flat)
        policies = self.policies
        for index in self.tokens:
            policy = policies[index]
            charges[index] = _new_tuple(Charge, (policy, estimate if estimate < policy.quota else policy.quota))
        return charges


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
        self._plans: dict[tuple[str, str, bool], tuple[RateLimit, Plan | None]] = {}
        self._address_charges: dict[str, tuple[Charge, ...]] = {}
        self._ip_line = policy_line(self.per_ip) if self.per_ip else b""
        self._client_address = ClientAddress(limits.trusted_proxies)
        self._fail_closed = limits.on_backend_failure == "closed"
        self._report = report
        self._rejections = {subject: rejections.labels(subject) for subject in _SUBJECTS}
        self.tokens = TokenCharger(limiter, self._key_policies, self.models)
        """The observer that charges the tokens a call really used (register it in the gateway's observers)."""

    def needed(self, principal: Principal, model: str | None = None) -> bool:
        """Whether `admit` has anything to check for this caller (and model)."""
        return principal.budget is not None or not principal.limits.unlimited or model in self.models

    def admit_ip_now(self, scope: Any) -> Grant | None:
        """`admit_ip` when the limiter decides without I/O (memory, or a Redis allowance); None when `admit_ip`
        must be awaited (nothing was charged)."""
        charges = self._address_charges.get(self._client_address(scope)) or self._ip_charges(scope)
        limiter = self.limiter
        states = limiter.spend_now(charges)
        if states is not None:  # the common case (allowed, no slot), as `_settle` would do it
            return Grant(limiter, states, self._ip_line)
        verdict = limiter.acquire_now(charges)
        if verdict is None:
            return None
        grant = Grant(limiter)
        self._settle(grant, verdict, self._ip_line, "ip")
        return grant

    async def admit_ip(self, scope: Any) -> Grant:
        """Charge the client's address (before authentication); Throttled (429) when it is over its limits."""
        grant = Grant(self.limiter)
        await self._charge(grant, self._ip_charges(scope), self._ip_line, "ip")
        return grant

    def _ip_charges(self, scope: Any) -> tuple[Charge, ...]:
        """The charges of the request's client address, built once per address."""
        address = self._client_address(scope)
        charges = self._address_charges.get(address)
        if charges is None:
            if len(self._address_charges) >= _ADDRESSES_KEPT:
                self._address_charges.clear()
            charges = self._address_charges[address] = tuple(
                Charge(Policy(p.name, f"rl:ip:{address}{p.key}", p.quota, p.unit)) for p in self.per_ip)
        return charges

    def admit_now(self, principal: Principal, grant: Grant | None = None, *, model: str | None = None,
                  body: dict[str, Any] | None = None, size: int = 0, exchange: Exchange | None = None,
                  per_key: bool = True) -> Grant | None:
        """`admit` when it is decided without I/O: no budget to check, and the limiter answers from memory (or a
        Redis allowance); None when `admit` must be awaited (nothing was charged). Most requests take this way,
        which saves `admit`'s three coroutines."""
        if per_key and principal.budget is not None and self.budgets is not None:
            return None
        found = self._plans.get((principal.key_id, model or "", per_key))
        plan = found[1] if found is not None and found[0] is principal.limits else self._plan(
            principal.key_id, principal.limits, model or "", per_key)
        if plan is None:
            return grant or Grant(self.limiter)
        tokens = plan.tokens
        charges = plan.charges(estimate_tokens(body, size)) if tokens and body is not None else plan.flat
        limiter = self.limiter
        states = limiter.spend_now(charges)
        if states is not None:  # the common case (allowed, no slot), as `_settle` would do it
            if grant is None:
                grant = Grant(limiter, states, plan.line)
            else:
                grant.states += states
                grant.line = grant.line + b", " + plan.line if grant.line else plan.line
        else:
            verdict = limiter.acquire_now(charges)
            if verdict is None:
                return None
            if grant is None:
                grant = Grant(limiter)
            self._settle(grant, verdict, plan.line, "key", model)
        if exchange is not None and tokens:
            self.tokens.expect(exchange, [charges[tokens[0]]] if len(tokens) == 1 else [charges[i] for i in tokens])
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
        plan = self._plan(principal.key_id, principal.limits, model or "", per_key)
        if plan is None:
            return grant
        tokens = plan.tokens
        charges = plan.charges(estimate_tokens(body, size)) if tokens and body is not None else plan.flat
        charged = await self._charge(grant, charges, plan.line, "key", model)
        if exchange is not None and tokens:
            self.tokens.expect(exchange, [charges[i] for i in tokens] if charged else plan.unestimated)
        return grant

    def _plan(self, key_id: str, limits: RateLimit, model: str, per_key: bool) -> Plan | None:
        """The plan of a request of `key_id` (with `limits`) for `model`; None when nothing limits it. Checked
        against the limits it was built from as `KeyPolicies` does (identity first; a cached principal carries
        the same object on every request)."""
        index = (key_id, model, per_key)
        found = self._plans.get(index)
        if found is not None:
            if found[0] is limits:
                return found[1]
            if found[0] == limits:
                self._plans[index] = (limits, found[1])  # the next request is an identity hit
                return found[1]
        models = self.models.get(model, ())
        policies = self._key_policies(key_id, limits) + models if per_key else models
        plan = Plan(policies) if policies else None
        if len(self._plans) >= _PLANS_KEPT:
            self._plans.clear()
        self._plans[index] = (limits, plan)
        return plan

    async def _charge(self, grant: Grant, charges: Sequence[Charge], line: bytes, subject: str,
                      model: str | None = None) -> bool:
        """Acquire `charges` (whose `RateLimit-Policy` value is `line`) into `grant`; False when the backend failed
        and the request goes through anyway."""
        try:
            verdict = await self.limiter.acquire(charges)
        except BackendFailure as exc:
            self._report("acquire", exc)
            if self._fail_closed:
                raise ServiceUnavailable("Rate limits cannot be checked right now; please retry shortly.") from None
            return False
        self._settle(grant, verdict, line, subject, model)
        return True

    def _settle(self, grant: Grant, verdict: Verdict, line: bytes, subject: str, model: str | None = None) -> None:
        """Add `verdict` to `grant`; Throttled (429) when it refused."""
        states = verdict.states
        if states:
            grant.states += states
            grant.line = grant.line + b", " + line if grant.line else line
        if verdict.allowed:
            if verdict.slots:
                grant.hold(verdict)
            return
        violated = verdict.violated
        assert violated is not None
        kind = violated.name.partition("-")[0]
        self._rejections[kind].inc()
        who = f"model {model!r}" if kind == "model" else _SUBJECTS[kind]
        raise throttled(grant.states, violated, verdict.retry_after, who)
