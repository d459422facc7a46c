"""`GET /health` (liveness) and `GET /health/ready` (readiness), both without a key."""

from __future__ import annotations

import orjson
from pydantic import BaseModel

from sluice.gateway import Gateway
from sluice.http.asgi import Scope
from sluice.keys.principal import Principal
from sluice.readiness import NotReady


class Health(BaseModel):
    """The /health body (its schema in /docs)."""

    status: str
    version: str
    build: str


async def health(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None) -> bytes:
    return orjson.dumps({"status": "ok", "version": gateway.version, "build": gateway.settings.build})


async def ready(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None) -> bytes:
    """200 and the report while the gateway can serve; 503 `NotReady` with the same report (its reasons) when not."""
    report = await gateway.readiness.report()
    if report["reasons"]:
        raise NotReady(report)
    return orjson.dumps(report)
