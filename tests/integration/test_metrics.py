"""/metrics parsed with prometheus_client's own parser: counters move by exactly the exchanges made."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from sluice.app import SluiceApp, create_app
from sluice.config import parse_config
from sluice.exchange import notify
from sluice.settings import Settings
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.request_metrics import FLUSH_SECONDS, MetricsObserver
from tests.conftest import DEV_KEY, MOCK_CONFIG
from tests.servers import serve
from tests.telemetry_support import CHAT_BODY, TOOL_STREAM_BODY, exchange

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[SluiceApp, str]]:
    prices = "request_log: {enabled: false}\nprices: {mock: {input_per_million: 1.0, output_per_million: 2.0}}\n"
    config = parse_config(MOCK_CONFIG + prices, "test.yaml")
    app = create_app(config, Settings(api_keys=[DEV_KEY], build="test", data_dir=str(tmp_path)))
    with serve(app) as url:
        yield app, url


def scrape(url: str) -> Samples:
    reply = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10)
    assert reply.status_code == 200, reply.text
    return samples(reply.text)


def test_counters_move_by_exactly_the_exchanges_observed(served: tuple[SluiceApp, str]) -> None:
    app, url = served
    before = scrape(url)
    route = "/v1/chat/completions"
    timeout = exchange("chat", CHAT_BODY, status=504, error="Upstream provider 'mock' timed out.",
                       error_type="upstream_error", error_code="upstream_timeout", response_body=None)
    refused = exchange("chat", {**CHAT_BODY, "model": "no-such-model"}, status=404, provider=None,
                       public_model="no-such-model", error="The model does not exist",
                       error_type="invalid_request_error", upstream_offset=None)
    for item in [*(exchange("chat", CHAT_BODY) for _ in range(3)), exchange("chat", TOOL_STREAM_BODY),
                 timeout, refused]:
        notify(app.gateway.observers, item)
    after = scrape(url)  # a scrape counts what the observer still holds first

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("sluice_requests_total", route=route, provider="mock", model="mock", status="200") == 4
    assert moved("sluice_requests_total", route=route, provider="mock", model="mock", status="504") == 1
    assert moved("sluice_requests_total", route=route, provider="", model="", status="404") == 1
    assert moved("sluice_tokens_total", provider="mock", model="mock", direction="prompt") == 3 * 6 + 3
    assert moved("sluice_tokens_total", provider="mock", model="mock", direction="completion") == 3 * 4 + 3
    assert moved("sluice_upstream_errors_total", provider="mock", kind="timeout") == 1
    cost = moved("sluice_cost_usd_total", provider="mock", model="mock")
    assert cost == pytest.approx(((3 * 6 + 3) * 1.0 + (3 * 4 + 3) * 2.0) / 1_000_000)
    assert moved("sluice_request_duration_seconds_count", route=route, provider="mock", model="mock") == 5
    assert moved("sluice_upstream_duration_seconds_count", provider="mock", model="mock") == 5
    assert moved("sluice_time_to_first_token_seconds_count", provider="mock", model="mock") == 1
    assert value(after, "sluice_in_flight_requests") == 0


def test_real_requests_are_counted(served: tuple[SluiceApp, str]) -> None:
    _, url = served
    before = scrape(url)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10) as client:
        for _ in range(5):
            assert client.post("/v1/chat/completions", json=CHAT_BODY).status_code == 200
    labels = {"route": "/v1/chat/completions", "provider": "mock", "model": "mock", "status": "200"}
    assert value(scrape(url), "sluice_requests_total", **labels) - value(before, "sluice_requests_total", **labels) == 5


WORKER = """
import sys
from sluice.exchange import notify
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.request_metrics import MetricsObserver
from tests.telemetry_support import CHAT_BODY, exchange

metrics = Metrics(sys.argv[1])
observer = MetricsObserver(metrics)
for _ in range(int(sys.argv[2])):
    notify([observer], exchange("chat", CHAT_BODY))
