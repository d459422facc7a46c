"""The FastAPI application for the routes off the hot path: projects, admin, the demo page, /docs."""

from __future__ import annotations

from fastapi import FastAPI

from sluice.gateway import Gateway
from sluice.http import admin_keys, admin_logs, admin_prompts, admin_spend, demo
from sluice.http.errors import install_error_handlers
from sluice.http.openapi import install_openapi
from sluice.projects.loader import load_projects, mount_projects


def create_api(gateway: Gateway) -> FastAPI:
    """Every path it serves starts with one of `sluice.app.API_PREFIXES`: add a new prefix there."""
    api = FastAPI(title="Sluice", version=gateway.version,
                  description="An OpenAI-compatible gateway in front of many LLM providers.")
    api.state.gateway = gateway
    api.include_router(demo.router)
    mount_projects(api, load_projects(gateway.config))
    api.include_router(admin_logs.router)
    api.include_router(admin_keys.router)
    api.include_router(admin_spend.router)
    api.include_router(admin_prompts.router)
    install_error_handlers(api)
    install_openapi(api)
    return api
