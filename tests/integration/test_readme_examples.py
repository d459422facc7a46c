"""The worked examples of README.md ("Adding a provider", "Writing a project plugin") and its shell examples, run
as written.

Each worked example is a fenced block after an `<!-- example: NAME -->` comment. Configs are parsed with the
environment the example names; client snippets run against a real gateway with `http://localhost:8000`
and the development key replaced by the test gateway's.

Every ```bash block is run as a reader would run it in one shell after `make run`: its `curl` lines against a
gateway started as `make run` starts it (key `sk-sluice-dev`, `./sluice.yaml` or the built-in config, `./data`), with
the environment a first line `# after: VAR=value make run` names; a block whose first line starts
`# needs a real provider` is skipped.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from sluice.app import create_app
from sluice.config import load_config, parse_config
from sluice.settings import Settings
from tests.conftest import DEV_KEY
from tests.fakes.openai import create_fake_openai
from tests.servers import serve

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
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


def test_the_project_key_reaches_no_model_directly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hello_project.py").write_text(examples()["project-module"])
    monkeypatch.syspath_prepend(str(tmp_path))
    config = parse_config(examples()["project-config"], "README.md", env={"HELLO_KEY": "sk-hello-only"})
    headers = {"Authorization": "Bearer sk-hello-only"}
    with serve(create_app(config, Settings(api_keys=[DEV_KEY], build="test"))) as url:
        chat = httpx.post(url + "/v1/chat/completions", headers=headers,
                          json={"model": "mock", "messages": [{"role": "user", "content": "Hi"}]})
        listed = httpx.get(url + "/v1/models", headers=headers).json()
        greeting = httpx.post(url + "/projects/hello/greet", headers={"Authorization": f"Bearer {DEV_KEY}"},
                              json={"name": "Ada"})
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"
    assert listed == {"object": "list", "data": []}
    assert greeting.status_code == 200


# --- the shell examples -----------------------------------------------------------------------------------------

_BASH = re.compile(r"```bash\n(?P<body>.*?)```", re.DOTALL)
_AFTER = re.compile(r"# after: (?P<env>(?:[A-Z_]+=\S+ )+)make run")
_ASSIGNMENT = re.compile(r"[A-Z_]+=\S+")
NEEDS_PROVIDER = "# needs a real provider"
CURL = 'curl() { command curl --silent --show-error --fail-with-body --max-time 30 "$@"; }'


def shell_blocks() -> list[list[str]]:
    """Each ```bash block of the README as its commands, continuation lines joined."""
    blocks = []
    for match in _BASH.finditer(README.read_text(encoding="utf-8")):
        blocks.append([line.strip() for line in match["body"].replace("\\\n", " ").splitlines() if line.strip()])
    return blocks


def block_env(block: list[str]) -> dict[str, str]:
    after = _AFTER.fullmatch(block[0]) if block[0].startswith("# after:") else None
    assert after is not None or not block[0].startswith("# after:"), f"unreadable set-up line: {block[0]}"
    return dict(pair.split("=", 1) for pair in after["env"].split()) if after else {}


@contextlib.contextmanager
def make_run_gateway(env: dict[str, str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A gateway as `make run` starts one in `cwd`: SLUICE_API_KEYS=sk-sluice-dev and `env` in the environment."""
    with monkeypatch.context() as patched:
        patched.chdir(cwd)
        for name, value in {"SLUICE_API_KEYS": "sk-sluice-dev", **env}.items():
            patched.setenv(name, value)
        settings = Settings()
        app = create_app(load_config("sluice.yaml" if Path("sluice.yaml").is_file() else settings.config), settings)
    with serve(app) as url:
        yield url


def assert_answered(command: str, output: str) -> None:
    """A JSON body, NDJSON lines or an SSE stream ending `[DONE]`, none of them an error."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, command
    if lines[0].startswith("data: "):
        assert lines[-1] == "data: [DONE]", command
        objects = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    else:
        objects = [json.loads(line) for line in lines]
    assert objects and all(isinstance(item, dict) and item.get("error") is None for item in objects), (command, output)


def test_every_shell_example_is_run_or_says_what_it_needs() -> None:
    blocks = shell_blocks()
    assert len(blocks) >= 4
    runnable = [block for block in blocks if not block[0].startswith(NEEDS_PROVIDER)]
    assert sum(command.startswith("curl ") for block in runnable for command in block) >= 8
    for block in blocks:
        for command in block:
            kind = command.split()[0]
            assert command.startswith("#") or _ASSIGNMENT.fullmatch(command) or kind in (
                "curl", "make", ".venv/bin/sluice"), f"README shell command of no known kind: {command}"


def test_shell_examples_work_after_make_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assignments: list[str] = []
    ran = 0
    with contextlib.ExitStack() as stack:
        gateways: dict[tuple[tuple[str, str], ...], str] = {}
        for block in shell_blocks():
            if block[0].startswith(NEEDS_PROVIDER):
                continue
            env = block_env(block)
            key = tuple(sorted(env.items()))
            if key not in gateways:
                gateways[key] = stack.enter_context(make_run_gateway(env, tmp_path, monkeypatch))
            host = gateways[key].removeprefix("http://")
            for command in block:
                if _ASSIGNMENT.fullmatch(command):
                    assignments.append(command)
                    continue
                if command.startswith(("#", "make ")):
                    continue  # the set-up steps themselves
                script = "\n".join([*assignments, CURL, command.replace("localhost:8000", host).replace(
                    ".venv/bin/", f"{ROOT}/.venv/bin/")])
                done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                                      timeout=60, check=False)
                assert done.returncode == 0, (command, done.stdout, done.stderr)
                if command.startswith("curl "):
                    assert_answered(command, done.stdout)
                ran += 1
    assert ran >= 10
