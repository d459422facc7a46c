"""What `sluice keys …` does: the same database, pepper and checks as the gateway, without a gateway."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson
from sqlalchemy.exc import SQLAlchemyError

from sluice.config import SluiceConfig
from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.db.urls import DatabaseError, database_url
from sluice.errors import GatewayError
from sluice.keys.hashing import load_pepper
from sluice.keys.records import CreatedKey, KeyRecord, KeySettings
from sluice.keys.scopes import check_settings, expiry
from sluice.keys.store import KeyStore
from sluice.limits.options import Budget, RateLimit
from sluice.settings import Settings


def run(args: argparse.Namespace, settings: Settings, config: SluiceConfig) -> int:
    try:
        db = Database(database_url(config.request_log, settings))
    except DatabaseError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, db, settings, config))


async def _run(args: argparse.Namespace, db: Database, settings: Settings, config: SluiceConfig) -> int:
    try:
        migrate = config.request_log.auto_migrate
        if migrate or (migrate is None and db.is_sqlite):
            await upgrade(db)
        pepper = load_pepper(settings.key_pepper.get_secret_value() if settings.key_pepper else None,
                             settings.data_dir)
        store = KeyStore(db, pepper)
        if args.action == "create":
            _print_created(await store.create(_settings(args, config)), args.json)
        elif args.action == "list":
            _print_list(await store.list(include_revoked=args.all), args.json)
        elif args.action == "revoke":
            record = await store.revoke(args.id)
            print(f"revoked {record.id} ({record.name}, {record.prefix}…) at {record.revoked_at:%Y-%m-%d %H:%M:%S} "
                  "UTC; gateways refuse it within keys.cache_ttl_seconds", file=sys.stderr)
        else:
            if args.grace_seconds < 0:
                print("sluice: --grace-seconds must be 0 or more", file=sys.stderr)
                return 2
            _print_created(await store.rotate(args.id, args.grace_seconds), args.json, replaced=args.id)
        return 0
    except GatewayError as exc:
        print(f"sluice: {exc.message}", file=sys.stderr)
        return 1 if exc.status == 404 else 2
    except (SQLAlchemyError, OSError) as exc:
        hint = "" if db.is_sqlite else " (has `sluice db upgrade` been run on this database?)"
        print(f"sluice: {db!r}: {exc}{hint}", file=sys.stderr)
        return 1
    finally:
        await db.aclose()


def _settings(args: argparse.Namespace, config: SluiceConfig) -> KeySettings:
    limits = RateLimit(requests_per_minute=args.rpm, tokens_per_minute=args.tpm, max_concurrent=args.concurrency)
    budget = Budget(usd=args.budget_usd, period=args.budget_period) if args.budget_usd is not None else None
    settings = KeySettings(name=args.name, models=args.models, providers=args.providers, projects=args.projects,
                           services=args.services, admin=args.admin, limits=None if limits.unlimited else limits,
                           budget=budget, expires_at=expiry(None, args.expires_in_days))
    check_settings(settings, config)
    return settings


def _print_created(created: CreatedKey, as_json: bool, replaced: str | None = None) -> None:
    if as_json:
        print(created.model_dump_json())
        return
    print(created.key)
    sys.stdout.flush()
    action = f"rotated {replaced} into" if replaced else "created"
    print(f"{action} {created.id} ({created.name}, prefix {created.prefix}). The key above is shown only this once: "
          "store it now.", file=sys.stderr)


def _print_list(records: list[KeyRecord], as_json: bool) -> None:
    if as_json:
        for record in records:
            print(orjson.dumps(record.model_dump(mode="json")).decode())
        return
    rows = [("ID", "NAME", "PREFIX", "STATUS", "SCOPES", "CREATED", "EXPIRES")]
    for record in records:
        rows.append((record.id, record.name, record.prefix + "…", record.status, _scopes(record),
                     f"{record.created_at:%Y-%m-%d %H:%M}", f"{record.expires_at:%Y-%m-%d %H:%M}"
                     if record.expires_at else "never"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _scopes(record: KeyRecord) -> str:
    parts = [f"{field}={','.join(values)}" for field, values in
             (("models", record.models), ("providers", record.providers), ("projects", record.projects),
              ("services", record.services))
             if values is not None]
    if record.admin:
        parts.append("admin")
    return " ".join(parts) or "all"
