"""What a limiter backend is asked (policies and charges) and what it answers (a verdict per request)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

WINDOW_SECONDS = 60
"""Rate policies are per minute: GCRA with a burst of one minute's quota."""

Unit = Literal["requests", "tokens", "concurrent-requests"]


@dataclass(frozen=True, slots=True)
class Policy:
    """One limit on one subject: `key` names its state (without the backend's prefix), `name` its header name.

    `concurrent`, `interval` (seconds per unit), `label` (the quoted name) and `quota_text` are fields, set from
    the others, because every request reads them (the last two for its headers)."""

    name: str
    key: str
    quota: int
    unit: Unit = "requests"
    concurrent: bool = field(init=False, compare=False, repr=False)
    interval: float = field(init=False, compare=False, repr=False)
    label: bytes = field(init=False, compare=False, repr=False)
    quota_text: bytes = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "concurrent", self.unit == "concurrent-requests")
        object.__setattr__(self, "interval", WINDOW_SECONDS / self.quota)
        object.__setattr__(self, "label", b'"%s"' % self.name.encode())
        object.__setattr__(self, "quota_text", b"%d" % self.quota)

    def __hash__(self) -> int:  # the key names the policy; equal policies still compare every field
        return hash(self.key)


# Charges and states are tuples: several are made for every request, and a NamedTuple costs a fifth of a
# frozen dataclass to create.
class Charge(NamedTuple):
    """`cost` units against `policy` (1 for requests and concurrency slots, an estimate for tokens)."""

    policy: Policy
    cost: int = 1


class State(NamedTuple):
    """A policy after a decision: what is left of its quota and the seconds until it is whole again."""

    policy: Policy
    remaining: int
    reset: float


@dataclass(slots=True)
class Verdict:
    """The answer for one request's charges: all committed (`allowed`) or none.

    `ticket` names the concurrency slots taken (release them with the backend's `release`); `violated` is the
    policy that refused, `retry_after` the seconds until it would pass. `states` is empty when the backend
    could not be asked (fail open).
    """

    allowed: bool
    states: list[State] = field(default_factory=list)
    retry_after: float = 0.0
    violated: Policy | None = None
    ticket: str | None = None
    slots: tuple[str, ...] = ()


class BackendFailure(Exception):
    """The backend could not answer in time (unreachable, slow or broken)."""


class Limiter(Protocol):
    """Where limit state lives: this process's memory or a shared Redis."""

    async def acquire(self, charges: Sequence[Charge]) -> Verdict:
        """Check every charge and commit them all, or none; BackendFailure if the state cannot be reached."""
        ...

    def acquire_now(self, charges: Sequence[Charge]) -> Verdict | None:
        """`acquire`'s verdict when it needs no I/O; None (nothing charged) when `acquire` must be awaited."""
        ...

    def spend_now(self, charges: Sequence[Charge]) -> list[State] | None:
        """The common case of `acquire_now`, without its `Verdict`: the states when every charge is a rate charge
        that is allowed without I/O (all committed); None when nothing was committed (a refusal, a concurrency
        slot or I/O to come: then `acquire_now` or `acquire`)."""
        ...

    def release(self, verdict: Verdict) -> None:
        """Give back the concurrency slots of an allowed verdict; returns at once."""
        ...

    def adjust(self, corrections: Sequence[Charge]) -> None:
        """Add (or, with a negative cost, refund) units to rate policies after the fact; returns at once."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
