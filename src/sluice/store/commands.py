"""`sluice db upgrade|current` and `sluice logs prune|export`: the request log from the command line."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from sluice.config import SluiceConfig
from sluice.settings import Settings
from sluice.store.db import Database, DatabaseError
from sluice.store.migrate import current_revision, head_revision, upgrade
from sluice.store.queries import LogFilter, iter_logs
from sluice.store.records import document
from sluice.store.request_log import database_url
from sluice.store.retention import cutoff, prune

COMMANDS = ("db", "logs")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def when(text: str) -> datetime:
    """A point in time: ISO 8601 (UTC unless it says otherwise) or an age such as `90m`, `24h`, `7d`."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        return datetime.now(UTC) - timedelta(**{_UNITS[relative.group(2)]: float(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use ISO 8601 or an age like 24h, 7d)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_commands(commands: Any, config_option: Any) -> None:
    """Add `db` and `logs` to the `sluice` parser's subcommands."""
    db = commands.add_parser("db", help="manage the request log database").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    for name, text in (("upgrade", "apply the migrations (SLUICE_DATABASE_URL or request_log.database_url)"),
                       ("current", "print the schema revision of the database and the newest one")):
        config_option(db.add_parser(name, help=text, description=text.capitalize() + "."))
    logs = commands.add_parser("logs", help="prune or export the request log").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    pruning = logs.add_parser("prune", help="delete entries older than the retention period now")
    config_option(pruning)
    pruning.add_argument("--days", type=float, help="keep this many days (default request_log.retention_days)")
    export = logs.add_parser("export", help="write entries as JSON lines to stdout",
                             description="Write entries, oldest first, as JSON lines: sluice logs export "
                                         "--since 24h > logs.jsonl")
    config_option(export)
    export.add_argument("--since", type=when, required=True, help="ISO 8601 time or an age such as 24h or 7d")
    export.add_argument("--until", type=when, help="ISO 8601 time or an age (default now)")
    export.add_argument("--key-id", help="only this key id")
    export.add_argument("--model", help="only this public model name")
    export.add_argument("--no-bodies", action="store_true", help="leave the request and response bodies out")


def run(args: argparse.Namespace, settings: Settings, config: SluiceConfig) -> int:
    try:
        db = Database(database_url(config.request_log, settings))
    except DatabaseError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, db, config))


async def _run(args: argparse.Namespace, db: Database, config: SluiceConfig) -> int:
    try:
        if args.command == "db" and args.action == "upgrade":
            await upgrade(db)
            print(f"{db!r}: at revision {head_revision()}", file=sys.stderr)
        elif args.command == "db":
            print(f"current: {await current_revision(db)}\nnewest: {head_revision()}")
        elif args.action == "prune":
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
