"""`health_check:` in sluice.yaml (per provider, per deployment, the shorthands, what is refused) and the rise/fall
thresholds of a probe."""

from __future__ import annotations

import pytest

from sluice.config import ConfigError, SluiceConfig, parse_config
from sluice.routing.health import HEALTHY, UNEXPECTED_STATUS, CheckResult, Probe, effective_check
from sluice.routing.options import HealthCheckOptions


def config(provider_check: str = "", deployment_check: str = "") -> SluiceConfig:
    return parse_config(f"""
providers:
  vllm: {{type: openai, base_url: "http://127.0.0.1:8000/v1"{provider_check}}}
  openai: {{type: openai, base_url: "https://api.openai.com/v1"}}
models:
  - name: m
    deployments: [{{provider: vllm, model: x{deployment_check}}}, {{provider: openai, model: y}}]
""", "test.yaml")


def test_checks_are_off_unless_set_and_true_takes_every_default() -> None:
    off = config()
    assert effective_check(off, "vllm", None) is None and effective_check(off, "openai", None) is None
    on = config(", health_check: true")
    assert effective_check(on, "vllm", None) == HealthCheckOptions()
    assert HealthCheckOptions() == HealthCheckOptions(path="/models", method="GET", interval_seconds=10,
                                                      timeout_seconds=2, expected_status=(200,),
                                                      unhealthy_threshold=1, healthy_threshold=1)
    assert effective_check(on, "openai", None) is None


def test_a_deployments_check_replaces_its_providers() -> None:
    both = config(", health_check: {path: /health, interval_seconds: 5}",
                  ", health_check: {path: /ping, timeout_seconds: 1}")
    deployment = both.models[0].deployments[0].health_check
    check = effective_check(both, "vllm", deployment)
    assert check is not None and (check.path, check.interval_seconds, check.timeout_seconds) == ("/ping", 10, 1)
    off = config(", health_check: true", ", health_check: false")
    assert effective_check(off, "vllm", off.models[0].deployments[0].health_check) is None


@pytest.mark.parametrize(("check", "problem"), [
    ("{path: models}", "starts with '/'"),
    ("{path: /../admin}", "'..' segments"),
    ("{path: //evil.example/x}", "empty segments"),
    ("{expected_status: [700]}", "not an HTTP status"),
    ("{expected_status: []}", "expected_status"),
    ("{interval_seconds: 0}", "interval_seconds"),
    ("{method: POST}", "method"),
    ("{unhealthy_threshold: 0}", "unhealthy_threshold"),
    ("{pth: /x}", "pth"),
])
def test_a_bad_check_is_refused_naming_the_key(check: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config(f", health_check: {check}")
    assert "providers.vllm.health_check" in str(refused.value) and problem in str(refused.value)


def test_a_check_on_a_mock_deployment_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.deployments\[0\]\.health_check: .*mock"):
        parse_config("""
providers: {mock: {type: mock}}
models:
  - name: m
    deployments: [{provider: mock, model: x, health_check: true}]
""", "test.yaml")


def result(passed: bool) -> CheckResult:
    return CheckResult(0.0, HEALTHY if passed else UNEXPECTED_STATUS, 200 if passed else 503, 0.01, "/models")


def test_thresholds_count_consecutive_results_only() -> None:
    probe = Probe("vllm", HealthCheckOptions(unhealthy_threshold=2, healthy_threshold=3), "http://x/v1/models", [])
    assert [probe.record(result(passed)) for passed in (False, True, False)] == [False, False, False]
    assert probe.healthy  # two failures, but not in a row
    assert probe.record(result(False)) is True and not probe.healthy
    assert [probe.record(result(passed)) for passed in (True, True, False, True, True)] == [False] * 5
    assert not probe.healthy
    assert probe.record(result(True)) is True and probe.healthy
