"""The admin request-log API through a served gateway: admin key, filters, cursors, entries and usage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from tests.conftest import run_gateway
from tests.request_log_support import make_exchange, seed

ADMIN = "sk-admin-test"


async def _prepare(data_dir: Path, count: int) -> list[str]:
    db = Database(f"sqlite+aiosqlite:///{data_dir}/sluice.db")
    await upgrade(db)
    now = time.time()  # recent: the gateway's retention task deletes entries older than 30 days at start-up
    rows = await seed(db, [make_exchange(index, key_id="key-a" if index % 2 else "key-b", started_at=now - 100 + index)
                           for index in range(count)])
    await db.aclose()
    return [row["id"] for row in rows]


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[tuple[httpx.Client, list[str]]]:
    ids = asyncio.run(_prepare(tmp_path, 15))
    with run_gateway(data_dir=str(tmp_path), admin_key=ADMIN) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as client:
            yield client, ids


def test_pages_of_entries_newest_first(admin: tuple[httpx.Client, list[str]]) -> None:
    client, ids = admin
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 4, "key_id": "key-a"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/admin/logs", params=params).json()
        assert all("body" not in entry["request"] for entry in page["data"])
        seen.extend(entry["log_id"] for entry in page["data"])
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert seen == [ids[index] for index in reversed(range(15)) if index % 2]


def test_one_entry_with_bodies(admin: tuple[httpx.Client, list[str]]) -> None:
    client, ids = admin
    entry = client.get(f"/admin/logs/{ids[3]}").json()
    assert entry["request_id"] == "req-00003"
    assert entry["request"]["body"]["messages"][0]["content"] == "hello number 3"
    assert entry["response"]["text"] == "hello number 3"
    assert entry["request"]["headers"]["authorization"] == "[REDACTED]"  # sent, never stored
    missing = client.get("/admin/logs/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = client.get("/admin/logs", params={"cursor": "garbage"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"


def test_usage(admin: tuple[httpx.Client, list[str]]) -> None:
    client, _ = admin
    report = client.get("/admin/usage", params={"bucket": "day"}).json()
    assert report["bucket"] == "day"
    per_key: dict[str, int] = {}
    for row in report["data"]:  # one day, or two if the test ran across midnight UTC
        per_key[row["key_id"]] = per_key.get(row["key_id"], 0) + row["requests"]
    assert per_key == {"key-a": 7, "key-b": 8}


def test_the_admin_key_is_required(admin: tuple[httpx.Client, list[str]]) -> None:
    client, _ = admin
    no_admin_scope = client.get("/admin/logs", headers={"Authorization": "Bearer sk-test-key"})
    assert no_admin_scope.status_code == 403
    assert client.get("/admin/logs", headers={"Authorization": "Bearer sk-wrong"}).status_code == 401
    assert client.get("/admin/usage", headers={"Authorization": ""}).status_code == 401
    assert client.get("/admin/logs", headers={"Authorization": "", "X-API-Key": ADMIN}).status_code == 200


def test_without_an_admin_key_only_admin_scoped_keys_get_in() -> None:
    with run_gateway() as url:
        response = httpx.get(url + "/admin/logs", headers={"Authorization": "Bearer sk-test-key"})
    assert response.status_code == 403 and "SLUICE_ADMIN_KEY" in response.json()["error"]["message"]


def test_with_the_request_log_disabled_the_admin_api_says_so() -> None:
    config = "providers:\n  mock: {type: mock}\nrequest_log: {enabled: false}\n"
    with run_gateway(config, admin_key=ADMIN) as url:
        response = httpx.get(url + "/admin/logs", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "request_log_disabled"
