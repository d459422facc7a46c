"""Project endpoints: the demo chain, stream modes, per-key and per-project scopes, discovery, /openapi.json."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from sluice.app import create_app
from sluice.config import ConfigError, parse_config
from sluice.exchange import Exchange
from sluice.settings import Settings
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import create_fake_openai
from tests.servers import serve

CONFIG = """
providers:
  mock: {{type: mock}}
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-key}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
  - {{name: gpt-test, provider: up, model: gpt-test}}
  - {{name: gpt-mini, provider: up, model: gpt-4o-mini}}
projects:
  - {{name: demo, module: sluice.projects.demo, models: [mock, gpt-test, gpt-mini]}}
  - {{name: strict, module: sluice.projects.demo}}
discover_projects: false
static_keys:
  - {{key: sk-demo-only, name: demo-only, projects: [demo]}}
  - {{key: sk-strict-only, projects: [strict]}}
  - {{key: sk-mock-only, providers: [mock]}}
"""
TEXT = "Sluice is a gateway. It routes requests to many providers."


def auth(key: str = DEV_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Starlette]:
    app = create_fake_openai()
    with serve(app) as url:
        app.state.url = url
        yield app


class Recorder:
    """An observer that keeps every exchange it is handed."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def observe(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def sluice_url(upstream: Starlette, recorder: Recorder) -> Iterator[str]:
    config = parse_config(CONFIG.format(url=upstream.state.url), "test.yaml")
    app = create_app(config, Settings(api_keys=[DEV_KEY], build="test"))
    app.gateway.observers.append(recorder)
    with serve(app) as url:
        yield url


def summarise(url: str, query: str = "", key: str = DEV_KEY, project: str = "demo", **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/projects/{project}/summary{query}", json={"text": TEXT, **body}, headers=auth(key),
                      timeout=10)


# --- the demo chain -------------------------------------------------------------------------------------------


def test_demo_chain_makes_two_upstream_calls_in_order(upstream: Starlette, sluice_url: str) -> None:
    before = len(upstream.state.requests)
    reply = summarise(sluice_url, summary_model="gpt-test", title_model="gpt-mini")
    assert reply.status_code == 200, reply.text
    calls = upstream.state.requests[before:]
    assert [call.body["model"] for call in calls] == ["gpt-test", "gpt-4o-mini"]
    assert calls[0].body["messages"][-1]["content"] == TEXT
    assert calls[1].body["messages"][-1]["content"] == "echo: " + TEXT
    assert all(call.headers["authorization"] == "Bearer upstream-key" for call in calls)
    result = reply.json()
    assert result == {"summary": "echo: " + TEXT, "title": "echo: echo: " + TEXT, "steps": [
        {"model": "gpt-test", "usage": result["steps"][0]["usage"]},
        {"model": "gpt-mini", "usage": result["steps"][1]["usage"]}]}
    assert result["steps"][0]["usage"]["total_tokens"] > 0


def test_internal_calls_are_recorded_like_outside_ones(sluice_url: str, recorder: Recorder) -> None:
    before = len(recorder.exchanges)
    assert summarise(sluice_url, summary_model="gpt-test", title_model="mock").status_code == 200
    exchanges = recorder.exchanges[before:]
    assert [(e.project, e.provider, e.model, e.operation, e.status) for e in exchanges] == [
        ("demo", "up", "gpt-test", "chat", 200), ("demo", "mock", "mock", "chat", 200)]
    assert all(e.endpoint == "/projects/demo/summary" and e.key_id for e in exchanges)
    assert exchanges[0].request_id == exchanges[1].request_id


def test_demo_streams_its_second_step_as_ndjson(upstream: Starlette, sluice_url: str) -> None:
    before = len(upstream.state.requests)
    reply = summarise(sluice_url, "?stream_mode=ndjson", summary_model="gpt-test", title_model="gpt-mini")
    assert reply.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert lines[0] == {"type": "summary", "summary": "echo: " + TEXT, "model": "gpt-test"}
    deltas = [line["delta"] for line in lines if line["type"] == "title.delta"]
    assert len(deltas) > 1 and lines[-1]["type"] == "result"
    assert "".join(deltas).strip() == lines[-1]["result"]["title"] == "echo: echo: " + TEXT
    assert [call.body.get("stream", False) for call in upstream.state.requests[before:]] == [False, True]


def test_demo_sse_by_header_and_json_by_query(sluice_url: str) -> None:
    reply = httpx.post(sluice_url + "/projects/demo/summary", json={"text": TEXT},
                       headers={**auth(), "X-Stream-Mode": "sse"}, timeout=10)
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [event for event in reply.text.split("\n\n") if event]
    assert events[-1] == "data: [DONE]" and json.loads(events[-2].removeprefix("data: "))["type"] == "result"
    complete = httpx.post(sluice_url + "/projects/demo/summary?stream_mode=json", json={"text": TEXT},
                          headers={**auth(), "X-Stream-Mode": "sse"}, timeout=10)
    assert complete.headers["content-type"] == "application/json" and complete.json()["title"]


def test_demo_request_is_validated(sluice_url: str) -> None:
    reply = httpx.post(sluice_url + "/projects/demo/summary", json={"text": ""}, headers=auth())
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "text"
    bad_mode = summarise(sluice_url, "?stream_mode=xml")
    assert bad_mode.status_code == 400 and bad_mode.json()["error"]["code"] == "invalid_stream_mode"


