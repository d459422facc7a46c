"""The admin console's files at /ui through a served gateway: content types, caching, the strict security headers on
every console response (404s, 405s and the redirect too), unknown files and path traversal refused, and no FastAPI
built to serve them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import run_gateway

SECURITY = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
MODULES = ("app", "api", "dom", "log", "usage", "keys", "upstreams", "audit")
FILES = {"/ui/": "text/html", "/ui/index.html": "text/html", "/ui/app.css": "text/css",
         **{f"/ui/{name}.js": "text/javascript" for name in MODULES}}


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with run_gateway(admin_key="sk-admin-console") as url:
        yield url


@pytest.fixture
def http(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=10) as client:
        yield client


def assert_secured(reply: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert reply.headers.get(name) == value, (reply.request.url, name, reply.headers)
    assert "unsafe-inline" not in reply.headers["content-security-policy"]
    assert "unsafe-eval" not in reply.headers["content-security-policy"]


@pytest.mark.parametrize(("path", "kind"), FILES.items())
def test_every_file_with_its_type_headers_and_etag(http: httpx.Client, path: str, kind: str) -> None:
    reply = http.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"].split(";")[0] == kind
    assert reply.headers["cache-control"] == "no-cache"
    assert int(reply.headers["content-length"]) == len(reply.content) > 0
    assert reply.headers["x-request-id"]
    assert_secured(reply)
    again = http.get(path, headers={"If-None-Match": reply.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == reply.headers["etag"]
    assert_secured(again)
    head = http.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == reply.headers["content-length"]
    assert_secured(head)


def test_the_page_has_no_inline_script_or_style(http: httpx.Client) -> None:
    page = http.get("/ui/").text
    assert '<script type="module" src="app.js"></script>' in page
    assert "style=" not in page and "<style" not in page
    assert "<script>" not in page and "onclick=" not in page and "javascript:" not in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN


def test_ui_redirects_to_the_page(http: httpx.Client) -> None:
    reply = http.get("/ui")
    assert reply.status_code == 308 and reply.headers["location"] == "/ui/"
    assert_secured(reply)


@pytest.mark.parametrize("path", ["/ui/nothing.js", "/ui/static/app.js", "/ui/__init__.py", "/ui/app.js/",
                                  "/ui/APP.JS", "/ui//app.js"])
def test_unknown_files_are_404_with_the_headers(http: httpx.Client, path: str) -> None:
    reply = http.get(path)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"
    assert_secured(reply)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_only_get_and_head(http: httpx.Client, method: str) -> None:
    reply = http.request(method, "/ui/app.js")
    assert reply.status_code == 405 and reply.headers["allow"] == "GET, HEAD"
    assert_secured(reply)


def raw_get(gateway: str, target: str) -> tuple[int, bytes]:
    """A GET sent byte for byte (httpx would normalise the dot segments away)."""
    parts = urlsplit(gateway)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("target", [
    "/ui/../pyproject.toml", "/ui/..%2fpyproject.toml", "/ui/%2e%2e/pyproject.toml", "/ui/%2e%2e%2fpyproject.toml",
    "/ui/..%5cpyproject.toml", "/ui/....//pyproject.toml", "/ui/%252e%252e%252fpyproject.toml",
    "/ui/../../../../etc/passwd", "/ui/..%2f..%2f..%2fetc%2fpasswd", "/ui/../console/static/app.js",
    "/ui/../__init__.py", "/ui/%00app.js", "/ui/app.js%00.html",
])
def test_path_traversal_is_refused(gateway: str, target: str) -> None:
    status, body = raw_get(gateway, target)
    assert status in (400, 404), (target, status)
    assert b"[project]" not in body and b"root:" not in body and b"import" not in body


# A fresh interpreter (this one may have imported FastAPI): the console's files are served without building it.
WITHOUT_FASTAPI = textwrap.dedent("""
    import asyncio, sys
    import httpx
    from sluice.app import create_app
    from sluice.config import parse_config
    from sluice.settings import Settings

    CONFIG = "providers: {mock: {type: mock}}\\nmodels: [{name: mock, provider: mock, model: mock-1}]\\n"

    async def main() -> None:
        app = create_app(parse_config(CONFIG, "<test>"), Settings(api_keys=["sk-test"], data_dir=sys.argv[1]))
        messages, sent = asyncio.Queue(), asyncio.Queue()
        await messages.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan"}, messages.get, sent.put))
        assert (await sent.get())["type"] == "lifespan.startup.complete"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sluice") as client:
            for path in ("/ui", "/ui/", "/ui/app.js", "/ui/missing.js"):
                print("reply:", path, (await client.get(path)).status_code)
        print("fastapi:", "fastapi" in sys.modules)
        await messages.put({"type": "lifespan.shutdown"})
        await lifespan

    asyncio.run(main())
""")


def test_console_files_are_served_without_fastapi(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLUICE_")}
    done = subprocess.run([sys.executable, "-c", WITHOUT_FASTAPI, str(tmp_path)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("reply:", "fastapi:"))]
    assert lines == ["reply: /ui 308", "reply: /ui/ 200", "reply: /ui/app.js 200", "reply: /ui/missing.js 404",
                     "fastapi: False"]
