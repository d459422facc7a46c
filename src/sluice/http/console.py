"""`/ui` and `/ui/…`: the admin console's static files (package `sluice.console`), as raw ASGI with strict headers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files

from sluice.errors import GatewayError, NotFound
from sluice.http.asgi import Receive, Scope, Send, send_bytes, send_error

CONSOLE_PATH = "/ui"
CONSOLE_FILES = "/ui/"
"""The console's page is `/ui/` (`/ui` redirects there, so the page's relative URLs resolve under `/ui/`)."""

CONTENT_SECURITY_POLICY = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
"""On every console response, the 404s, 405s and redirects included."""

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}
CACHE_CONTROL = b"no-cache"
"""The names carry no content hash, so a browser revalidates each time (a 304 while the ETag matches)."""


@dataclass(frozen=True, slots=True)
class ConsoleFile:
    body: bytes
    content_type: bytes
    etag: bytes


def load_files() -> dict[str, ConsoleFile]:
    """Every file of the console's static directory by name (flat: a request can only name one of these)."""
    found: dict[str, ConsoleFile] = {}
    for entry in files("sluice.console").joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind("."):] if "." in entry.name else ""
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        found[entry.name] = ConsoleFile(body, content_type, etag)
    return found


def is_console_path(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(CONSOLE_FILES)


class Console:
    """The raw ASGI handler for console paths; the files are read once, on the first request."""

    def __init__(self) -> None:
        self._files: dict[str, ConsoleFile] | None = None

    @property
    def files(self) -> dict[str, ConsoleFile]:
        if self._files is None:
            self._files = load_files()
        return self._files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            error = GatewayError(f"Method {method} is not allowed on {scope['path']}; use GET.", status=405,
                                 type="invalid_request_error", code="method_not_allowed")
            await send_error(send, error, [(b"allow", b"GET, HEAD"), *SECURITY_HEADERS])
            return
        path: str = scope["path"]
        if path == CONSOLE_PATH:
            await send_bytes(send, 308, b"", [(b"location", CONSOLE_FILES.encode()), (b"content-length", b"0"),
                                             *SECURITY_HEADERS])
            return
        found = self.files.get(path[len(CONSOLE_FILES):] or "index.html")
        if found is None:
            await send_error(send, NotFound(f"The console has no file {path!r}."), SECURITY_HEADERS)
            return
        await _send_file(scope, send, found)


async def _send_file(scope: Scope, send: Send, found: ConsoleFile) -> None:
    headers = [(b"etag", found.etag), (b"cache-control", CACHE_CONTROL), *SECURITY_HEADERS]
    if _matches(scope, found.etag):
        await send_bytes(send, 304, b"", headers)
        return
    headers += [(b"content-type", found.content_type), (b"content-length", str(len(found.body)).encode())]
    await send_bytes(send, 200, b"" if scope["method"] == "HEAD" else found.body, headers)


def _matches(scope: Scope, etag: bytes) -> bool:
    """Whether the request's `If-None-Match` names this ETag (or `*`)."""
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            tags = [tag.strip().removeprefix(b"W/") for tag in value.split(b",")]
            return etag in tags or b"*" in tags
    return False


__all__ = ["CONSOLE_PATH", "SECURITY_HEADERS", "Console", "is_console_path", "load_files"]
