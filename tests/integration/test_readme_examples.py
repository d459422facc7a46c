"""The worked examples of README.md ("Adding a provider", "Writing a project plugin"), run as written.

Each example is a fenced block after an `<!-- example: NAME -->` comment. Configs are parsed with the
environment the example names; client snippets run against a real gateway with `http://localhost:8000`
and the development key replaced by the test gateway's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette

from sluice.app import create_app
from sluice.config import parse_config
from sluice.settings import Settings
from tests.conftest import DEV_KEY
from tests.fakes.openai import create_fake_openai
from tests.servers import serve

README = Path(__file__).resolve().parents[2] / "README.md"
_EXAMPLE = re.compile(r"<!-- example: (?P<name>[\w-]+) -->\s*```\w*\n(?P<body>.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    return {match["name"]: match["body"] for match in _EXAMPLE.finditer(README.read_text(encoding="utf-8"))}


def run_client(code: str, base_url: str, capsys: pytest.CaptureFixture[str], key: str = DEV_KEY) -> list[str]:
    """Run a client snippet against `base_url` with `key` and return what it printed, line by line."""
    code = code.replace("http://localhost:8000", base_url).replace("sk-sluice-dev", key)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def upstream() -> Iterator[Starlette]:
    app = create_fake_openai(api_key="local-secret")
    with serve(app) as url:
        app.state.url = url
        yield app


def test_every_example_is_found() -> None:
    assert set(examples()) == {"provider-config", "provider-client", "project-module", "project-config",
                               "project-client"}


def test_adding_a_provider(upstream: Starlette, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"LOCAL_LLM_URL": upstream.state.url + "/v1", "LOCAL_LLM_KEY": "local-secret"}
    config = parse_config(examples()["provider-config"], "README.md", env=env)
    with serve(create_app(config, Settings(api_keys=[DEV_KEY], build="test"))) as url:
        printed = run_client(examples()["provider-client"], url, capsys)
    assert printed[0] == "echo: Hello!"
    assert "gpt-test" in printed[1]
    sent = upstream.state.requests
    assert sent[-2].body["model"] == "llama3.1:8b" and sent[-2].headers["x-team"] == "platform"
    assert sent[-1].path == "/v1/models" and sent[-1].headers["authorization"] == "Bearer local-secret"


def test_writing_a_project_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hello_project.py").write_text(examples()["project-module"])
    monkeypatch.syspath_prepend(str(tmp_path))
    config = parse_config(examples()["project-config"], "README.md", env={"HELLO_KEY": "sk-hello-only"})
    with serve(create_app(config, Settings(api_keys=[DEV_KEY], build="test"))) as url:
        printed = run_client(examples()["project-client"], url, capsys)
        with_project_key = run_client(examples()["project-client"], url, capsys, key="sk-hello-only")
    assert printed[0] == str({"greeting": "Hello, Ada!", "model": "mock-1"})
    lines = [json.loads(line) for line in printed[1:]]
    assert "".join(line["text"] for line in lines) == "Hello, Ada!"
    assert with_project_key == printed
