"""The `jwt:` section refuses what would let a token through unchecked: `none`, HMAC algorithms, no key source."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sluice.config import ConfigError, parse_config

BASE = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
jwt: {issuer: "https://issuer.test", audience: sluice, %s}
"""
JWKS = 'jwks_url: "https://issuer.test/jwks.json"'


@pytest.mark.parametrize(("settings", "message"), [
    (f"algorithms: [none], {JWKS}", "'none' is refused (unsigned tokens"),
    (f"algorithms: [RS256, HS256], {JWKS}", "'HS256' is refused (a shared-secret algorithm"),
    (f"algorithms: [RS1], {JWKS}", "'RS1' is refused (not a supported"),
    ("algorithms: [RS256]", "give one of jwks_url"),
    (f'{JWKS}, public_key_file: "/tmp/key.pem"', "give one of jwks_url"),
    ('jwks_url: "file:///etc/keys"', "must be an http:// or https:// URL"),
    ('public_key_file: "/nonexistent/issuer.pem"', "public_key_file: [Errno 2]"),
])
def test_refused_jwt_settings(settings: str, message: str) -> None:
    with pytest.raises(ConfigError, match="jwt") as raised:
        parse_config(BASE % settings, "test.yaml")
    assert message in str(raised.value)


def test_a_pem_file_must_hold_a_public_key(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "private.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="holds no PEM public key or certificate"):
        parse_config(BASE % f'algorithms: [ES256], public_key_file: "{private}"', "test.yaml")
    public = tmp_path / "public.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    config = parse_config(BASE % f'algorithms: [ES256], public_key_file: "{public}"', "test.yaml")
    assert config.jwt is not None and config.jwt.algorithms == ["ES256"]
