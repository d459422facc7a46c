"""Who may scrape /metrics: API keys, the admin key, or Basic credentials, as the config says; refusals say why."""

from __future__ import annotations

import httpx

from tests.conftest import DEV_KEY, run_gateway

BASIC_CONFIG = """
providers:
  mock: {type: mock}
metrics:
  require_key: false
  basic_auth: {username: prometheus, password: "s3cret-scrape"}
"""
BOTH_CONFIG = BASIC_CONFIG.replace("require_key: false", "require_key: true")
ADMIN_KEY = "admin-metrics-key"


def test_basic_credentials_open_metrics_and_api_keys_do_not() -> None:
    with run_gateway(BASIC_CONFIG, admin_key=ADMIN_KEY) as url:
        assert httpx.get(url + "/metrics", auth=("prometheus", "s3cret-scrape")).status_code == 200
        wrong = httpx.get(url + "/metrics", auth=("prometheus", "nope"))
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == 'Basic realm="sluice metrics"'
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        by_key = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {DEV_KEY}"})
        assert by_key.status_code == 401 and "metrics.basic_auth" in by_key.json()["error"]["message"]
        assert httpx.get(url + "/metrics", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        anonymous = httpx.get(url + "/metrics")
        assert anonymous.status_code == 401 and "www-authenticate" in anonymous.headers


def test_basic_credentials_and_api_keys_both_work_when_keys_are_required() -> None:
    with run_gateway(BOTH_CONFIG) as url:
        assert httpx.get(url + "/metrics", auth=("prometheus", "s3cret-scrape")).status_code == 200
        assert httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {DEV_KEY}"}).status_code == 200
        assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        garbled = httpx.get(url + "/metrics", headers={"Authorization": "Basic !!!not-base64"})
        assert garbled.status_code == 401 and garbled.json()["error"]["message"].startswith("Incorrect Basic")
