"""The request log inside a served gateway: start-up migration, metrics, and exchanges from real requests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from sluice.keys.hashing import key_hash, load_pepper
from tests.conftest import DEV_KEY, run_gateway
from tests.servers import free_port

ADMIN = "sk-admin-test"
CONFIG = """
providers:
  mock: {type: mock, chunks: 3}
models:
  - {name: mock, provider: mock, model: mock-1}
metrics: {require_key: false}
request_log: {flush_interval_seconds: 0.05, redaction: {pii: [email]}}
"""


def _entries(client: httpx.Client, count: int, within: float = 3.0, limit: int = 50) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        params = {"include_bodies": "true", "limit": limit}
        data: list[dict[str, Any]] = client.get("/admin/logs", params=params).json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


PROJECT_CONFIG = CONFIG + """projects:
  - {name: demo, module: sluice.projects.demo}
discover_projects: false
"""


def test_project_calls_are_logged_streamed_reply_assembled(tmp_path: Path) -> None:
    """The project path already hands its exchanges to the observers: a chat call, then a streamed one."""
    with run_gateway(PROJECT_CONFIG, data_dir=str(tmp_path), admin_key=ADMIN) as url:
        reply = httpx.post(url + "/projects/demo/summary?stream_mode=ndjson", timeout=10,
                           json={"text": "Sluice routes requests. Write to ann@example.com."},
                           headers={"Authorization": f"Bearer {DEV_KEY}"})
        assert reply.status_code == 200
        lines = [orjson.loads(line) for line in reply.text.splitlines()]
        title = "".join(line["delta"] for line in lines if line["type"] == "title.delta")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            streamed, plain = _entries(admin, 2)
            usage = admin.get("/admin/usage").json()["data"]
    assert (plain["stream"], streamed["stream"]) == (False, True)
    assert streamed["metadata"]["project"] == "demo" and streamed["endpoint"] == "/projects/demo/summary"
    assert streamed["response"]["text"] == title.replace("ann@example.com", "[EMAIL]")
    assert "[EMAIL]" in streamed["response"]["text"]
    assert streamed["usage"]["total_tokens"] == streamed["usage"]["prompt_tokens"] + streamed["usage"][
        "completion_tokens"] > 0
    assert streamed["response"]["body"]["choices"][0]["message"]["role"] == "assistant"
    assert [(row["model"], row["requests"]) for row in usage] == [("mock", 2)]


def test_start_up_migrates_sqlite_and_exposes_metrics(tmp_path: Path) -> None:
    with run_gateway(CONFIG, data_dir=str(tmp_path)) as url:
        assert (tmp_path / "sluice.db").is_file()
        metrics = httpx.get(url + "/metrics").text
    assert "sluice_request_log_written_total 0.0" in metrics
    assert "sluice_request_log_buffered" in metrics


def test_a_streamed_reply_is_logged_with_its_text_and_usage(tmp_path: Path) -> None:
    with run_gateway(CONFIG, data_dir=str(tmp_path), admin_key=ADMIN) as url:
        body = {"model": "mock", "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "write to ann@example.com please"}]}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {DEV_KEY}"}) as response:
            assert response.status_code == 200
            response.read()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            [entry] = _entries(admin, 1)
    assert entry["stream"] is True and entry["endpoint"] == "/v1/chat/completions"
    assert entry["response"]["text"] == "write to [EMAIL] please"
    assert entry["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert entry["request"]["headers"]["authorization"] == "[REDACTED]"  # sent, never stored


def test_requests_succeed_while_the_database_is_unreachable_and_nothing_is_lost(tmp_path: Path) -> None:
    """Gateway 1's database is a closed port: every request succeeds and shutdown spills the buffered entries.
    Gateway 2, with a working database and the same data directory, replays them: each stored once."""
    config = CONFIG.replace("request_log: {", "request_log: {buffer_size: 10, batch_size: 5, write_timeout_seconds: "
                                             "0.5, shutdown_timeout_seconds: 0.5, stdout: false, ")
    unreachable = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    with run_gateway(config, data_dir=str(tmp_path), database_url=unreachable) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10) as client:
            for index in range(40):
                body = {"model": "mock", "stream": index % 2 == 0,
                        "messages": [{"role": "user", "content": f"n{index}"}]}
                assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert (tmp_path / "request-log-spill.jsonl").is_file()
    with run_gateway(config, data_dir=str(tmp_path), admin_key=ADMIN) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            entries = _entries(admin, 40, limit=100)
    assert sorted(entry["request"]["body"]["messages"][0]["content"] for entry in entries) == \
        sorted(f"n{index}" for index in range(40))
    assert {entry["api_key_hash"] for entry in entries} == {key_hash(load_pepper(None, str(tmp_path)), DEV_KEY)}
