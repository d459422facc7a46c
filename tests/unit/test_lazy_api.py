"""FastAPI is built only when a request needs it: traffic, probes, scrapes and model lists never load it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fastapi.openapi.utils import get_openapi

from sluice.app import API_PREFIXES
from sluice.config import parse_config
from sluice.gateway import Gateway
from sluice.http.api import create_api
from sluice.settings import Settings

# A fresh interpreter, since this one has imported FastAPI. The app starts as in a worker (lifespan), answers the
# routes below, and prints each status and whether FastAPI was loaded, before and after /docs.
SCRIPT = textwrap.dedent("""
    import asyncio, sys
    import httpx
    from sluice.app import create_app
    from sluice.config import parse_config
    from sluice.settings import Settings

    CONFIG = '''
    providers: {mock: {type: mock, chunk_delay_ms: 0}}
    models: [{name: mock, provider: mock, model: mock-1}]
    %s
    '''

    async def main() -> None:
        app = create_app(parse_config(CONFIG, "<test>"), Settings(api_keys=["sk-test"], data_dir=sys.argv[1]))
        print("after create_app:", "fastapi" in sys.modules)
        messages, sent = asyncio.Queue(), asyncio.Queue()
        await messages.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan"}, messages.get, sent.put))
        assert (await sent.get())["type"] == "lifespan.startup.complete"
        key = {"Authorization": "Bearer sk-test"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sluice") as client:
            calls = [client.post("/v1/chat/completions", headers=key,
                                 json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]}),
                     client.get("/health"), client.head("/health"), client.post("/health"),
                     client.get("/v1/models", headers=key), client.get("/v1/models/mock", headers=key),
                     client.get("/v1/models/mock"), client.get("/metrics", headers=key), client.get("/metrics"),
                     client.get("/nope")]
            for call in calls:
                reply = await call
                print("reply:", reply.request.method, reply.request.url.path, reply.status_code,
                      reply.headers.get("allow", "-").replace(" ", ""), len(reply.content),
                      reply.text[:60].replace(chr(10), " "))
            print("before /docs:", "fastapi" in sys.modules)
            print("reply: /docs", (await client.get("/docs")).status_code)
            print("after /docs:", "fastapi" in sys.modules)
        await messages.put({"type": "lifespan.shutdown"})
        await lifespan

    asyncio.run(main())
""")


def _run(extra_config: str, data_dir: Path) -> tuple[dict[str, str], list[str], subprocess.CompletedProcess[str]]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLUICE_")}
    done = subprocess.run([sys.executable, "-c", SCRIPT.replace("%s", extra_config), str(data_dir)],
                          capture_output=True, text=True, env=env, cwd=data_dir.parent, timeout=60)
    flags = dict(line.split(": ", 1) for line in done.stdout.splitlines()
                 if line.startswith(("after create_app:", "before /docs:", "after /docs:")))
    replies = [line.removeprefix("reply: ") for line in done.stdout.splitlines() if line.startswith("reply:")]
    return flags, replies, done


def test_traffic_and_light_routes_never_build_fastapi(tmp_path: Path) -> None:
    flags, replies, done = _run("discover_projects: false", tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert flags == {"after create_app": "False", "before /docs": "False", "after /docs": "True"}
    statuses = [" ".join(reply.split()[:4]) for reply in replies]
    assert statuses == [
        "POST /v1/chat/completions 200 -", "GET /health 200 -", "HEAD /health 200 -",
        "POST /health 405 GET,HEAD", "GET /v1/models 200 -", "GET /v1/models/mock 200 -",
        "GET /v1/models/mock 401 -", "GET /metrics 200 -", "GET /metrics 401 -", "GET /nope 404 -", "/docs 200"]
    bodies = dict((" ".join(reply.split()[:2]), reply) for reply in replies)
    assert bodies["HEAD /health"].split()[4] == "0"  # a HEAD answer has no body
    assert '"status":"ok"' in bodies["GET /health"]
    assert '{"error":{"message":"Unknown route: GET /nope"' in bodies["GET /nope"]


def test_a_mounted_project_builds_it_at_start_up(tmp_path: Path) -> None:
    flags, _, done = _run("projects: [{name: demo, module: sluice.projects.demo}]", tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert flags["after create_app"] == "True"


def test_a_broken_project_still_stops_the_start_up(tmp_path: Path) -> None:
    _, _, done = _run("projects: [{name: broken, module: no_such_module_here}]", tmp_path / "data")
    assert done.returncode != 0
    assert "projects[0].module (no_such_module_here): cannot be imported" in done.stderr


def test_every_fastapi_route_is_under_a_declared_prefix() -> None:
    """A route added to http/api.py outside API_PREFIXES would be answered 404 by the dispatcher."""
    config = parse_config("""
providers: {mock: {type: mock}}
models: [{name: mock, provider: mock, model: mock-1}]
projects: [{name: demo, module: sluice.projects.demo}]
""", "<test>")
    api = create_api(Gateway(config, Settings(api_keys=["sk-test"])))
    # FastAPI's own document of its routes (no route here is left out of the schema), not the one /openapi.json
    # serves, which adds the raw routes.
    paths = ["/openapi.json", "/docs", "/redoc", *get_openapi(title="t", version="0", routes=api.routes)["paths"]]
    assert "/projects/demo/summary" in paths and "/admin/keys" in paths and "/openapi.json" in paths
    assert [path for path in paths if not path.startswith(API_PREFIXES)] == []

