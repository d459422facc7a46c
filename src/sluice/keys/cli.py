"""`sluice keys create|list|revoke|rotate`: arguments only (light imports, so `sluice serve` stays small)."""

from __future__ import annotations

import argparse
from typing import Any

COMMAND = "keys"
PERIODS = ("daily", "weekly", "monthly", "total")


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give one or more comma-separated names")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return value


def _amount(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"not an amount in USD: {text!r}")
    return value


def add_commands(commands: Any, config_option: Any) -> None:
    """Add `keys` and its actions to the `sluice` parser's subcommands."""
    description = ("Manage API keys stored in the database (request_log.database_url or SLUICE_DATABASE_URL, "
                   "default <SLUICE_DATA_DIR>/sluice.db), hashed with SLUICE_KEY_PEPPER (default the file "
                   "<SLUICE_DATA_DIR>/key-pepper). Run it with the same environment and config as the gateway.")
    keys = commands.add_parser(COMMAND, help="create, list, revoke or rotate managed API keys",
                               description=description).add_subparsers(dest="action", required=True,
                                                                        metavar="ACTION")
    create = keys.add_parser("create", help="create a key and print it (shown this once)",
                             description="Create a key. The key is printed on stdout, once: store it now. Its id "
                                         "and prefix go to stderr. Scopes left out mean 'all'.")
    config_option(create)
    create.add_argument("--name", required=True, help="a name for people (e.g. the team or service using it)")
    create.add_argument("--models", type=_names, metavar="A,B", help="public model names the key may use")
    create.add_argument("--providers", type=_names, metavar="A,B", help="providers the key may reach")
    create.add_argument("--projects", type=_names, metavar="A,B", help="projects the key may call")
    create.add_argument("--services", type=_names, metavar="A,B", help="services the key may reach")
    create.add_argument("--admin", action="store_true", help="the key may use the /admin API")
    create.add_argument("--rpm", type=_positive_int, metavar="N", help="requests per minute")
    create.add_argument("--tpm", type=_positive_int, metavar="N", help="tokens per minute")
    create.add_argument("--concurrency", type=_positive_int, metavar="N", help="requests in flight at once")
    create.add_argument("--budget-usd", type=_amount, metavar="X", help="spend ceiling in USD per budget period")
    create.add_argument("--budget-period", choices=PERIODS, default="monthly",
                        help="period of --budget-usd (default monthly; UTC calendar periods)")
    create.add_argument("--expires-in-days", type=_positive_float, metavar="D", help="the key stops working then")
    create.add_argument("--json", action="store_true", help="print the whole record (with the key) as JSON")
    listing = keys.add_parser("list", help="list keys (never their secrets)",
                              description="List keys, newest first: id, name, prefix, status, scopes, expiry.")
    config_option(listing)
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    revoke = keys.add_parser("revoke", help="revoke a key",
                             description="Revoke a key. Gateways refuse it within keys.cache_ttl_seconds (5 s).")
    config_option(revoke)
    revoke.add_argument("id", help="the key's id (key_…), as `sluice keys list` shows it")
    rotate = keys.add_parser("rotate", help="replace a key's secret, keeping its settings",
                             description="Create a new key with the same name, scopes, limits and budget, print it "
                                         "once, and revoke the old one (now, or after --grace-seconds).")
    config_option(rotate)
    rotate.add_argument("id", help="the key's id (key_…)")
    rotate.add_argument("--grace-seconds", type=float, default=0.0, metavar="S",
                        help="keep the old key working this long (default 0: revoked at once)")
    rotate.add_argument("--json", action="store_true", help="print the new record (with the key) as JSON")


def run(args: argparse.Namespace, settings: Any, config: Any) -> int:
    from sluice.keys import commands  # SQLAlchemy only when a keys command runs

    return commands.run(args, settings, config)
