"""Sluice on bench/sluice-routing.yaml as a bench target (issue 15's figures), and the routing counters of its
/metrics."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import catalog
from loadgen import Call
from targets import BENCH, ROOT, SLUICE_KEY, Launch, Target, chat_body

CONFIG = BENCH / "sluice-routing.yaml"
OFF_ENV = {"SLUICE_REDIS_URL": ""}
"""Whatever the calling shell has, a bench Sluice uses no Redis unless a variant says so."""


def target(label: str, model: str, env: dict[str, str] | None = None, config: Path = CONFIG,
           key: str = SLUICE_KEY, warm_model: str = "gpt-one") -> Target:
    """One Sluice worker on `config`. Scenario "chat" asks `model`; "warm" asks `warm_model` (what the readiness
    probe and warm-ups send when asking `model` would change what is measured, e.g. a flaky deployment's
    breaker). `key` authenticates the requests; SLUICE_API_KEYS stays the bench key, which /metrics needs."""
    def launch(port: int, upstream: str) -> Launch:
        cmd = [str(ROOT / ".venv/bin/sluice"), "serve", "--config", str(config), "--host", "127.0.0.1", "--port",
               str(port), "--workers", "1"]
        return Launch(cmd, {**OFF_ENV, "SLUICE_API_KEYS": SLUICE_KEY, "BENCH_UPSTREAM": upstream, **(env or {})},
                      ROOT)

    def request(port: int, scenario: str) -> Call | str:
        asked = model if scenario != "warm" else warm_model
        return Call(port, "/v1/chat/completions", chat_body(asked), (("Authorization", f"Bearer {key}"),))

    return Target("sluice", label, launch, request, version=catalog.sluice_version,
                  unavailable=catalog.sluice_missing)


def counters(port: int, names: tuple[str, ...]) -> dict[str, float]:
    """The samples of `names` on a Sluice's /metrics, keyed `name{label=value,...}` (every label), and each name's
    total under the bare name."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {SLUICE_KEY}"})
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}"] = sample.value
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """`median (lowest–highest)` of `values`."""
    ordered = sorted(values)
    middle = ordered[len(ordered) // 2] if len(ordered) % 2 else (ordered[len(ordered) // 2 - 1]
                                                                 + ordered[len(ordered) // 2]) / 2
    return f"{fmt(middle)} ({fmt(ordered[0])}–{fmt(ordered[-1])})" if len(ordered) > 1 else fmt(middle)
