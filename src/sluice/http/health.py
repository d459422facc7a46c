"""`GET /health`: liveness without a key."""

from __future__ import annotations

import orjson
from pydantic import BaseModel

from sluice.gateway import Gateway
from sluice.http.asgi import Scope
from sluice.keys.principal import Principal


class Health(BaseModel):
    """The /health body (its schema in /docs)."""

    status: str
    version: str
    build: str


async def health(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None) -> bytes:
    return orjson.dumps({"status": "ok", "version": gateway.version, "build": gateway.settings.build})
