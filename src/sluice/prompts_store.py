"""Prompt templates added through the admin API: kept in the database, picked up by every worker and instance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from sluice.db.engine import Database
from sluice.db.tables import PROMPT_TEMPLATES
from sluice.errors import GatewayError
from sluice.prompts import PromptConfig, PromptMessage, PromptRegistry, Template
from sluice.tasks import stop

logger = logging.getLogger("sluice.prompts")


class PromptStore:
    """Adds versions to the database and the local registry; `refresh` brings in what other processes added."""

    def __init__(self, registry: PromptRegistry, db: Database, refresh_seconds: float = 5.0) -> None:
        self.registry = registry
        self.db = db
        self.refresh_seconds = refresh_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the stored versions now, then every `refresh_seconds` (a failed load is logged and retried)."""
        with contextlib.suppress(SQLAlchemyError, OSError):
            await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever())

    async def aclose(self) -> None:
        await stop(self._task)

    async def refresh(self) -> int:
        """Add the stored versions this process does not have yet; how many were new."""
        async with self.db.connect() as connection:
            rows = (await connection.execute(select(PROMPT_TEMPLATES))).mappings().all()
        return sum(self.registry.add(_template(dict(row))) for row in rows)

    async def add(self, config: PromptConfig) -> Template:
        """Store a new version (the next number when `config` comes without one); 409 if it exists."""
        template = Template.of(config)
        if (template.name, template.version) in self.registry.configured:
            raise _exists(template, "in the config")
        row = {"name": template.name, "version": template.version, "messages": [m.model_dump() for m in
               config.messages], "description": config.description, "model": config.model,
               "created_at": datetime.now(UTC)}
        try:
            async with self.db.begin() as connection:
                await connection.execute(PROMPT_TEMPLATES.insert().values(**row))
        except IntegrityError:
            raise _exists(template, "already") from None
        self.registry.add(template)
        return template

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("prompt templates: refresh from the database failed: %s", exc)


def _template(values: Mapping[str, Any]) -> Template:
    messages = [PromptMessage.model_validate(message) for message in values["messages"]]
    return Template.of(PromptConfig(name=values["name"], version=values["version"], messages=messages,
                                    description=values["description"], model=values["model"]))


def _exists(template: Template, where: str) -> GatewayError:
    return GatewayError(f"Prompt '{template.name}' version {template.version} exists {where}; versions are "
                        "immutable, add a new one.", status=409, type="invalid_request_error",
                        code="prompt_version_exists", param="version")
