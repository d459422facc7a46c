"""A real Arize Phoenix server for tests: `phoenix serve` on free loopback ports, spans read back over REST.

Phoenix lives in its own virtualenv (`make phoenix` → `.tools/phoenix`), because arize-phoenix pins
`anthropic<2` and Sluice's contract tests use anthropic 2.x. `SLUICE_TEST_PHOENIX` names another
`phoenix` executable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0


def phoenix_executable() -> str | None:
    """The `phoenix` command to run, or None when none is installed."""
    named = os.environ.get("SLUICE_TEST_PHOENIX")
    if named:
        return named
    local = ROOT / ".tools" / "phoenix" / "bin" / "phoenix"
    if local.exists():
        return str(local)
    return shutil.which("phoenix")


@dataclass
class Phoenix:
    """A running Phoenix: its base URL (REST, UI and OTLP/HTTP at `/v1/traces`)."""

    url: str

    def spans(self, project: str, **params: Any) -> list[dict[str, Any]]:
        """Every span of `project` matching `params` (Phoenix's REST filters); [] while the project is unknown."""
        found: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 1000, **params}
        while True:
            reply = httpx.get(f"{self.url}/v1/projects/{project}/spans", params=query, timeout=10)
            if reply.status_code == 404:
                return []
            reply.raise_for_status()
            body = reply.json()
            found.extend(body["data"])
            if not body.get("next_cursor"):
                return found
            query["cursor"] = body["next_cursor"]

    def wait_for_spans(self, project: str, count: int, timeout: float = 15.0, **params: Any) -> list[dict[str, Any]]:
        """Poll until at least `count` spans match (Phoenix inserts in the background), and return them."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(project, **params)
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)


@contextlib.contextmanager
def run_phoenix(executable: str) -> Iterator[Phoenix]:
    """Start `phoenix serve` in a temporary working dir, wait for /healthz, and stop it by process group."""
    port, grpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="sluice-phoenix-") as workdir:
        env = {**os.environ, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port),
               "PHOENIX_GRPC_PORT": str(grpc_port), "PHOENIX_WORKING_DIR": workdir,
               "PHOENIX_TELEMETRY_ENABLED": "false", "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false"}
        log = Path(workdir) / "phoenix.log"
        with log.open("wb") as output:
            process = subprocess.Popen([executable, "serve"], env=env, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, log)
            yield Phoenix(url)
        finally:
            _stop(process)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"phoenix serve did not become healthy at {url}:\n{log.read_text()[-4000:]}")
        time.sleep(0.25)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@pytest.fixture(scope="session")
def phoenix() -> Iterator[Phoenix]:
    """One Phoenix for the whole session (it takes ~15 s to start); tests use their own project names."""
    executable = phoenix_executable()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("arize-phoenix is not installed: run `make phoenix` (CI must not skip the tracing tests)")
        pytest.skip("arize-phoenix is not installed: run `make phoenix` to get .tools/phoenix")
    with run_phoenix(executable) as server:
        yield server
