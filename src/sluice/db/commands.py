"""`sluice db upgrade|current`: the database's schema from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.exc import SQLAlchemyError

from sluice.config import SluiceConfig
from sluice.db.engine import Database
from sluice.db.migrate import current_revision, head_revision, upgrade
from sluice.db.urls import DatabaseError, database_url
from sluice.settings import Settings


def run(args: argparse.Namespace, settings: Settings, config: SluiceConfig) -> int:
    try:
        db = Database(database_url(config.request_log, settings))
    except DatabaseError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, db))


async def _run(args: argparse.Namespace, db: Database) -> int:
    try:
        if args.action == "upgrade":
            await upgrade(db)
            print(f"{db!r}: at revision {head_revision()}", file=sys.stderr)
        else:
            print(f"current: {await current_revision(db)}\nnewest: {head_revision()}")
        return 0
    except (SQLAlchemyError, OSError) as exc:
        print(f"sluice: {db!r}: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.aclose()
