"""FastAPI exception handlers: every error leaves as an OpenAI-shaped JSON body, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from sluice.errors import GatewayError, InvalidRequest, internal_error

logger = logging.getLogger("sluice.http")


def error_response(error: GatewayError) -> Response:
    return Response(error.to_json(), status_code=error.status, media_type="application/json",
                    headers=dict(error.headers) or None)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path"))
    message = str(first["msg"]).removeprefix("Value error, ")  # a validator's own ValueError: its text alone
    return error_response(InvalidRequest(f"Invalid value for '{param}': {message}.", param=param or None))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
    message = f"Unknown route: {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    error = GatewayError(message, status=exc.status_code, type="invalid_request_error", code=kind)
    response = error_response(error)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["allow"] = _allowed_methods(request)
    return response


def _allowed_methods(request: Request) -> str:
    """Every method some route takes on this path: Starlette's 405 names only the first route's (GET, not also
    PATCH). Asked of the routes' own matching (included routers nest theirs), only when answering a 405."""
    routes = request.app.router.routes
    return ", ".join(method for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
                     if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes))


async def _unhandled(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(internal_error())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
