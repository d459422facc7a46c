"""schemathesis over Sluice's own `/openapi.json`: every operation, called with a caller's key, the admin key and no
key, against a gateway on loopback (mock provider, an unreachable service, a prompt template; no network).

Checks on every response: no 5xx, every error in OpenAI's shape (`{"error": {"message", "type", ...}}`), the
status, content type, headers and body as the document declares them. Generation is derandomized (the same cases
in every run) and bounded: `MAX_EXAMPLES` per operation and auth, about 40 s on two cores. Two of schemathesis's
default checks are off: `positive_data_acceptance` (a schema cannot say "`messages` or `prompt`", "not both
`expires_at` and `expires_in_days`", or what an opaque cursor is, so valid-looking requests are rightly refused)
and `negative_data_rejection` (query values are strings, and pydantic reads `until=0.5` as a Unix time)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from sluice.app import create_app
from sluice.config import parse_config
from sluice.settings import Settings
from tests.conftest import DEV_KEY, MOCK_CONFIG
from tests.servers import free_port, serve

MAX_EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "12"))  # a longer local run: 100, SLUICE_FUZZ_RANDOM=1
ADMIN_KEY = "sk-admin-fuzz-0123456789abcdef"
AUTH = {"key": {"Authorization": f"Bearer {DEV_KEY}"}, "admin": {"Authorization": f"Bearer {ADMIN_KEY}"}, "none": {}}
EXCLUDED = [positive_data_acceptance, negative_data_rejection]


def config_text() -> str:
    """The mock model, a prompt template, and a service whose two instances are loopback ports nothing serves."""
    down = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    return MOCK_CONFIG + f"""
prompts:
  - {{name: greet, version: 1, messages: [{{role: user, content: "Hello {{{{who}}}}"}}]}}
services:
  svc:
    instances: [{{url: "{down[0]}"}}, {{url: "{down[1]}"}}]
    health_check: {{path: /health, interval_seconds: 60}}
routes:
  - {{path: "/svc/**", service: svc}}
"""


def _document() -> dict[str, Any]:
    """The OpenAPI document of a gateway for this config (built, not started: schemathesis needs it at collection)."""
    with tempfile.TemporaryDirectory(prefix="sluice-fuzz-") as data_dir:
        app = create_app(parse_config(CONFIG_TEXT, "fuzz.yaml"), _settings(data_dir))
        return app.api.openapi()


def _settings(data_dir: str) -> Settings:
    return Settings(api_keys=[DEV_KEY], admin_key=ADMIN_KEY, build="test", data_dir=data_dir)


CONFIG_TEXT = config_text()
DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict({
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": not os.environ.get("SLUICE_FUZZ_RANDOM"),
                   "with-security-parameters": False},  # no generated credentials: the variant's, or none
}))


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    """A gateway on loopback, serving the document the cases were generated from."""
    with tempfile.TemporaryDirectory(prefix="sluice-fuzz-") as data_dir:
        with serve(create_app(parse_config(CONFIG_TEXT, "fuzz.yaml"), _settings(data_dir))) as url:
            assert httpx.get(f"{url}/openapi.json", timeout=10).json() == DOCUMENT
            yield url


def openai_error_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every 4xx and 5xx Sluice answers itself is OpenAI's error object (passthrough relays the upstream's)."""
    if response.status_code < 400 or case.path.startswith("/provider/"):
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not an OpenAI error: {response.text}"
    error = body["error"]
    assert isinstance(error.get("message"), str) and error["message"], f"no message: {response.text}"
    assert isinstance(error.get("type"), str) and error["type"], f"no type: {response.text}"
    return None


@pytest.mark.parametrize("auth", list(AUTH))
@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation(case: schemathesis.Case, auth: str, gateway_url: str) -> None:
    case.call_and_validate(base_url=gateway_url, headers=AUTH[auth], additional_checks=[openai_error_shape],
                           excluded_checks=EXCLUDED, timeout=10)


# The fuzz's finds, pinned so they stay fixed whatever cases a schemathesis release generates.


def test_the_document_declares_the_errors_sluice_answers() -> None:
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, f"{method} {path}: validation errors are 400s"
            if operation.get("security"):
                assert {"401"} <= set(responses), f"{method} {path}"
            if path.startswith("/admin/"):
                assert {"401", "403", "429"} <= set(responses), f"{method} {path}"
                if operation.get("parameters") or "requestBody" in operation:
                    assert "400" in responses, f"{method} {path}"


def test_an_expiry_past_the_year_9999_is_refused(gateway_url: str) -> None:
    reply = httpx.post(f"{gateway_url}/admin/keys", json={"name": "far", "expires_in_days": 1e300},
                       headers=AUTH["admin"], timeout=10)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "expires_in_days"


def test_a_prompt_version_the_table_cannot_hold_is_refused(gateway_url: str) -> None:
    reply = httpx.post(f"{gateway_url}/admin/prompts", headers=AUTH["admin"], timeout=10,
                       json={"name": "big", "version": 2**40, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "version"


def test_a_405_names_every_method_of_the_path(gateway_url: str) -> None:
    reply = httpx.request("OPTIONS", f"{gateway_url}/admin/keys", headers=AUTH["admin"], timeout=10)
    assert reply.status_code == 405
    assert {"GET", "POST"} <= {method.strip() for method in reply.headers["allow"].split(",")}
    assert reply.json()["error"]["code"] == "method_not_allowed"
