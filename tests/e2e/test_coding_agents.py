"""Coding agents as their users run them, pointed at `sluice serve` with the mock behind it: Claude Code (Anthropic's
CLI) through `/v1/messages` with `ANTHROPIC_BASE_URL`, and Codex (OpenAI's CLI) through `/v1/responses` as a custom
model provider; each a chat turn and a tool loop through the translated stream. Both are pinned native binaries from
the npm registry (`make coding-agents`)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_serve import run_serve

ROOT = Path(__file__).resolve().parents[2]
MACHINE = platform.machine()
ARCH = {"x86_64": "x64", "aarch64": "arm64"}.get(MACHINE, MACHINE)
CLAUDE = ROOT / f".tools/claude-code/node_modules/@anthropic-ai/claude-code-linux-{ARCH}/claude"
CODEX = ROOT / f".tools/codex/node_modules/@openai/codex-linux-{ARCH}/vendor/{MACHINE}-unknown-linux-musl/bin/codex"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: agent-mock, provider: mock, model: mock-1}
  - {name: agent-mock-small, provider: mock, model: mock-1}
"""
CODEX_CONFIG = """
model = "agent-mock"
model_provider = "sluice"

[model_providers.sluice]
name = "Sluice"
base_url = "{url}/v1"
env_key = "SLUICE_KEY"
wire_api = "responses"
"""


def installed(binary: Path) -> Path:
    """The agent's native binary (npm ran no install script to copy it into place), or the test skips (fails in
    CI)."""
    if not binary.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{binary} is missing: `make coding-agents` (a dependency of `make test`) installs it")
        pytest.skip(f"{binary} is not installed: run `make coding-agents` (npm)")
    return binary


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_serve(CONFIG, tmp_path_factory.mktemp("gateway")) as (url, _):
        yield url


def run_agent(command: list[str], env: dict[str, str], home: Path) -> list[dict[str, Any]]:
    """The agent run once, non-interactively, in `home`; the JSON events it printed."""
    done = subprocess.run(command, env={"PATH": os.environ["PATH"], "HOME": str(home), **env}, cwd=home,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert events and done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return events


def run_claude(url: str, home: Path, prompt: str) -> list[dict[str, Any]]:
    env = {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-e2e", "ANTHROPIC_MODEL": "agent-mock",
           "ANTHROPIC_SMALL_FAST_MODEL": "agent-mock-small", "ANTHROPIC_DEFAULT_HAIKU_MODEL": "agent-mock-small",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
    return run_agent([str(installed(CLAUDE)), "-p", prompt, "--output-format", "stream-json", "--verbose"], env, home)


def run_codex(url: str, home: Path, prompt: str) -> list[dict[str, Any]]:
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex/config.toml").write_text(CODEX_CONFIG.replace("{url}", url))
    return run_agent([str(installed(CODEX)), "exec", "--skip-git-repo-check", "--json", prompt],
                     {"SLUICE_KEY": "sk-e2e"}, home)


def claude_blocks(events: list[dict[str, Any]], kind: str, block_type: str) -> list[dict[str, Any]]:
    return [block for event in events if event["type"] == kind
            for block in event["message"]["content"] if isinstance(block, dict) and block.get("type") == block_type]


def codex_items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event["item"] for event in events if event["type"] == "item.completed" and event["item"]["type"] == kind]


def test_claude_code_chats_and_uses_a_tool(gateway: str, tmp_path: Path) -> None:
    # Claude Code 2.1 sends a mid-conversation system message, adaptive thinking and `context_management`.
    chat = run_claude(gateway, tmp_path, "say hello")
    result = chat[-1]
    assert result["type"] == "result" and result["is_error"] is False, result
    assert result["result"].endswith("say hello")  # the mock echoes the last user turn
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0

    # The mock calls each tool whose name is a word of the last user turn: Claude Code gets a streamed tool_use
    # (input_json_delta pieces), runs the tool, and sends its tool_result back for the next turn.
    loop = run_claude(gateway, tmp_path, "Read")
    [call] = claude_blocks(loop, "assistant", "tool_use")
    assert call["name"] == "Read" and isinstance(call["input"].get("file_path"), str)
    [returned] = claude_blocks(loop, "user", "tool_result")
    assert returned["tool_use_id"] == call["id"]
    result = loop[-1]
    assert result["type"] == "result" and result["is_error"] is False and result["num_turns"] == 2, result
    assert result["result"].startswith("The tool returned: ")


def test_codex_chats_and_uses_a_tool(gateway: str, tmp_path: Path) -> None:
    # Codex 0.171 offers every model a namespace tool and a hosted web search besides its functions.
    chat = run_codex(gateway, tmp_path, "say hello")
    [message] = codex_items(chat, "agent_message")
    assert message["text"] == "say hello"
    assert chat[-1]["type"] == "turn.completed" and chat[-1]["usage"]["input_tokens"] > 0

    # Codex runs its shell tool (a command that does not exist, in its read-only sandbox) and sends the output
    # back for the next turn.
    loop = run_codex(gateway, tmp_path, "exec_command")
    [command] = codex_items(loop, "command_execution")
    assert command["exit_code"] == 127 and "not found" in command["aggregated_output"]
    [answer] = codex_items(loop, "agent_message")
    assert answer["text"].startswith("The tool returned: ") and "not found" in answer["text"]
    assert loop[-1]["type"] == "turn.completed"
