"""`sluice logs prune|export`: the request log from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson
from sqlalchemy.exc import SQLAlchemyError

from sluice.config import SluiceConfig
from sluice.db.engine import Database
from sluice.db.urls import DatabaseError, database_url
from sluice.settings import Settings
from sluice.store.arguments import COMMANDS as COMMANDS
from sluice.store.queries import LogFilter, iter_logs
from sluice.store.records import document
from sluice.store.retention import cutoff, prune


def run(args: argparse.Namespace, settings: Settings, config: SluiceConfig) -> int:
    try:
        db = Database(database_url(config.request_log, settings))
    except DatabaseError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, db, config))


async def _run(args: argparse.Namespace, db: Database, config: SluiceConfig) -> int:
    try:
        if args.action == "prune":
            return await _prune(args, db, config)
        else:
            await _export(args, db)
        return 0
    except (SQLAlchemyError, OSError) as exc:
        print(f"sluice: {db!r}: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.aclose()


async def _prune(args: argparse.Namespace, db: Database, config: SluiceConfig) -> int:
    days = args.days if args.days is not None else config.request_log.retention_days
    if days is None:
        print("sluice: request_log.retention_days is null (keep forever); pass --days N", file=sys.stderr)
        return 2
    deleted = await prune(db, cutoff(days), batch_size=config.request_log.prune_batch_size)
    print(f"deleted {deleted} entries older than {days:g} days", file=sys.stderr)
    return 0


async def _export(args: argparse.Namespace, db: Database) -> None:
    where = LogFilter(since=args.since, until=args.until, key_id=args.key_id, model=args.model)
    bodies = not args.no_bodies
    async for row in iter_logs(db, where, bodies=bodies):
        sys.stdout.write(orjson.dumps(document(row, bodies=bodies)).decode() + "\n")
    sys.stdout.flush()
