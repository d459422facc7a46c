"""Token limits: an estimate charged before the call, corrected by the usage the upstream reports after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sluice.limits.backend import Charge, Limiter, Policy
from sluice.telemetry.usage import usage_of

if TYPE_CHECKING:
    from sluice.exchange import Exchange
    from sluice.limits.policies import KeyPolicies

DEFAULT_COMPLETION_TOKENS = 256
"""Assumed reply length when a request sets no `max_tokens` (corrected once the real usage is known)."""
_MAX_PENDING = 100_000
_new_tuple = tuple.__new__


def estimate_tokens(body: Mapping[str, Any], size: int) -> int:
    """About four bytes of request per prompt token, plus the reply's `max_tokens` (or a modest default)."""
    if "input" in body and "messages" not in body and "prompt" not in body:
        return size // 4 + 1  # embeddings: no reply tokens
    reply = body.get("max_completion_tokens") or body.get("max_tokens")
    return size // 4 + (reply if isinstance(reply, int) and reply > 0 else DEFAULT_COMPLETION_TOKENS)


class TokenCharger:
    """The Observer that corrects each call's token charge: its estimate (if any) becomes the reported usage.

    Calls admitted without an estimate (provider passthrough, project steps) are charged their whole usage.
    A failed call that reports no usage is refunded; a successful one that reports none keeps its estimate.
    """

    def __init__(self, limiter: Limiter, key_policies: KeyPolicies, models: Mapping[str, tuple[Policy, ...]]
                 ) -> None:
        self._limiter = limiter
        self._key_policies = key_policies
        self._models = models
        self._pending: dict[int, Sequence[Charge]] = {}

    def expect(self, exchange: Exchange, charges: Sequence[Charge]) -> None:
        """Remember what `exchange` was charged in advance (its token policies and estimates)."""
        if len(self._pending) >= _MAX_PENDING:
            self._pending.clear()
        self._pending[id(exchange)] = charges

    def observe(self, exchange: Exchange) -> None:
        principal = exchange.principal
        if principal is None:
            return
        charged = self._pending.pop(id(exchange), None)
        if charged is None:
            charged = self._unestimated(exchange)
            if not charged:
                return
        if exchange.cache == "HIT":
            used = 0  # answered by the response cache: no tokens were used upstream, the estimate is refunded
        else:
            usage = usage_of(exchange)
            if usage is not None:
                used = usage.total
            elif 200 <= exchange.status < 300:
                return
            else:
                used = 0
        if len(charged) == 1:  # one token policy (the key's or the model's): the common case, without a list built
            policy, cost = charged[0]
            if used != cost:
                self._limiter.adjust((_new_tuple(Charge, (policy, used - cost)),))
            return
        corrections = [Charge(charge.policy, used - charge.cost) for charge in charged if used != charge.cost]
        if corrections:
            self._limiter.adjust(corrections)

    def _unestimated(self, exchange: Exchange) -> list[Charge]:
        principal = exchange.principal
        assert principal is not None
        if principal.limits.tokens_per_minute is None and exchange.model not in self._models:
            return []
        policies = self._key_policies(principal.key_id, principal.limits) + self._models.get(exchange.model or "", ())
        return [Charge(policy, 0) for policy in policies if policy.unit == "tokens"]
