"""The `sluice` command: serve, check-config, version, db, logs, prompts."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from sluice import prompts_cli
from sluice.config import ConfigError, load_config
from sluice.db import arguments as db_arguments
from sluice.keys import cli as keys_cli
from sluice.serve.limits import BACKLOG, raise_open_files_limit
from sluice.settings import Settings
from sluice.store import arguments as store_arguments

SERVERS = ("granian", "uvicorn")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description="Sluice: an OpenAI-compatible API gateway.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="start the gateway",
                                description="Start the gateway. Keys come from SLUICE_API_KEYS (comma-separated).")
    _config_option(serve)
    serve.add_argument("--host", help="address to listen on (default SLUICE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default SLUICE_PORT or 8000)")
    serve.add_argument("--workers", type=int,
                       help="worker processes (default SLUICE_WORKERS or 1); granian replaces a worker that dies")
    serve.add_argument("--max-concurrency", type=int, metavar="N",
                       help="most connections one worker serves at once; more wait in the listen queue "
                            "(default SLUICE_MAX_CONCURRENCY or 4096; granian only)")
    serve.add_argument("--server", choices=SERVERS, default="granian",
                       help="HTTP server: granian (default, fastest) or uvicorn")
    serve.add_argument("--allow-no-auth", action="store_true",
                       help="serve without API keys (anyone who can reach the port may use every model)")

    check = commands.add_parser("check-config", help="validate the config file without starting",
                                description="Validate the config file and exit 0, or print what is wrong and exit 2.")
    _config_option(check)
    commands.add_parser("version", help="print the version")
    db_arguments.add_commands(commands, _config_option)
    store_arguments.add_commands(commands, _config_option)
    prompts_cli.add_commands(commands, _config_option)
    keys_cli.add_commands(commands, _config_option)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="sluice.yaml to use (default SLUICE_CONFIG, then ./sluice.yaml, then the built-in "
                             "defaults: the offline mock provider only)")


def resolve_config_path(given: str | None, settings: Settings) -> str | None:
    """The config file to use: the option, SLUICE_CONFIG, ./sluice.yaml, or None for the embedded defaults."""
    if given:
        return given
    if settings.config:
        return settings.config
    return "sluice.yaml" if Path("sluice.yaml").is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        from importlib.metadata import version

        print(version("sluice"))
        return 0
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"sluice: bad environment setting: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    path = resolve_config_path(args.config, settings)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"sluice: invalid config: {exc}", file=sys.stderr)
        return 2
    if args.command in db_arguments.COMMANDS:
        from sluice.db import commands as db_commands  # SQLAlchemy only when a db/logs command runs

        return db_commands.run(args, settings, config)
    if args.command in store_arguments.COMMANDS:
        from sluice.store import commands as store_commands

        return store_commands.run(args, settings, config)
    if args.command in (*prompts_cli.COMMANDS, "check-config"):
        from sluice.prompts import PromptFileError, PromptRegistry

        try:
            registry = PromptRegistry.load(config.prompts, config.prompts_dir)
        except PromptFileError as exc:
            print(f"sluice: invalid prompts: {exc}", file=sys.stderr)
            return 2
        if args.command in prompts_cli.COMMANDS:
            return prompts_cli.run(args, settings.phoenix_collector_endpoint, registry)
        print(f"{path or '<embedded defaults>'}: OK ({len(config.providers)} providers, {len(config.models)} models"
              + (f", {len(registry)} prompt versions)" if len(registry) else ")"))
        return 0
    if args.command == keys_cli.COMMAND:
        return keys_cli.run(args, settings, config)
    managed = config.keys.managed and "keys" in config.model_fields_set  # managed keys, asked for explicitly
    return serve(args, settings, path, has_config_keys=bool(config.static_keys) or managed)


def serve(args: argparse.Namespace, settings: Settings, path: str | None, *, has_config_keys: bool = False) -> int:
    allow_no_auth = args.allow_no_auth or settings.allow_no_auth
    if not settings.api_keys and not settings.admin_key and not has_config_keys and not allow_no_auth:
        print("sluice: refusing to start without API keys: set SLUICE_API_KEYS=key1,key2, or SLUICE_ADMIN_KEY and "
              "create keys (`sluice keys create`, POST /admin/keys; `keys: {managed: true}` in the config accepts "
              "them without SLUICE_ADMIN_KEY), or pass --allow-no-auth to serve without authentication",
              file=sys.stderr)
        return 2
    # Workers build their app from the environment, so hand them exactly what was resolved here.
    if path is not None:
        os.environ["SLUICE_CONFIG"] = str(Path(path).resolve())
    os.environ["SLUICE_ALLOW_NO_AUTH"] = "true" if allow_no_auth else "false"
    from sluice.serve.allocators import apply_allocator_defaults

    apply_allocator_defaults(os.environ)  # before granian and pyreqwest load (workers inherit the environment)
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    max_concurrency = args.max_concurrency or settings.max_concurrency
    raise_open_files_limit(2 * max_concurrency + 256)  # a client and an upstream socket per request, and some
    if workers > 1:  # each worker counts into its own files; a scrape adds them up (telemetry/metrics.py)
        from sluice.telemetry.metrics import prepare_multiprocess_dir

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prepare_multiprocess_dir(settings.prometheus_multiproc_dir)
    from sluice.telemetry.logs import configure_logging

    if args.server == "uvicorn":
        import uvicorn

        configure_logging(settings.log_format)
        uvicorn.run("sluice.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    loop="uvloop", http="httptools", access_log=False, timeout_graceful_shutdown=30, log_config=None,
                    backlog=BACKLOG)
        return 0
    from sluice.serve.granian_entry import command

    # Become granian's supervisor in a fresh interpreter: what was loaded to check the config stays behind.
    sys.stdout.flush()
    sys.stderr.flush()
    argv = command(host, port, workers, settings.log_format, max_concurrency)
    os.execv(argv[0], argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
