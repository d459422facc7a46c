"""The FastAPI application for the routes off the hot path: projects, admin, the demo page, /docs."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from sluice.gateway import Gateway
from sluice.http import (
    admin_audit,
    admin_health,
    admin_keys,
    admin_logs,
    admin_prompts,
    admin_services,
    admin_spend,
    demo,
)
from sluice.http.errors import install_error_handlers
from sluice.http.openapi import install_openapi
from sluice.projects.loader import load_projects, mount_projects

DOCS_ASSETS = "/docs/assets"
"""Swagger UI's and ReDoc's files, served from the `fastapi-offline` package: /docs works with no internet."""


def create_api(gateway: Gateway) -> FastAPI:
    """Every path it serves starts with one of `sluice.app.API_PREFIXES`: add a new prefix there."""
    api = FastAPI(title="Sluice", version=gateway.version, docs_url=None, redoc_url=None,
                  description="An OpenAI-compatible gateway in front of many LLM providers.")
    api.state.gateway = gateway
    install_docs(api)
    api.include_router(demo.router)
    mount_projects(api, load_projects(gateway.config))
    api.include_router(admin_logs.router)
    api.include_router(admin_keys.router)
    api.include_router(admin_spend.router)
    api.include_router(admin_prompts.router)
    api.include_router(admin_health.router)
    api.include_router(admin_services.router)
    api.include_router(admin_audit.router)
    install_error_handlers(api)
    install_openapi(api)
    return api


def install_docs(api: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc as FastAPI serves them, with every asset from this process instead of a CDN."""
    api.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")
    redirect = "/docs/oauth2-redirect"

    @api.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title="Sluice - Swagger UI",
                                   swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                                   oauth2_redirect_url=f"{root}{redirect}",
                                   swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True})

    @api.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @api.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}/openapi.json", title="Sluice - ReDoc", with_google_fonts=False,
                              redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png")
