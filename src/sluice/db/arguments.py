"""The `db` subcommand's arguments: light imports only, so `sluice serve` stays small."""

from __future__ import annotations

from typing import Any

COMMANDS = ("db",)


def add_commands(commands: Any, config_option: Any) -> None:
    """Add `db` to the `sluice` parser's subcommands."""
    db = commands.add_parser("db", help="manage the database (request log, managed keys, spend, prompts)") \
        .add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("upgrade", "apply the migrations (SLUICE_DATABASE_URL or request_log.database_url)"),
                       ("current", "print the schema revision of the database and the newest one")):
        config_option(db.add_parser(name, help=text, description=text.capitalize() + "."))