metrics.in_flight.inc()
observer.flush()
metrics.close()  # what Telemetry.aclose does at a worker's shutdown
"""


def test_worker_processes_add_up_without_double_counting(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", WORKER, str(tmp_path), str(count)], env=env, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    found = samples(generate_latest(registry).decode())
    labels = {"route": "/v1/chat/completions", "provider": "mock", "model": "mock", "status": "200"}
    assert value(found, "sluice_requests_total", **labels) == 7
    assert value(found, "sluice_tokens_total", provider="mock", model="mock", direction="prompt") == 7 * 6
    assert value(found, "sluice_in_flight_requests") == 0  # livesum: exited workers no longer count


def test_each_exchange_is_counted_as_it_ends_and_every_scrape_sees_all_of_them() -> None:
    """No backlog waits for a batch: each exchange is tallied as it ends, and its counts and durations reach a
    scrape (`Metrics.render`, as /metrics) or the next flush, whichever comes first."""

    async def scenario() -> tuple[float, float, float, float, float]:
        metrics = Metrics()
        observer = MetricsObserver(metrics)
        labels = {"route": "/v1/chat/completions", "provider": "mock", "model": "mock", "status": "200"}
        await observer.start()
        try:
            for _ in range(1_000):
                notify([observer], exchange("chat", CHAT_BODY))
            found = samples(generate_latest(metrics.registry).decode())
            before = value(found, "sluice_requests_total", **labels)
            durations_before = value(found, "sluice_request_duration_seconds_count", route="/v1/chat/completions",
                                     provider="mock", model="mock")
            found = samples(metrics.render().decode())
            durations = value(found, "sluice_request_duration_seconds_count", route="/v1/chat/completions",
                              provider="mock", model="mock")
            for _ in range(1_000):
                notify([observer], exchange("chat", CHAT_BODY))
            await asyncio.sleep(FLUSH_SECONDS * 3)
            found = samples(generate_latest(metrics.registry).decode())
            after = value(found, "sluice_requests_total", **labels)
            tokens = value(found, "sluice_tokens_total", provider="mock", model="mock", direction="prompt")
        finally:
            await observer.aclose()
        return before, durations_before, durations, after, tokens

    before, durations_before, durations, after, tokens = asyncio.run(scenario())
    assert before == durations_before == 0  # they wait for the flush (a scrape through /metrics flushes first)
    assert durations == 1_000
    assert after == 2_000
    assert tokens == 2_000 * 6


def test_the_in_flight_gauge_shows_the_gateways_count_at_each_flush(tmp_path: Path) -> None:
    config = parse_config(MOCK_CONFIG + "request_log: {enabled: false}\n", "test.yaml")
    app = create_app(config, Settings(api_keys=[DEV_KEY], build="test", data_dir=str(tmp_path)))
    gateway = app.gateway
    gateway.request_started()
    gateway.request_started()
    assert value(samples(gateway.metrics.render().decode()), "sluice_in_flight_requests") == 2
    gateway.request_finished()
    gateway.request_finished()
    assert value(samples(gateway.metrics.render().decode()), "sluice_in_flight_requests") == 0


CRASHING_WORKER = """
import os, sys
from sluice.telemetry.metrics import Metrics

metrics = Metrics(sys.argv[1])
metrics.requests.labels("/v1/chat/completions", "mock", "mock", "200").inc(5)
metrics.in_flight.inc(3)
os._exit(1)  # killed mid-request: no Metrics.close
"""

REPLACEMENT_WORKER = """
import sys
from sluice.telemetry.metrics import Metrics

metrics = Metrics(sys.argv[1])  # what a replacement worker does at start-up
metrics.close()
"""


def test_a_dead_workers_in_flight_requests_stop_counting(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    crashed = subprocess.run([sys.executable, "-c", CRASHING_WORKER, str(tmp_path)], env=env, timeout=60)
    assert crashed.returncode == 1
    subprocess.run([sys.executable, "-c", REPLACEMENT_WORKER, str(tmp_path)], env=env, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    found = samples(generate_latest(registry).decode())
    assert value(found, "sluice_in_flight_requests") == 0
    labels = {"route": "/v1/chat/completions", "provider": "mock", "model": "mock", "status": "200"}
    assert value(found, "sluice_requests_total", **labels) == 5  # what it answered still counts
