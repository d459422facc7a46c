"""Key material: new secrets and ids, the recognisable prefix, and the peppered HMAC every key identifier comes from."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

logger = logging.getLogger("sluice.keys")

KEY_PREFIX = "sk-sluice-"
KEY_LENGTH = len(KEY_PREFIX) + 43
"""The prefix and 32 random bytes in URL-safe base64 without padding."""
SHOWN_CHARS = 14
PEPPER_FILE = "key-pepper"


def new_secret() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def shown_prefix(secret: str) -> str:
    """The part of a key shown in lists so people can recognise it, e.g. `sk-sluice-ab12`."""
    return secret[:SHOWN_CHARS]


def looks_managed(presented: str) -> bool:
    """Whether `presented` has the shape of a managed key (anything else is refused without a lookup)."""
    return len(presented) == KEY_LENGTH and presented.startswith(KEY_PREFIX)


def key_digest(pepper: bytes, secret: str) -> bytes:
    """HMAC-SHA256 of a key under the server's pepper: the only digest of a key Sluice makes (static and managed)."""
    template = _KEYED.get(pepper)
    if template is None:
        template = _keyed(pepper)
    mac = template.copy()
    mac.update(secret.encode("utf-8"))
    return mac.digest()


# An HMAC keyed with the pepper once and copied for each key: ~0.8 µs a digest against ~1.9 for `hmac.new` (its
# key set-up). Not `hmac.digest`: its one-shot call releases the GIL, and a request then waits for other threads to
# give it back (~1.8 ms against one busy thread, measured); an HMAC object's `update` keeps it for inputs this short.
_KEYED: dict[bytes, hmac.HMAC] = {}


def _keyed(pepper: bytes) -> hmac.HMAC:
    """The HMAC-SHA256 keyed with `pepper`, before any message."""
    if len(_KEYED) > 4:  # one pepper per process, in practice; tests make more
        _KEYED.clear()
    template = _KEYED[pepper] = hmac.new(pepper, digestmod=hashlib.sha256)
    return template


def key_hash(pepper: bytes, secret: str) -> str:
    """A key's identifier, `key_digest` in hex: what the api_keys table is searched by and the request log stores."""
    return key_digest(pepper, secret).hex()


def static_key_id(digest_hex: str) -> str:
    """The id of a static key without a name: `key-` and the first 12 hex digits of its peppered hash."""
    return "key-" + digest_hex[:12]


def load_pepper(configured: str | None, data_dir: str) -> bytes:
    """SLUICE_KEY_PEPPER, else `<data_dir>/key-pepper`, created (mode 0600) on first use."""
    if configured:
        return configured.encode("utf-8")
    path = Path(data_dir) / PEPPER_FILE
    if not path.exists():
        _create_pepper_file(path)
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise OSError(f"{path} is empty: delete it (keys made with it stop working) or set SLUICE_KEY_PEPPER")
    return value.encode("utf-8")


def _create_pepper_file(path: Path) -> None:
    """Write the file whole under a temporary name, then link it into place: concurrent workers agree on one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return
    finally:
        temporary.unlink(missing_ok=True)
    logger.warning("created the key pepper file %s (mode 0600): keys are hashed with it. Deployments with more than "
                   "one instance or host must set SLUICE_KEY_PEPPER to the same value everywhere instead", path)
