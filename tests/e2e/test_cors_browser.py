"""CORS in a real browser: Debian's chromium (`make browser`), driven by Playwright, loads a page from one loopback
origin that calls the gateway on another with `fetch`: the calls its policies allow succeed and the page shows
their JSON, the ones they refuse reject with a TypeError. Custom headers and credentials make them preflighted."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from sluice.app import create_app
from sluice.config import parse_config
from sluice.http.asgi import Receive, Scope, Send
from sluice.settings import Settings
from tests.conftest import DEV_KEY
from tests.servers import free_port, serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PAGE = """<!doctype html>
<title>CORS test page</title>
<pre id="models"></pre><pre id="shared"></pre><pre id="refused-preflight"></pre><pre id="refused-simple"></pre>
<script>
const gateway = new URLSearchParams(location.search).get("gateway");
async function show(id, url, init) {
  let text;
  try {
    const reply = await fetch(gateway + url, init);
    text = JSON.stringify({status: reply.status, requestId: reply.headers.get("x-request-id"),
                           body: await reply.json()});
  } catch (error) {
    text = JSON.stringify({rejected: error.constructor.name, message: String(error)});
  }
  document.getElementById(id).textContent = text;
}
const custom = {"X-Client": "cors-browser-test"};
Promise.all([
  show("models", "/v1/models", {credentials: "include", headers: {...custom, "Authorization": "Bearer KEY"}}),
  show("shared", "/api/shared/item", {method: "PUT", headers: {...custom, "Content-Type": "application/json"},
                                      body: JSON.stringify({name: "x"})}),
  show("refused-preflight", "/api/partner/data", {headers: custom}),
  show("refused-simple", "/api/partner/data"),
]).then(() => { document.body.dataset.done = "yes"; });
</script>
""".replace("KEY", DEV_KEY)


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: `make browser` (a dependency of `make test`) installs Debian's "
                        "chromium for this test")
        pytest.skip(f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium, as root)")
    return CHROMIUM


def page_server() -> Starlette:
    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    return Starlette(routes=[Route("/", page)])


def service() -> Starlette:
    seen: list[tuple[str, str]] = []

    async def answer(request: Request) -> Response:
        seen.append((request.method, request.url.path))
        return JSONResponse({"service": "things", "method": request.method, "got": (await request.body()).decode()})

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "PUT", "OPTIONS"])])
    app.state.seen = seen
    return app


class Recorder:
    """The gateway's app with every request that reached it noted (method, path, preflight or not)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, bool]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            preflight = any(name == b"access-control-request-method" for name, _ in scope["headers"])
            self.seen.append((scope["method"], scope["path"], preflight))
        await self.app(scope, receive, send)


def test_fetch_from_another_origin(chromium: Path) -> None:
    things = service()
    page_port = free_port()
    page_origin = f"http://127.0.0.1:{page_port}"
    with serve(things) as service_url, tempfile.TemporaryDirectory(prefix="sluice-test-") as data_dir:
        config = parse_config(f"""
providers: {{mock: {{type: mock}}}}
models: [{{name: mock, provider: mock, model: mock-1}}]
request_log: {{enabled: false}}
cors:
  allow_origins: ["{page_origin}"]
  allow_headers: [authorization, x-client]
  expose_headers: [x-request-id]
  allow_credentials: true
services:
  things: {{instances: [{{url: "{service_url}"}}]}}
routes:
  - path: "/api/shared/**"
    service: things
    auth: public
    cors: {{allow_origins: ["https://partner.example.com", "{page_origin}"], allow_methods: [PUT],
            allow_headers: [x-client]}}
  - path: "/api/partner/**"
    service: things
    auth: public
    cors: {{allow_origins: ["https://partner.example.com"], allow_headers: [x-client]}}
""", "test.yaml")
        gateway = Recorder(create_app(config, Settings(api_keys=[DEV_KEY], build="test", data_dir=data_dir)))
        with serve(gateway) as gateway_url, serve(page_server(), port=page_port), sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
            try:
                page = browser.new_page()
                page.goto(f"{page_origin}/?gateway={gateway_url}")
                page.wait_for_selector("body[data-done=yes]", timeout=15_000)
                results = {name: _json(page.text_content(f"#{name}")) for name in
                           ("models", "shared", "refused-preflight", "refused-simple")}
            finally:
                browser.close()

    models = results["models"]
    assert models["status"] == 200, results
    assert [model["id"] for model in models["body"]["data"]] == ["mock"]
    assert models["requestId"]  # exposed by expose_headers
    assert results["shared"]["status"] == 200
    assert results["shared"]["body"] == {"service": "things", "method": "PUT", "got": '{"name":"x"}'}
    for name in ("refused-preflight", "refused-simple"):
        assert results[name]["rejected"] == "TypeError", results[name]

    # Each call with custom headers was preflighted, and each preflight was answered by the gateway: the
    # service saw the allowed PUT, the refused simple GET (which the browser then hid from the page) and no
    # OPTIONS; the refused preflight stopped its GET in the browser.
    assert ("OPTIONS", "/v1/models", True) in gateway.seen
    assert ("OPTIONS", "/api/shared/item", True) in gateway.seen
    assert ("OPTIONS", "/api/partner/data", True) in gateway.seen
    assert sorted(things.state.seen) == [("GET", "/api/partner/data"), ("PUT", "/api/shared/item")]


def _json(text: str | None) -> dict[str, Any]:
    assert text, "the page showed nothing"
    parsed: dict[str, Any] = json.loads(text)
    return parsed
