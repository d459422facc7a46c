"""Prompt templates through the real gateway: `"prompt"` on chat and in project code, the upstream body, errors,
the `llm.prompt_template.*` span attributes in a real Phoenix, and `sluice prompts push`/`pull` against it."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sluice.cli import main
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import create_fake_openai
from tests.phoenix import Phoenix
from tests.servers import serve
from tests.telemetry_support import caller_traceparent

PROMPTS = """
prompts:
  - name: support
    version: 1
    messages:
      - {role: system, content: "You are {{persona}}."}
      - {role: user, content: "Old: {{question}}"}
  - name: support
    version: 2
    description: Support answers
    messages:
      - {role: system, content: "You are {{persona}}."}
      - {role: user, content: "Question: {{question}}"}
"""
MOCK_CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
projects:
  - {name: templated, module: templated_plugin}
discover_projects: false
request_log: {enabled: false}
""" + PROMPTS
PLUGIN = textwrap.dedent('''
    from fastapi import APIRouter
    from sluice.projects.api import Project, ProjectClient

    router = APIRouter()

    @router.post("/ask")
    async def ask(client: ProjectClient, body: dict) -> dict:
        reply = await client.chat("mock", prompt={"name": "support", "variables": body})
        return {"answer": reply["choices"][0]["message"]["content"]}

    project = Project(router=router, models={"mock"})
''')
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
VARIABLES = {"persona": "a librarian", "question": "where are the maps?"}


def chat(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=AUTH, timeout=10)


def test_a_prompt_renders_through_the_gateway_and_in_project_code(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "templated_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with run_gateway(MOCK_CONFIG) as url:
        reply = chat(url, {"model": "mock", "prompt": {"name": "support", "variables": VARIABLES}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "Question: where are the maps?"
        older = chat(url, {"model": "mock", "prompt": {"name": "support", "version": 1, "variables": VARIABLES}})
        assert older.json()["choices"][0]["message"]["content"] == "Old: where are the maps?"
        after = chat(url, {"model": "mock", "prompt": {"name": "support", "variables": VARIABLES},
                           "messages": [{"role": "user", "content": "and the globes?"}]})
        assert after.json()["choices"][0]["message"]["content"] == "and the globes?"
        streamed = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, timeout=10, json={
            "model": "mock", "stream": True, "prompt": {"name": "support", "variables": VARIABLES}})
        assert streamed.status_code == 200 and "maps" in streamed.text

        project = httpx.post(f"{url}/projects/templated/ask", json=VARIABLES, headers=AUTH, timeout=10)
        assert project.status_code == 200, project.text
        assert project.json() == {"answer": "Question: where are the maps?"}

        missing = chat(url, {"model": "mock", "prompt": {"name": "support", "variables": {"persona": "x"}}})
        assert missing.status_code == 400
        assert missing.json()["error"]["param"] == "prompt.variables.question"
        unknown = chat(url, {"model": "mock", "prompt": {"name": "nope"}})
        assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "prompt.name"
        version = chat(url, {"model": "mock", "prompt": {"name": "support", "version": 9}})
        assert version.status_code == 404 and version.json()["error"]["param"] == "prompt.version"
        neither = chat(url, {"model": "mock"})
        assert neither.status_code == 400 and neither.json()["error"]["param"] == "messages"


def test_upstream_gets_rendered_messages_and_the_span_carries_the_template(phoenix: Phoenix) -> None:
    trace_id, _, traceparent = caller_traceparent()
    project = f"prompts-{trace_id[:8]}"
    fake = create_fake_openai()
    with serve(fake) as upstream:
        config = f"""
providers:
  up: {{type: openai, base_url: "{upstream}/v1", api_key: upstream-key}}
models:
  - {{name: gpt, provider: up, model: gpt-test}}
telemetry: {{project: {project}}}
request_log: {{enabled: false}}
""" + PROMPTS
        with run_gateway(config, phoenix_collector_endpoint=phoenix.url) as url:
            reply = httpx.post(f"{url}/v1/chat/completions", timeout=10, headers={**AUTH, "traceparent": traceparent},
                               json={"model": "gpt", "temperature": 0.5,
                                     "prompt": {"name": "support", "version": 2, "variables": VARIABLES}})
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"] == "echo: Question: where are the maps?"
        sent = fake.state.requests[0].body
    assert "prompt" not in sent and sent["temperature"] == 0.5
    assert sent["messages"] == [{"role": "system", "content": "You are a librarian."},
                                {"role": "user", "content": "Question: where are the maps?"}]
    spans = phoenix.wait_for_spans(project, 2, trace_id=trace_id)
    llm = next(span for span in spans if span["span_kind"] == "LLM")["attributes"]
    assert json.loads(llm["llm.prompt_template.template"])[1] == {"role": "user", "content": "Question: {{question}}"}
    assert llm["llm.prompt_template.version"] == "2"
    prefix = "llm.prompt_template.variables."  # Phoenix decodes the JSON string and flattens it
    assert {key.removeprefix(prefix): value for key, value in llm.items() if key.startswith(prefix)} == VARIABLES
    assert llm["llm.input_messages.1.message.content"] == "Question: where are the maps?"
    assert llm["sluice.prompt.name"] == "support"


def test_push_then_pull_round_trips_through_phoenix(phoenix: Phoenix, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    name = f"support-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "sluice.yaml"
    config.write_text("providers: {mock: {type: mock}}\n" + PROMPTS.replace("name: support", f"name: {name}"))
    assert main(["prompts", "push", "--config", str(config), "--phoenix", phoenix.url]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{name} v1: pushed", f"{name} v2: pushed"]
    assert main(["prompts", "push", "--config", str(config), "--phoenix", phoenix.url]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{name} v1: already in Phoenix", f"{name} v2: already in Phoenix"]

    latest = httpx.get(f"{phoenix.url}/v1/prompts/{name}/latest", timeout=10).json()["data"]
    assert latest["template_format"] == "MUSTACHE" and latest["metadata"] == {"sluice_version": 2}
    tagged = httpx.get(f"{phoenix.url}/v1/prompts/{name}/tags/v1", timeout=10).json()["data"]
    assert tagged["template"]["messages"][1]["content"] == "Old: {{question}}"

    out = tmp_path / "pulled" / "prompts.yaml"
    out.parent.mkdir()
    assert main(["prompts", "pull", "--config", str(config), "--phoenix", phoenix.url, "--name", name,
                 "-o", str(out)]) == 0
    pulled = yaml.safe_load(out.read_text())["prompts"]
    expected = yaml.safe_load(PROMPTS.replace("name: support", f"name: {name}"))["prompts"]
    assert [{key: value for key, value in entry.items() if key != "model"} for entry in pulled] == expected
    reloaded = tmp_path / "reloaded.yaml"
    reloaded.write_text("providers: {mock: {type: mock}}\nprompts_dir: pulled\n")
    assert main(["check-config", "--config", str(reloaded)]) == 0
    assert main(["prompts", "pull", "--config", str(reloaded), "--phoenix", phoenix.url, "--name", name]) == 0
    assert name in capsys.readouterr().out