def test_project_schemas_are_in_openapi(sluice_url: str) -> None:
    document = httpx.get(sluice_url + "/openapi.json").json()
    operation = document["paths"]["/projects/demo/summary"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SummaryRequest")
    content = operation["responses"]["200"]["content"]
    assert content["application/json"]["schema"]["$ref"].endswith("/SummaryResult")
    assert {"text/event-stream", "application/x-ndjson"} <= set(content)
    assert {param["name"] for param in operation["parameters"]} == {"stream_mode", "x-stream-mode"}
    schemas = document["components"]["schemas"]
    assert {"text", "summary_model", "title_model"} <= set(schemas["SummaryRequest"]["properties"])
    assert set(schemas["SummaryResult"]["required"]) == {"title", "summary", "steps"}


# --- scopes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "project", "status"), [
    ("sk-demo-only", "demo", 200), ("sk-demo-only", "strict", 403),
    ("sk-strict-only", "strict", 200), ("sk-strict-only", "demo", 403), (DEV_KEY, "strict", 200),
])
def test_key_project_scope(sluice_url: str, key: str, project: str, status: int) -> None:
    reply = summarise(sluice_url, key=key, project=project)
    assert reply.status_code == status, reply.text
    if status == 403:
        error = reply.json()["error"]
        assert error["type"] == "permission_error" and project in error["message"]


def test_key_provider_scope_applies_everywhere(sluice_url: str) -> None:
    key = "sk-mock-only"
    assert summarise(sluice_url, key=key).status_code == 200
    denied = summarise(sluice_url, key=key, summary_model="gpt-test")
    assert denied.status_code == 403 and "'up'" in denied.json()["error"]["message"]
    chat = httpx.post(sluice_url + "/v1/chat/completions", headers=auth(key),
                      json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]})
    assert chat.status_code == 403 and chat.json()["error"]["code"] == "permission_denied"
    passthrough = httpx.get(sluice_url + "/provider/up/models", headers=auth(key))
    assert passthrough.status_code == 403


def test_project_declaration_limits_models(upstream: Starlette, sluice_url: str) -> None:
    before = len(upstream.state.requests)
    reply = summarise(sluice_url, project="strict", summary_model="gpt-test")
    assert reply.status_code == 403 and reply.json()["error"]["param"] == "model"
    assert len(upstream.state.requests) == before


def test_missing_key_is_401_and_unknown_project_404(sluice_url: str) -> None:
    assert httpx.post(sluice_url + "/projects/demo/summary", json={"text": TEXT}).status_code == 401
    assert summarise(sluice_url, project="nope").status_code == 404


# --- discovery ------------------------------------------------------------------------------------------------

PLUGIN = '''
from fastapi import APIRouter
from sluice.projects.api import Project, ProjectClient

router = APIRouter()


@router.get("/ping")
async def ping(client: ProjectClient) -> dict[str, str]:
    reply = await client.chat("mock", [{"role": "user", "content": "pong"}])
    return {"answer": reply["choices"][0]["message"]["content"], "project": client.project.name}


project = Project(router=router, models={"mock"})
'''


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `hello_plugin` module and an installed distribution naming it as a `sluice.projects` entry point."""
    (tmp_path / "hello_plugin.py").write_text(PLUGIN)
    info = tmp_path / "hello_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sluice.projects]\nhello = hello_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_projects_are_discovered(plugin_path: Path) -> None:
    with run_gateway("providers:\n  mock: {type: mock}\nmodels:\n  - {name: mock, provider: mock, model: m}\n") as url:
        reply = httpx.get(url + "/projects/hello/ping", headers=auth())
    assert reply.status_code == 200 and reply.json()["project"] == "hello"
    assert reply.json()["answer"]
    off = "providers:\n  mock: {type: mock}\ndiscover_projects: false\n"
    with run_gateway(off) as url:
        assert httpx.get(url + "/projects/hello/ping", headers=auth()).status_code == 404


def test_config_modules_can_be_any_importable_module(plugin_path: Path) -> None:
    config = textwrap.dedent("""
        providers: {mock: {type: mock}}
        models: [{name: mock, provider: mock, model: m}]
        projects: [{name: other-name, module: hello_plugin}]
        discover_projects: false
    """)
    with run_gateway(config) as url:
        assert httpx.get(url + "/projects/other-name/ping", headers=auth()).json()["project"] == "other-name"


@pytest.mark.parametrize(("module", "message"), [
    ("no_such_module_xyz", "cannot be imported"), ("json", "not a project plugin")])
def test_bad_project_modules_stop_start_up(module: str, message: str) -> None:
    config = parse_config(f"providers: {{mock: {{type: mock}}}}\nprojects: [{{name: x, module: {module}}}]\n", "t.yaml")
    with pytest.raises(ConfigError, match=message):
        create_app(config, Settings(api_keys=[DEV_KEY]))


def test_config_rejects_unknown_references() -> None:
    with pytest.raises(ConfigError, match="static_keys\\[0\\].providers: unknown provider 'nope'"):
        parse_config("providers: {mock: {type: mock}}\nstatic_keys: [{key: k, providers: [nope]}]\n", "t.yaml")
    with pytest.raises(ConfigError, match="projects\\[0\\].models: unknown model 'gpt'"):
        parse_config("providers: {mock: {type: mock}}\nprojects: [{name: d, module: m, models: [gpt]}]\n", "t.yaml")
