"""/admin/prompts: versions added through the API render on chat requests, persist, and reach other instances."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import DEV_KEY, run_gateway

CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
prompts:
  - name: greet
    messages: [{role: user, content: "Hello {{who}}"}]
"""
ADMIN = {"Authorization": "Bearer admin-prompts"}
USER = {"Authorization": f"Bearer {DEV_KEY}"}


def chat_with(url: str, version: int) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=USER, timeout=10, json={
        "model": "mock", "prompt": {"name": "greet", "version": version, "variables": {"who": "Ada"}}})


def test_added_versions_render_persist_and_are_immutable(tmp_path: Path) -> None:
    shared = {"data_dir": str(tmp_path), "admin_key": "admin-prompts"}
    with run_gateway(CONFIG, **shared) as first:
        listed = httpx.get(first + "/admin/prompts", headers=ADMIN).json()["data"]
        assert [(p["name"], p["version"], p["source"], p["variables"]) for p in listed] == [
            ("greet", 1, "config", ["who"])]
        added = httpx.post(first + "/admin/prompts", headers=ADMIN, json={
            "name": "greet", "messages": [{"role": "user", "content": "Good evening, {{who}}."}]})
        assert added.status_code == 201, added.text
        assert added.json()["version"] == 2 and added.json()["source"] == "api"
        assert chat_with(first, 2).json()["choices"][0]["message"]["content"] == "Good evening, Ada."
        for taken in (1, 2):
            again = httpx.post(first + "/admin/prompts", headers=ADMIN, json={
                "name": "greet", "version": taken, "messages": [{"role": "user", "content": "x"}]})
            assert again.status_code == 409 and again.json()["error"]["code"] == "prompt_version_exists"
        bad = httpx.post(first + "/admin/prompts", headers=ADMIN, json={"name": "Not A Name", "messages": []})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        assert httpx.get(first + "/admin/prompts/nope", headers=ADMIN).status_code == 404
        assert httpx.get(first + "/admin/prompts", headers=USER).status_code in (401, 403)
    with run_gateway(CONFIG, **shared) as second:  # a new process on the same database sees version 2
        versions = httpx.get(second + "/admin/prompts/greet", headers=ADMIN).json()["data"]
        assert [(p["version"], p["source"]) for p in versions] == [(1, "config"), (2, "api")]
        assert chat_with(second, 2).json()["choices"][0]["message"]["content"] == "Good evening, Ada."
