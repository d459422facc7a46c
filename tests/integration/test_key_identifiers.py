"""Key identifiers in the request log are derived with the pepper: a known key is not recognisable by its SHA-256,
and gateways sharing the pepper name a key the same way. The credential headers never reach the log's writer."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_gateway

DEV_KEY = "sk-sluice-dev"
ADMIN = "sk-admin-identifiers"
PEPPER = "pepper-for-identifier-tests"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
request_log: {flush_interval_seconds: 0.05, stdout: true}
"""
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
PLAIN = hashlib.sha256(DEV_KEY.encode()).hexdigest()


def _rows(database: Path, count: int, within: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        with sqlite3.connect(database) as connection:
            connection.row_factory = sqlite3.Row
            try:
                rows = [dict(row) for row in connection.execute(
                    "SELECT key_id, key_hash, request_headers FROM request_logs ORDER BY timestamp")]
            except sqlite3.OperationalError:
                rows = []
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def _logged(data_dir: Path, **settings: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two requests (Bearer, X-API-Key) to a gateway with the dev key; the stored rows and /admin/logs' entries."""
    with run_gateway(CONFIG, keys=(DEV_KEY,), admin_key=ADMIN, data_dir=str(data_dir), **settings) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/v1/chat/completions", json=CHAT,
                               headers={"Authorization": f"Bearer {DEV_KEY}"}).status_code == 200
            assert client.post("/v1/chat/completions", json=CHAT, headers={"X-API-Key": DEV_KEY}).status_code == 200
            rows = _rows(data_dir / "sluice.db", 2)
            entries = client.get("/admin/logs", headers={"Authorization": f"Bearer {ADMIN}"}).json()["data"]
    return rows, entries


def test_static_key_identifiers_are_peppered_and_shared_by_instances(tmp_path: Path,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    first, entries = _logged(tmp_path / "one", key_pepper=PEPPER)
    second, _ = _logged(tmp_path / "two", key_pepper=PEPPER)
    other, _ = _logged(tmp_path / "three", key_pepper=PEPPER + "-other")
    output = capfd.readouterr()
    assert len(first) == len(second) == len(other) == 2
    [(key_id, key_hash)] = {(row["key_id"], row["key_hash"]) for row in first}  # one identity for both headers
    assert key_hash and len(key_hash) == 64 and key_id.startswith("key-")
    for identifier in (key_id.removeprefix("key-"), key_hash):
        assert identifier not in PLAIN  # neither the SHA-256 of the key nor a part of it
    assert {(row["key_id"], row["key_hash"]) for row in second} == {(key_id, key_hash)}  # same pepper, same ids
    assert {(row["key_id"], row["key_hash"]) for row in other} != {(key_id, key_hash)}
    assert {(entry["api_key_id"], entry["api_key_hash"]) for entry in entries} == {(key_id, key_hash)}
    database = b"".join(path.read_bytes() for path in (tmp_path / "one").glob("sluice.db*"))
    assert PLAIN[:12].encode() not in database and DEV_KEY.encode() not in database
    assert PLAIN[:12] not in output.out and key_hash in output.out  # the request log's stdout lines


def test_the_pepper_file_names_keys_the_same_after_a_restart(tmp_path: Path) -> None:
    first, _ = _logged(tmp_path)
    second, _ = _logged(tmp_path)
    assert (tmp_path / "key-pepper").is_file()
    ids = {(row["key_id"], row["key_hash"]) for row in first + second}
    assert len(ids) == 1 and PLAIN[:12] not in str(ids)


def test_stored_credential_headers_show_only_that_they_were_sent(tmp_path: Path) -> None:
    rows, entries = _logged(tmp_path, key_pepper=PEPPER)
    assert DEV_KEY not in str(rows) and DEV_KEY not in str(entries)
    assert [entry["request"]["headers"].get("authorization") for entry in entries] == [None, "[REDACTED]"]
    assert [entry["request"]["headers"].get("x-api-key") for entry in entries] == ["[REDACTED]", None]
