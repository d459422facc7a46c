"""The public keys JWTs are checked with: a PEM file, or the issuer's JWKS (fetched with a pooled client, cached,
fetched again on an unknown `kid`, and never more often than `jwks_refresh_min_seconds`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK, PyJWTError
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from pyreqwest.client import Client, ClientBuilder

from sluice.errors import ServiceUnavailable

logger = logging.getLogger("sluice.keys")

Jwk = dict[str, Any]
MAX_JWKS_BYTES = 1 << 20
"""A JWKS larger than this is refused (real ones are a few kB)."""


def read_public_key(path: str | Path) -> Jwk:
    """The JWK of the PEM public key (or certificate) in `path`; OSError or ValueError saying what is wrong."""
    data = Path(path).read_bytes()
    key: Any
    try:
        key = load_pem_public_key(data)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ValueError(f"{path} holds no PEM public key or certificate") from None
    if isinstance(key, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(key, as_dict=True)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(key, as_dict=True)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return OKPAlgorithm.to_jwk(key, as_dict=True)
    raise ValueError(f"{path}: a {type(key).__name__} cannot check JWT signatures (RSA, EC or Ed25519 keys can)")


class KeySet:
    """The usable signing keys of one JWKS (or the one PEM key), found by `kid` and algorithm."""

    def __init__(self, keys: Iterable[Jwk], *, match_kid: bool = True) -> None:
        """`match_kid=False` (a PEM key, which has no `kid`): a token's `kid` is not looked at."""
        self.keys = [key for key in keys if isinstance(key, dict) and key.get("use", "sig") == "sig"]
        self.kids = frozenset(key["kid"] for key in self.keys if isinstance(key.get("kid"), str))
        self._match_kid = match_kid
        self._loaded: dict[tuple[str | None, str], PyJWK | None] = {}

    def has(self, kid: str | None) -> bool:
        return not self._match_kid or kid is None or kid in self.kids

    def find(self, kid: str | None, algorithm: str) -> PyJWK | None:
        """The key for a token's `kid` and `alg`: with no `kid`, only when one key alone could be meant."""
        slot = (kid if self._match_kid else None, algorithm)
        if slot in self._loaded:
            return self._loaded[slot]
        candidates = [key for key in self.keys if key.get("alg", algorithm) == algorithm]
        if self._match_kid and kid is not None:
            candidates = [key for key in candidates if key.get("kid") == kid]
        found = None
        if kid is not None or len(candidates) == 1:
            for candidate in candidates:
                try:
                    found = PyJWK(candidate, algorithm)  # refuses a key of another type or curve than `alg`'s
                    break
                except PyJWTError:
                    continue
        if len(self._loaded) < 256:
            self._loaded[slot] = found
        return found


class KeySource(Protocol):
    async def key(self, kid: str | None, algorithm: str) -> PyJWK | None: ...

    async def aclose(self) -> None: ...


class PemKey:
    """One public key from a PEM file, read at start-up."""

    def __init__(self, path: str) -> None:
        self._keys = KeySet([read_public_key(path)], match_kid=False)

    async def key(self, kid: str | None, algorithm: str) -> PyJWK | None:
        return self._keys.find(kid, algorithm)

    async def aclose(self) -> None:
        pass


class JwksKeys:
    """The issuer's JWKS: fetched on first use, then every `cache_seconds` in the background (the keys in hand
    keep serving), and at once for a `kid` it lacks; one fetch at a time, at most one per `refresh_min_seconds`."""

    def __init__(self, url: str, *, cache_seconds: float, refresh_min_seconds: float, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.fetches = 0
        """Fetches started (tests and debugging)."""
        self._cache_seconds = cache_seconds
        self._refresh_min = refresh_min_seconds
        self._timeout = timeout
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._fetch: asyncio.Task[KeySet] | None = None
        self._client: Client | None = None

    async def key(self, kid: str | None, algorithm: str) -> PyJWK | None:
        keys = self._keys
        if keys is None:
            keys = await self._wait(self._start())
            if keys is None:
                raise ServiceUnavailable("The token issuer's keys (JWKS) are unavailable; try again later.")
        elif self._clock() - self._fetched_at >= self._cache_seconds:
            self._start()
        if not keys.has(kid):
            # The issuer may have rotated its keys: look again, unless that was done moments ago.
            keys = await self._wait(self._start()) or keys
        return keys.find(kid, algorithm)

    async def aclose(self) -> None:
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _start(self) -> asyncio.Task[KeySet] | None:
        """The fetch in flight, else a new one unless the last began less than `refresh_min_seconds` ago."""
        if self._fetch is not None and not self._fetch.done():
            return self._fetch
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self._refresh_min:
            return None
        self._attempted_at = now
        self._fetch = asyncio.create_task(self._download())
        self._fetch.add_done_callback(_retrieve)
        return self._fetch

    async def _wait(self, fetch: asyncio.Task[KeySet] | None) -> KeySet | None:
        """The keys `fetch` brings, or those in hand (None if none) when it fails or none may start."""
        if fetch is None:
            return self._keys
        try:
            return await asyncio.shield(fetch)
        except Exception:  # noqa: BLE001 - logged by _download; the keys in hand (if any) serve meanwhile
            return self._keys

    async def _download(self) -> KeySet:
        self.fetches += 1
        try:
            async with asyncio.timeout(self._timeout + 1):
                reply = await self._http().get(self.url).header("Accept", "application/json").build().send()
                status, body = reply.status, bytes(await reply.bytes())
            if status != 200:
                raise ValueError(f"HTTP {status}")
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"{len(body)} bytes, over {MAX_JWKS_BYTES}")
            document = orjson.loads(body)
            if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                raise ValueError("not a JWK set (an object with a `keys` list)")
            keys = KeySet(document["keys"])
        except Exception as exc:
            logger.warning("jwt: cannot fetch the JWKS %s: %s: %s", self.url, type(exc).__name__, exc)
            raise
        if not keys.keys:
            logger.warning("jwt: the JWKS %s has no signing keys", self.url)
        self._keys, self._fetched_at = keys, self._clock()
        logger.debug("jwt: fetched the JWKS %s (%d keys)", self.url, len(keys.keys))
        return keys

    def _http(self) -> Client:
        if self._client is None:
            self._client = (ClientBuilder().max_connections(4).connect_timeout(timedelta(seconds=self._timeout))
                            .timeout(timedelta(seconds=self._timeout)).error_for_status(False)
                            .pool_max_idle_per_host(1).build())
        return self._client


def _retrieve(task: asyncio.Task[KeySet]) -> None:
    """Mark a failed background fetch's exception as seen (it was logged)."""
    if not task.cancelled():
        task.exception()
