"""Database URLs without SQLAlchemy: the one in effect, and the start-up check that it is usable."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from sluice.settings import Settings
    from sluice.store.options import RequestLogConfig

DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
"""Driver names accepted, with the async driver each stands for."""

_ACCEPTED = {*DRIVERS, *DRIVERS.values()}


class DatabaseError(Exception):
    """The database URL cannot be used."""


def database_url(config: RequestLogConfig, settings: Settings) -> str:
    """`request_log.database_url`, else SLUICE_DATABASE_URL (or its default): one database for every feature."""
    return config.database_url or settings.database


def check_url(url: str) -> None:
    """Raise what `engine.normalise_url` raises for an unusable URL; SQLAlchemy is imported only for a doubtful one."""
    if not _plainly_usable(url):
        from sluice.db.engine import normalise_url

        normalise_url(url)


def is_sqlite(url: str) -> bool:
    """Whether a URL `check_url` accepted is a SQLite database's."""
    return url.partition("://")[0].partition("+")[0] == "sqlite"


def _plainly_usable(url: str) -> bool:
    """An accepted driver and a numeric port (or none): nothing SQLAlchemy's parser would refuse."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return "://" in url and parts.scheme in _ACCEPTED
