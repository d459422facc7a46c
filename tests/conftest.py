"""Fixtures: a real Sluice server on a loopback port, built from config text."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from sluice.app import create_app
from sluice.config import parse_config
from sluice.settings import Settings
from tests.phoenix import phoenix  # noqa: F401  (session fixture: one real Phoenix server per test run)
from tests.servers import serve

DEV_KEY = "sk-test-key"
MOCK_CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1, aliases: [mock-alias]}
"""

GatewayFactory = Callable[..., contextlib.AbstractContextManager[str]]


@contextlib.contextmanager
def run_gateway(config_text: str = MOCK_CONFIG, *, keys: tuple[str, ...] = (DEV_KEY,),
                allow_no_auth: bool = False, **settings: Any) -> Iterator[str]:
    """Serve a Sluice app for `config_text` on loopback and yield its base URL.

    Extra keyword arguments are Settings fields; `data_dir` (the request log's SQLite file) defaults to a
    temporary directory removed afterwards."""
    config = parse_config(config_text, "test.yaml")
    with tempfile.TemporaryDirectory(prefix="sluice-test-") as data_dir:
        resolved = Settings(api_keys=list(keys), allow_no_auth=allow_no_auth, build="test",
                            **{"data_dir": data_dir, **settings})
        with serve(create_app(config, resolved)) as url:
            yield url


@pytest.fixture
def gateway_factory() -> GatewayFactory:
    return run_gateway


@pytest.fixture
def gateway_url() -> Iterator[str]:
    with run_gateway() as url:
        yield url


@pytest.fixture
def client(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10) as http:
        yield http
