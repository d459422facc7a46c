"""`gateway.keys`: static keys first (constant time, no I/O), then JWTs when `jwt:` is configured (keys/jwt.py),
then managed keys through a short-lived cache; all are known by an HMAC under one pepper, which the principal carries
as `key_hash` (a JWT's is that of its `jwt:<subject>` id, never of the token)."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sluice.config import SluiceConfig
from sluice.db.errors import database_errors
from sluice.db.urls import check_url, database_url
from sluice.errors import AuthenticationFailed, GatewayError, ServiceUnavailable
from sluice.keys.cache import TTLCache
from sluice.keys.hashing import PEPPER_FILE, key_hash, load_pepper, looks_managed
from sluice.keys.principal import Principal
from sluice.keys.records import KeyRecord, principal_of
from sluice.keys.static import StaticKeyRing, scoped_keys
from sluice.settings import Settings

if TYPE_CHECKING:
    from sluice.keys.jwt import JwtValidator
    from sluice.keys.store import KeyStore

logger = logging.getLogger("sluice.keys")

_CONCURRENT_LOOKUPS = 8
"""Database lookups in flight per process; more callers wait (within the lookup timeout) rather than pile on."""


def incorrect_key() -> AuthenticationFailed:
    """The one answer for unknown, malformed, expired and revoked keys alike."""
    return AuthenticationFailed("Incorrect API key provided.")


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The API key store is unavailable; try again later.")


class ManagedKeys:
    """Keys in the database: opened on first use, looked up by peppered hash, hits and misses cached."""

    def __init__(self, config: SluiceConfig, settings: Settings) -> None:
        self.url = database_url(config.request_log, settings)
        check_url(self.url)  # an unusable URL fails start-up, not the first request
        self._auto_migrate = config.request_log.auto_migrate
        self._pepper = settings.key_pepper.get_secret_value() if settings.key_pepper else None
        self._data_dir = settings.data_dir
        self._defaults = config.limits
        self._timeout = config.keys.lookup_timeout_seconds
        self._known: TTLCache[tuple[Principal, float | None]] = TTLCache(config.keys.cache_ttl_seconds,
                                                                         config.keys.cache_size)
        self._unknown: TTLCache[bool] = TTLCache(config.keys.cache_ttl_seconds, config.keys.cache_size)
        self._lookups = asyncio.Semaphore(_CONCURRENT_LOOKUPS)
        self._looking: dict[str, asyncio.Future[Principal]] = {}
        self._store: KeyStore | None = None
        self._opening: asyncio.Task[KeyStore] | None = None

    async def authenticate(self, presented: str) -> Principal:
        store = self._store or await self.store()  # no coroutine of its own once the store is open
        digest = key_hash(store.pepper, presented)
        known = self._known.get(digest)
        if known is not None:
            principal, valid_until = known
            if valid_until is None or time.time() < valid_until:
                return principal
            raise incorrect_key()
        if self._unknown.get(digest):
            raise incorrect_key()
        looking = self._looking.get(digest)
        if looking is None:
            looking = self._looking[digest] = asyncio.ensure_future(self._look_up(store, digest))
            looking.add_done_callback(partial(self._looked_up, digest))
        return await asyncio.shield(looking)  # a caller that leaves does not cancel the others' lookup

    async def _look_up(self, store: KeyStore, digest: str) -> Principal:
        """The key's principal from the store, cached (or its absence); shared by the requests that miss the cache
        for the same key at once (when its entry expires, every request in flight does): one query, not one each."""
        record = await self._find(store, digest)
        if record is None or record.status != "active":
            self._unknown.put(digest, True)
            raise incorrect_key()
        principal = principal_of(record, self._defaults, digest)
        self._known.put(digest, (principal, _valid_until(record)))
        return principal

    def _looked_up(self, digest: str, looking: asyncio.Future[Principal]) -> None:
        """The shared lookup ended: the next miss starts a new one."""
        if self._looking.get(digest) is looking:
            del self._looking[digest]
        if not looking.cancelled():
            looking.exception()  # retrieved here too: every waiter may have left

    async def store(self) -> KeyStore:
        """The store, opening it (pepper, engine, SQLite migrations) on first use; 503 if that fails or hangs."""
        if self._store is not None:
            return self._store
        opening = self._opening
        if opening is None or (opening.done() and (opening.cancelled() or opening.exception() is not None)):
            opening = self._opening = asyncio.create_task(self._open())
        try:
            self._store = await asyncio.wait_for(asyncio.shield(opening), self._timeout)
        except TimeoutError:
            logger.warning("managed keys: opening the key store took over %.1f s", self._timeout)
            raise unavailable() from None
        except Exception as exc:  # noqa: BLE001 - driver, migration or pepper file: all mean "not available now"
            logger.warning("managed keys: cannot open the key store: %s: %s", type(exc).__name__, exc)
            raise unavailable() from None
        return self._store

    def forget(self) -> None:
        """Drop cached lookups (after this instance changed a key; other instances wait out the TTL)."""
        self._known.clear()
        self._unknown.clear()
        self._looking.clear()  # a lookup already under way may have read the key before the change

    async def aclose(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self._store is not None:
            await self._store.db.aclose()
            self._store = None

    async def _open(self) -> KeyStore:
        # Imported here: SQLAlchemy (~16 MB per worker) loads only once a managed key or the admin API needs it.
        from sluice.db.engine import Database
        from sluice.db.migrate import upgrade
        from sluice.keys.store import KeyStore

        pepper = await asyncio.to_thread(load_pepper, self._pepper, self._data_dir)
        db = Database(self.url, timeout=self._timeout)
        try:
            if self._auto_migrate or (self._auto_migrate is None and db.is_sqlite):
                await upgrade(db)
        except BaseException:
            await db.aclose()
            raise
        return KeyStore(db, pepper)

    async def _find(self, store: KeyStore, digest: str) -> KeyRecord | None:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._lookups:
                    return await store.find(digest)
        except TimeoutError:
            logger.warning("managed keys: a lookup took over %.1f s", self._timeout)
        except database_errors() as exc:
            logger.warning("managed keys: lookup failed: %s", exc)
        raise unavailable()


def _valid_until(record: KeyRecord) -> float | None:
    ends = [moment.timestamp() for moment in (record.expires_at, record.revoked_at) if moment is not None]
    return min(ends) if ends else None


class KeyRing:
    """What `gateway.keys` is: one `authenticate` for static keys, JWTs and managed keys."""

    def __init__(self, static: StaticKeyRing, managed: ManagedKeys | None, jwt: JwtValidator | None = None) -> None:
        self.static = static
        self.managed = managed
        self.jwt = jwt

    async def authenticate(self, presented: str | None) -> Principal:
        """The principal for `presented`; AuthenticationFailed (401) for any key that does not work now, the same
        answer whether it never existed, expired or was revoked; ServiceUnavailable (503) if the store is down."""
        if not presented:
            return self.static.anonymous()
        jwt = self.jwt
        if jwt is not None:
            principal = jwt.remembered(presented)  # a token verified before: the common case once JWTs are in use
            if principal is not None:
                return principal
        principal = self.static.find(presented)
        if principal is not None:
            return principal
        if jwt is not None and jwt.recognises(presented):
            return await jwt.authenticate(presented)
        if self.managed is None or not looks_managed(presented):
            raise incorrect_key()
        return await self.managed.authenticate(presented)

    async def authenticate_jwt(self, token: str | None) -> Principal:
        """The principal of a JWT, for routes that take nothing else (`auth: jwt`): 401 without one, with an API
        key or with a token that fails (the incorrect-key answer); 503 while the issuer's keys cannot be had."""
        if self.jwt is None:
            logger.warning("jwt: a route takes only JWTs, but the config has no `jwt:` section")
            raise incorrect_key()
        if not token:
            from sluice.keys.jwt import missing_token

            raise missing_token()
        return await self.jwt.authenticate(token)

    async def store(self) -> KeyStore:
        """The managed key store, for the admin API; 404 when managed keys are off in the config."""
        if self.managed is None:
            raise GatewayError("Managed keys are disabled in this gateway's config (keys.managed: false).",
                               status=404, type="invalid_request_error", code="managed_keys_disabled")
        return await self.managed.store()

    def forget(self) -> None:
        if self.managed is not None:
            self.managed.forget()

    async def aclose(self) -> None:
        if self.managed is not None:
            await self.managed.aclose()
        if self.jwt is not None:
            await self.jwt.aclose()


