"""`GET /metrics`: Prometheus text; whether it needs a key is the `metrics.require_key` setting."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from sluice.errors import AuthenticationFailed
from sluice.http.auth import CurrentGateway
from sluice.keys.static import presented_key

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, gateway: CurrentGateway) -> Response:
    if gateway.config.metrics.require_key:
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not key:
            raise AuthenticationFailed("/metrics needs an API key (metrics.require_key is true in the config); send "
                                       "'Authorization: Bearer KEY', or set metrics.require_key: false.")
        gateway.keys.authenticate(key)
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)
