"""Passthrough URLs: a path that passed its checks is remembered, never a refused one, never a query."""

from __future__ import annotations

import pytest

from sluice.config import AzureProviderConfig, OpenAIProviderConfig
from sluice.errors import InvalidRequest
from sluice.providers.passthrough import CHECKED_PATHS, target_for


def test_the_same_path_gives_the_same_url_and_a_bad_one_is_refused_every_time() -> None:
    target = target_for("up", OpenAIProviderConfig(type="openai", base_url="https://api.example.com/v1"))
    for _ in range(3):
        assert target.url("/chat/completions", b"") == "https://api.example.com/v1/chat/completions"
        with pytest.raises(InvalidRequest):
            target.url("/%2e%2e/admin", b"")
    for n in range(CHECKED_PATHS + 10):  # more paths than are remembered: the oldest are checked again
        assert target.url(f"/files/{n}", b"") == f"https://api.example.com/v1/files/{n}"
    with pytest.raises(InvalidRequest):
        target.url("/%2e%2e/admin", b"")


def test_a_query_is_checked_and_stripped_of_credentials_each_time() -> None:
    target = target_for("az", AzureProviderConfig(type="azure", base_url="https://az.example.com/openai"))
    plain = "https://az.example.com/openai/deployments/d?api-version=2024-10-21"
    assert target.url("/deployments/d", b"") == plain
    assert target.url("/deployments/d", b"key=secret&x=1") == \
        "https://az.example.com/openai/deployments/d?x=1&api-version=2024-10-21"
    assert target.url("/deployments/d", b"") == plain
    with pytest.raises(InvalidRequest):
        target.url("/deployments/d", b"x=\x01")
