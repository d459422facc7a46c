"""`sluice serve` with JWTs as the only way in: it starts without API keys, and its granian worker fetches the JWKS
with its own pooled client and takes a token on the OpenAI routes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.test_serve import stop_group
from tests.integration.test_jwt_auth import EC_KEY, RSA_KEY, config, issuer, jwk, token
from tests.servers import free_port


def test_serve_with_jwts_only(tmp_path: Path) -> None:
    with issuer(jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1")) as (published, jwks_url):
        (tmp_path / "sluice.yaml").write_text(config(jwks_url))
        port, log = free_port(), tmp_path / "serve.log"
        env = {name: value for name, value in os.environ.items() if name != "SLUICE_API_KEYS"}
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "sluice", "serve", "--config", str(tmp_path / "sluice.yaml"), "--port",
                 str(port), "--workers", "1"], env=env | {"SLUICE_DATA_DIR": str(tmp_path / "data")}, stdout=sink,
                stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not _healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sluice serve did not start: {log.read_text()}")
                time.sleep(0.1)
            sdk = openai.OpenAI(base_url=url + "/v1", api_key=token(EC_KEY, "ec-1", "ES256"), max_retries=0)
            reply = sdk.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content
            assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-some-key"}).status_code == 401
            assert published.fetches == 1
        finally:
            stop_group(process)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
