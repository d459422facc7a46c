"""The `/v1/responses` answers kept for `previous_response_id` and `GET /v1/responses/{id}`: in the database every
instance shares when there is one, else in this process (bounded, newest kept). SQLAlchemy is imported only once
a database is used, as everywhere (db/urls.py)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice.errors import ServiceUnavailable

if TYPE_CHECKING:
    from sluice.db.engine import Database
    from sluice.gateway import Gateway

logger = logging.getLogger("sluice.frontdoors")

IN_PROCESS_LIMIT = 10_000
"""How many answers a process without a database keeps (the oldest go first)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One kept answer: who may read it, the conversation so far, the response object."""

    id: str
    key_id: str | None
    conversation: list[dict[str, Any]]
    response: dict[str, Any]


class ResponseStore:
    """Saves and finds answers; the database is the gateway's shared one (`Gateway._shared_database`), opened on
    first use."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._db: Database | None = None
        self._looked = False
        self._local: OrderedDict[str, StoredResponse] = OrderedDict()

    async def _database(self) -> Database | None:
        if not self._looked:
            self._db = await self.gateway._shared_database()
            self._looked = True
            if self._db is None:
                logger.warning("/v1/responses answers are kept in this process only (no database configured): "
                               "previous_response_id works only on the instance that answered")
        return self._db

    async def save(self, stored: StoredResponse) -> None:
        """Keep `stored`; a database that fails is a 503 (the caller asked for it to be kept)."""
        db = await self._database()
        if db is None:
            self._local[stored.id] = stored
            while len(self._local) > IN_PROCESS_LIMIT:
                self._local.popitem(last=False)
            return
        from sqlalchemy.exc import SQLAlchemyError

        from sluice.db.tables import STORED_RESPONSES

        try:
            async with db.begin() as connection:
                await connection.execute(STORED_RESPONSES.insert().values(
                    id=stored.id, key_id=stored.key_id, created_at=datetime.now(UTC),
                    conversation=stored.conversation, response=stored.response))
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(f"The response could not be stored (database: {exc.__class__.__name__}); "
                                     "retry, or send store: false.", code="store_unavailable") from exc

    async def find(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        """The answer `response_id` if the key `key_id` made it; None otherwise (another key's is not found)."""
        db = await self._database()
        if db is None:
            found = self._local.get(response_id)
        else:
            from sqlalchemy import select
            from sqlalchemy.exc import SQLAlchemyError

            from sluice.db.tables import STORED_RESPONSES

            try:
                async with db.connect() as connection:
                    row = (await connection.execute(
                        select(STORED_RESPONSES).where(STORED_RESPONSES.c.id == response_id))).mappings().first()
            except (SQLAlchemyError, OSError) as exc:
                raise ServiceUnavailable(f"Stored responses cannot be read right now (database: "
                                         f"{exc.__class__.__name__}).", code="store_unavailable") from exc
            found = None if row is None else StoredResponse(row["id"], row["key_id"], row["conversation"],
                                                            row["response"])
        if found is None or found.key_id != key_id:
            return None
        return found
