"""Two `sluice serve` processes behind deploy/nginx/sluice.conf act as one gateway (issue 18, item 5, in part).

Sharing one PostgreSQL database and one Redis: a managed key created through either works on both and its
revocation reaches both within `keys.cache_ttl_seconds`; an admin change to a service's instances, made
through either, is followed by both within the 2 s poll; a dead deployment's breaker, opened by one, keeps the
other from calling it too (breakers are polled from Redis every 0.5 s); one budget is spent across both (another
instance sees spend within about 2 s, docs/budgets.md); a response cached by one is a hit on the other.
nginx's access log names the instance that answered each request, which is how the test knows both took part."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.deploy.test_deploy_nginx import Front, https_client, nginx_in_front
from tests.e2e.test_serve import run_serve
from tests.integration.conftest import fresh_postgres_database
from tests.limits_support import redis_backend
from tests.servers import serve

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

ADMIN = "sk-admin-many-instances"
KEY_TTL = 1.0
CONFIG = f"""
providers:
  mock: {{type: mock}}
  dead: {{type: openai, base_url: "http://127.0.0.1:{{dead_port}}/v1", api_key: unused, retries: {{attempts: 0}}}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
  - {{name: flaky, provider: dead, model: m, fallbacks: [mock]}}   # a lone deployment: its breaker opens at once
  - {{name: cached, provider: mock, model: mock-1, cache: {{ttl_seconds: 60, shared: true}}}}
services:
  svc: {{instances: [{{url: "{{old_url}}"}}]}}
routes:
  - {{path: "/svc/**", service: svc, strip_prefix: /svc}}
prices:
  mock: {{input_per_million: 1000000, output_per_million: 1000000}}   # about $1 a request: one spends a budget
limits: {{{{backend}}}}
keys: {{cache_ttl_seconds: {KEY_TTL}}}
request_log: {{auto_migrate: true}}
"""


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this module's own (skips without SLUICE_TEST_POSTGRES_URL)."""
    manager = fresh_postgres_database()
    loop = asyncio.new_event_loop()
    try:
        url = loop.run_until_complete(manager.__aenter__())
        try:
            yield url
        finally:
            loop.run_until_complete(manager.__aexit__(None, None, None))
    finally:
        loop.close()


def answering(text: str) -> object:
    """A plain ASGI app answering `text` to every request: a service instance."""
    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": text.encode()})  # type: ignore[operator]
    return app


class DeadUpstream:
    """A port that accepts connections and closes them at once (a broken upstream), counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.sock.accept()
                self.connections += 1
                connection.close()


@dataclass
class Pair:
    front: Front
    ports: list[int]
    dead: DeadUpstream
    old_url: str
    new_url: str

    def upstreams_since(self, offset: int) -> list[int]:
        """The instance port of each request nginx logged after byte `offset` of its access log."""
        text = (self.front.prefix / "access.log").read_text()[offset:]
        return [int(port) for port in re.findall(r"upstream=127\.0\.0\.1:(\d+)", text)]

    def log_size(self) -> int:
        return len((self.front.prefix / "access.log").read_text())


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    dead = DeadUpstream()
    with contextlib.ExitStack() as stack, redis_backend() as backend, postgres_database() as database:
        stack.callback(dead.sock.close)
        old_url = stack.enter_context(serve(answering("old instance"), lifespan="off"))
        new_url = stack.enter_context(serve(answering("new instance"), lifespan="off"))
        ports = []
        for name in ("a", "b"):
            env = {"SLUICE_REDIS_URL": backend.settings["redis_url"], "SLUICE_DATABASE_URL": database,
                   "SLUICE_ADMIN_KEY": ADMIN, "SLUICE_KEY_PEPPER": "one-pepper-for-both-instances"}
            config = CONFIG.replace("{backend}", backend.yaml).replace("{dead_port}", str(dead.port)) \
                .replace("{old_url}", old_url)
            url, _ = stack.enter_context(run_serve(config,
                                                   tmp_path_factory.mktemp(f"many-{name}"), env))
            ports.append(int(url.rsplit(":", 1)[1]))
        yield Pair(stack.enter_context(nginx_in_front(ports)), ports, dead, old_url, new_url)


def chat(client: httpx.Client, url: str, key: str, model: str = "mock", text: str = "hi") -> httpx.Response:
    return client.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": model, "messages": [{"role": "user", "content": text}]})


def test_one_revocation_reaches_both_instances(pair: Pair) -> None:
    url = pair.front.url
    with https_client(pair.front) as client:
        created = client.post(url + "/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                              json={"name": "behind-nginx"})
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        offset = pair.log_size()
        assert [chat(client, url, key).status_code for _ in range(6)] == [200] * 6
        assert set(pair.upstreams_since(offset)) == set(pair.ports)  # both instances know the new key
        revoked = client.post(f"{url}/admin/keys/{key_id}/revoke", headers={"Authorization": f"Bearer {ADMIN}"})
        assert revoked.status_code == 200, revoked.text
        started = time.monotonic()
        while True:
            offset = pair.log_size()
            statuses = [chat(client, url, key).status_code for _ in range(6)]
            if statuses == [401] * 6 and set(pair.upstreams_since(offset)) == set(pair.ports):
                break
            assert time.monotonic() - started < KEY_TTL + 3, statuses  # the documented bound, plus slack
            time.sleep(0.1)


def test_a_response_cached_by_one_instance_is_a_hit_on_the_other(pair: Pair) -> None:
    url = pair.front.url
    with https_client(pair.front) as client:
        first = chat(client, url, "sk-e2e", "cached", "cache me once")
        assert first.status_code == 200 and first.headers["x-cache"] == "MISS", first.headers
        offset = pair.log_size()
        replies = [chat(client, url, "sk-e2e", "cached", "cache me once") for _ in range(6)]
    assert [reply.headers["x-cache"] for reply in replies] == ["HIT"] * 6
    assert {reply.json()["choices"][0]["message"]["content"] for reply in replies} == \
        {first.json()["choices"][0]["message"]["content"]}
    assert set(pair.upstreams_since(offset)) == set(pair.ports)  # hits answered by both instances


def test_one_budget_across_both_instances(pair: Pair) -> None:
    url = pair.front.url
    with https_client(pair.front) as client:
        created = client.post(url + "/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                              json={"name": "one-budget", "budget": {"usd": 1, "period": "total"}})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert chat(client, url, key, text="spend it all").status_code == 200  # ~$2: the budget is gone
        started = time.monotonic()
        while True:
            offset = pair.log_size()
            replies = [chat(client, url, key) for _ in range(6)]
            if [r.status_code for r in replies] == [429] * 6 and set(pair.upstreams_since(offset)) == set(pair.ports):
                break
            assert time.monotonic() - started < 2 + 3, [r.status_code for r in replies]  # documented ~2 s, plus slack
            time.sleep(0.2)
    assert {reply.json()["error"]["code"] for reply in replies} == {"insufficient_quota"}


def test_one_breaker_for_a_dead_deployment(pair: Pair) -> None:
    url = pair.front.url
    with https_client(pair.front) as client:
        first = chat(client, url, "sk-e2e", "flaky")
        assert first.status_code == 200 and first.headers["x-sluice-provider"] == "mock", first.headers  # fallback
        tried = pair.dead.connections
        assert tried >= 1
        time.sleep(1.0)  # the breaker one instance opened is in Redis; the other polls it every 0.5 s
        offset = pair.log_size()
        replies = [chat(client, url, "sk-e2e", "flaky") for _ in range(6)]
    assert [(r.status_code, r.headers["x-sluice-provider"]) for r in replies] == [(200, "mock")] * 6
    assert set(pair.upstreams_since(offset)) == set(pair.ports)
    assert pair.dead.connections == tried  # neither instance called the dead deployment again


def test_one_admin_change_to_a_service(pair: Pair) -> None:
    url, admin = pair.front.url, {"Authorization": f"Bearer {ADMIN}"}
    with https_client(pair.front) as client:
        def answers() -> tuple[set[str], set[int]]:
            offset = pair.log_size()
            texts = [client.get(url + "/svc/hello", headers={"Authorization": "Bearer sk-e2e"}).text
                     for _ in range(6)]
            return set(texts), set(pair.upstreams_since(offset))
        assert answers() == ({"old instance"}, set(pair.ports))
        added = client.post(url + "/admin/services/svc/instances", headers=admin, json={"url": pair.new_url})
        assert added.status_code == 201, added.text
        instances = client.get(url + "/admin/services/svc", headers=admin).json()["instances"]
        (old,) = [i["instance_id"] for i in instances if i["url"].rstrip("/") == pair.old_url]
        removed = client.delete(f"{url}/admin/services/svc/instances/{old}", headers=admin)
        assert removed.status_code in (200, 204), removed.text
        started = time.monotonic()
        while (seen := answers()) != ({"new instance"}, set(pair.ports)):
            assert time.monotonic() - started < 2 + 3, seen  # every process re-reads the changes every 2 s
            time.sleep(0.2)
