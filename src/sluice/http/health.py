"""`GET /health`: liveness without a key."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from sluice.http.auth import CurrentGateway

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str
    build: str


@router.get("/health", response_model=Health)
async def health(gateway: CurrentGateway) -> Health:
    return Health(status="ok", version=gateway.version, build=gateway.settings.build)
