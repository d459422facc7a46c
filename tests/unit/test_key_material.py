"""Managed key material: the secret's shape, the shown prefix, the peppered hash and the pepper file."""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from sluice.keys.hashing import KEY_PREFIX, key_hash, load_pepper, looks_managed, new_key_id, new_secret, shown_prefix
from sluice.settings import Settings


def test_a_secret_is_the_prefix_and_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert secret.startswith(KEY_PREFIX) and looks_managed(secret) and "=" not in secret
        assert len(base64.urlsafe_b64decode(secret.removeprefix(KEY_PREFIX) + "=")) == 32
        assert shown_prefix(secret) == secret[:14]
    assert new_key_id().startswith("key_") and len(new_key_id()) == 20
    for other in ("sk-sluice-short", "sk-other-" + "a" * 44, "", new_secret() + "a"):
        assert not looks_managed(other)


def test_the_hash_depends_on_the_pepper() -> None:
    secret = new_secret()
    assert key_hash(b"pepper-one-pepper-one", secret) == key_hash(b"pepper-one-pepper-one", secret)
    assert key_hash(b"pepper-one-pepper-one", secret) != key_hash(b"pepper-two-pepper-two", secret)
    assert len(key_hash(b"p" * 16, secret)) == 64 and secret not in key_hash(b"p" * 16, secret)


def test_the_configured_pepper_wins(tmp_path: Path) -> None:
    assert load_pepper("from-the-environment", str(tmp_path)) == b"from-the-environment"
    assert not (tmp_path / "key-pepper").exists()


def test_the_pepper_file_is_made_once_private_and_with_a_warning(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "data"
    results: list[bytes] = []
    with caplog.at_level(logging.WARNING, "sluice.keys"):
        threads = [threading.Thread(target=lambda: results.append(load_pepper(None, str(data_dir))))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(set(results)) == 1 and len(results[0]) >= 32
    path = data_dir / "key-pepper"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [path] == list(data_dir.iterdir())
    assert "SLUICE_KEY_PEPPER" in caplog.text and caplog.text.count("created the key pepper file") == 1
    assert load_pepper(None, str(data_dir)) == results[0]


def test_an_empty_pepper_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "key-pepper").write_text("")
    with pytest.raises(OSError, match="SLUICE_KEY_PEPPER"):
        load_pepper(None, str(tmp_path))


def test_a_short_configured_pepper_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(key_pepper="too-short")
    assert Settings(key_pepper="x" * 16).key_pepper is not None
