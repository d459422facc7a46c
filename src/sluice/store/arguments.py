"""The `logs` subcommand's arguments: light imports only, so `sluice serve` stays small."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

COMMANDS = ("logs",)
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
    """Add `logs` to the `sluice` parser's subcommands."""
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