def build_key_ring(config: SluiceConfig, settings: Settings) -> KeyRing:
    """The key ring; with static keys, the pepper is read (or its file created) now: a pepper that cannot be had
    stops the start rather than every request."""
    keys = [key.get_secret_value() for key in settings.api_keys]
    pepper = static_pepper(settings) if keys or config.static_keys or config.jwt else b""
    static = StaticKeyRing(keys, pepper=pepper, allow_no_auth=settings.allow_no_auth,
                           scoped=scoped_keys(config.static_keys, config.limits, pepper), defaults=config.limits)
    validator = None
    if config.jwt is not None:
        from sluice.keys.jwt import build_validator  # PyJWT and cryptography load only for a `jwt:` section

        validator = build_validator(config.jwt, pepper=pepper, defaults=config.limits)
    return KeyRing(static, ManagedKeys(config, settings) if config.keys.managed else None, validator)


def static_pepper(settings: Settings) -> bytes:
    """The pepper managed keys use, for the static keys' identifiers; OSError naming the file and the way out."""
    try:
        return load_pepper(settings.key_pepper.get_secret_value() if settings.key_pepper else None, settings.data_dir)
    except OSError as exc:
        raise OSError(f"cannot read or create the key pepper file {Path(settings.data_dir) / PEPPER_FILE} ({exc}): "
                      "API keys are identified by their HMAC under it; make SLUICE_DATA_DIR writable or set "
                      "SLUICE_KEY_PEPPER") from exc
