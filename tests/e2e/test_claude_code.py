"""Claude Code (Anthropic's CLI, pinned, from the npm registry by `make claude-code`) pointed at `sluice serve` with
`ANTHROPIC_BASE_URL`, as its users do: a chat turn and a tool-use loop through the translated `/v1/messages` stream."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_serve import run_serve

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / ".tools/claude-code/node_modules/@anthropic-ai"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: claude-mock, provider: mock, model: mock-1}
  - {name: claude-mock-small, provider: mock, model: mock-1}
"""


@pytest.fixture(scope="module")
def claude() -> Path:
    """The native `claude` binary of this platform's package (npm ran no install script to copy it into place)."""
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    binary = PACKAGES / f"claude-code-linux-{arch}/claude"
    if not binary.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{binary} is missing: `make claude-code` (a dependency of `make test`) installs it")
        pytest.skip(f"{binary} is not installed: run `make claude-code` (npm)")
    return binary


def run_claude(claude: Path, url: str, home: Path, prompt: str) -> list[dict[str, Any]]:
    """`claude -p prompt` against the gateway at `url`; the events it prints (stream-json)."""
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-e2e",
           "ANTHROPIC_MODEL": "claude-mock", "ANTHROPIC_SMALL_FAST_MODEL": "claude-mock-small",
           "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-mock-small", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "DISABLE_AUTOUPDATER": "1"}
    done = subprocess.run([str(claude), "-p", prompt, "--output-format", "stream-json", "--verbose"], env=env,
                          cwd=home, capture_output=True, text=True, timeout=120, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert events and done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return events


def blocks(events: list[dict[str, Any]], kind: str, block_type: str) -> list[dict[str, Any]]:
    return [block for event in events if event["type"] == kind
            for block in event["message"]["content"] if isinstance(block, dict) and block.get("type") == block_type]


def test_a_chat_turn_and_a_tool_loop(claude: Path, tmp_path: Path) -> None:
    with run_serve(CONFIG, tmp_path) as (url, _):
        # Claude Code 2.1 sends a mid-conversation system message, adaptive thinking and `context_management`.
        chat = run_claude(claude, url, tmp_path / "home", "say hello")
        result = chat[-1]
        assert result["type"] == "result" and result["is_error"] is False, result
        assert result["result"].endswith("say hello")  # the mock echoes the last user turn
        assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0

        # The mock calls each tool whose name is a word of the last user turn: Claude Code gets a streamed
        # tool_use (input_json_delta pieces), runs the tool, and sends its tool_result back for the next turn.
        loop = run_claude(claude, url, tmp_path / "home", "Read")
    [call] = blocks(loop, "assistant", "tool_use")
    assert call["name"] == "Read" and isinstance(call["input"].get("file_path"), str)
    [returned] = blocks(loop, "user", "tool_result")
    assert returned["tool_use_id"] == call["id"]
    result = loop[-1]
    assert result["type"] == "result" and result["is_error"] is False and result["num_turns"] == 2, result
    assert result["result"].startswith("The tool returned: ")
