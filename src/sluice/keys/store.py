"""The api_keys table: create, find by hash (one indexed query), list, update, revoke and rotate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from sluice.db.engine import Database
from sluice.db.tables import API_KEYS
from sluice.errors import InvalidRequest, NotFound
from sluice.keys.hashing import key_hash, new_key_id, new_secret, shown_prefix
from sluice.keys.records import CreatedKey, KeyRecord, KeySettings, record_of, settings_columns


class KeyStore:
    """Managed keys in one database; secrets exist only in the values `create` and `rotate` return."""

    def __init__(self, db: Database, pepper: bytes) -> None:
        self.db = db
        self.pepper = pepper

    def hash(self, secret: str) -> str:
        return key_hash(self.pepper, secret)

    async def find(self, digest: str) -> KeyRecord | None:
        """The key whose hash is `digest` (revoked and expired ones included), by the unique index."""
        async with self.db.connect() as connection:
            row = (await connection.execute(select(API_KEYS).where(API_KEYS.c.key_hash == digest))).mappings().first()
        return None if row is None else record_of(row)

    async def create(self, settings: KeySettings) -> CreatedKey:
        async with self.db.begin() as connection:
            return await self._insert(connection, settings, datetime.now(UTC))

    async def get(self, key_id: str) -> KeyRecord:
        async with self.db.connect() as connection:
            row = (await connection.execute(select(API_KEYS).where(API_KEYS.c.id == key_id))).mappings().first()
        if row is None:
            raise _unknown(key_id)
        return record_of(row)

    async def list(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        """Newest first; revoked keys only when asked for (a rotated key in its grace period is listed)."""
        now = datetime.now(UTC)
        query = select(API_KEYS).order_by(API_KEYS.c.created_at.desc(), API_KEYS.c.id)
        if not include_revoked:
            query = query.where((API_KEYS.c.revoked_at.is_(None)) | (API_KEYS.c.revoked_at > now))
        async with self.db.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [record_of(row, now) for row in rows]

    async def update(self, key_id: str, settings: KeySettings) -> KeyRecord:
        """Replace the key's settings (the caller merged the changes into the current ones)."""
        return await self._set(key_id, {**settings_columns(settings), "updated_at": datetime.now(UTC)})

    async def revoke(self, key_id: str) -> KeyRecord:
        """Revoke now; a key that is already revoked keeps its first revocation time."""
        now = datetime.now(UTC)
        async with self.db.begin() as connection:
            await connection.execute(update(API_KEYS).where(API_KEYS.c.id == key_id)
                                     .where((API_KEYS.c.revoked_at.is_(None)) | (API_KEYS.c.revoked_at > now))
                                     .values(revoked_at=now, updated_at=now))
        return await self.get(key_id)

    async def rotate(self, key_id: str, grace_seconds: float = 0.0) -> CreatedKey:
        """A new key with the same settings; the old one stops working now, or after `grace_seconds`."""
        now = datetime.now(UTC)
        async with self.db.begin() as connection:
            query = select(API_KEYS).where(API_KEYS.c.id == key_id)
            if self.db.dialect == "postgresql":
                query = query.with_for_update()
            row = (await connection.execute(query)).mappings().first()
            if row is None:
                raise _unknown(key_id)
            old = record_of(row, now)
            if old.revoked_at is not None:
                raise InvalidRequest(f"Key {key_id!r} is revoked or already rotated (replaced by "
                                     f"{old.replaced_by!r}); only active keys can be rotated.", code="key_revoked")
            if old.status == "expired":
                raise InvalidRequest(f"Key {key_id!r} has expired; give it a new expires_at first, or create a key.",
                                     code="key_expired")
            created = await self._insert(connection, KeySettings.model_validate(old.model_dump(
                include=set(KeySettings.model_fields))), now)
            await connection.execute(update(API_KEYS).where(API_KEYS.c.id == key_id).values(
                revoked_at=now + timedelta(seconds=grace_seconds), replaced_by=created.id, updated_at=now))
        return created

    async def _insert(self, connection: Any, settings: KeySettings, now: datetime) -> CreatedKey:
        secret = new_secret()
        row = {"id": new_key_id(), "prefix": shown_prefix(secret), "key_hash": self.hash(secret), "created_at": now,
               "updated_at": now, "revoked_at": None, "replaced_by": None, **settings_columns(settings)}
        await connection.execute(API_KEYS.insert().values(**row))
        return CreatedKey(**record_of(row, now).model_dump(), key=secret)

    async def _set(self, key_id: str, values: dict[str, Any]) -> KeyRecord:
        async with self.db.begin() as connection:
            result = await connection.execute(update(API_KEYS).where(API_KEYS.c.id == key_id).values(**values))
        if result.rowcount == 0:
            raise _unknown(key_id)
        return await self.get(key_id)


def _unknown(key_id: str) -> NotFound:
    return NotFound(f"No API key with id {key_id!r}.", param="id", code="key_not_found")
