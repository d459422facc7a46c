"""Rate limits on the FastAPI routes (projects, admin): the client address before
authentication, then the key, for the whole request.

Both are FastAPI dependencies with `yield` (scope "request"), so a concurrency slot is held until the response,
streamed or not, has been sent. The rate-limit headers are added to responses the route lets FastAPI build (a
route that returns its own `Response` object gets only the 429's headers). Each upstream call a project makes
is charged its tokens afterwards, like any call (`limits/tokens.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Depends, Request, Response

from sluice.http.auth import CurrentGateway, CurrentPrincipal
from sluice.limits.admission import Grant
from sluice.pipeline.flow import Flow
from sluice.pipeline.gate import ADDRESS_ADMITTED
from sluice.pipeline.wrapped import FLOW_KEY


async def address_admission(request: Request, gateway: CurrentGateway) -> AsyncIterator[None]:
    """`limits.per_ip`, checked before the key is (already, before the body was read: pipeline/gate.py)."""
    if not gateway.admission.per_ip:
        yield
        return
    if request.scope.get(ADDRESS_ADMITTED):
        flow: Flow = request.scope[FLOW_KEY]
        request.state.sluice_grant = flow.grant  # the flow releases it when the request ends
        yield
        return
    grant = request.state.sluice_grant = await gateway.admission.admit_ip(request.scope)
    try:
        yield
    finally:
        grant.release()


async def key_admission(request: Request, response: Response, gateway: CurrentGateway,
                        principal: CurrentPrincipal) -> AsyncIterator[None]:
    """The key's budget and its rate and concurrency limits (its token limit is checked, not charged, here)."""
    grant: Grant | None = getattr(request.state, "sluice_grant", None)
    if gateway.admission.needed(principal):
        grant = await gateway.admission.admit(principal, grant)
    if grant is not None:
        for name, value in grant.headers():
            response.headers[name.decode()] = value.decode()
    try:
        yield
    finally:
        if grant is not None:
            grant.release()


AddressLimit = Depends(address_admission)
"""`limits.per_ip` on a route; list it before the route's authentication (admin routes, /metrics)."""
KeyLimit = Depends(key_admission)
"""The caller's key limits on a route that authenticates with `CurrentPrincipal` (it implies authentication)."""
