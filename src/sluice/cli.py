"""The `sluice` command: serve, reload, check-config, version, db, logs, prompts, keys."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from sluice import prompts_cli
from sluice.config import ConfigError, SluiceConfig, load_config
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
    serve.add_argument("--reuse-port", action="store_true",
                       help="share the port with other servers that set it too (SO_REUSEPORT; the kernel splits "
                            "connections between them); without it a port in use stops the start (granian only)")

    reload = commands.add_parser(
        "reload", help="reload the running gateway's config (same as SIGHUP to it)",
        description="Ask the gateway started by `sluice serve` (found through <SLUICE_DATA_DIR>/sluice-<port>.pid, "
                    "or --pid) to reload its config file. It checks the file as check-config does; a bad file is "
                    "refused and the running configuration stays. Exits 0 once new workers serve the new config, "
                    "1 if it was refused (the reason is printed and logged).")
    reload.add_argument("--port", type=int, help="the gateway's port (default SLUICE_PORT or 8000)")
    reload.add_argument("--pid", type=int, help="the gateway's process id (its supervisor), instead of the pid file")
    reload.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                        help="how long to wait for the outcome (default 180)")

    check = commands.add_parser("check-config", help="validate the config file without starting",
                                description="Validate the config file as `serve` and a reload would (the YAML, "
                                            "prompt files, project modules importing) and exit 0, or print what "
                                            "is wrong in one line and exit 2.")
    _config_option(check)
    check.add_argument("--json", action="store_true",
                       help='print one JSON object: {"ok": true, "summary": …, "shutdown_grace_seconds": …} or '
                            '{"ok": false, "error": …}')
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
    if args.command == "reload":  # the gateway checks the file itself
        from sluice.serve.reload_command import reload

        return reload(settings.data_dir, args.port or settings.port, args.pid, args.timeout)
    path = resolve_config_path(args.config, settings)
    json_report = args.command == "check-config" and args.json
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _invalid(f"invalid config: {exc}", json_report)
    if args.command in db_arguments.COMMANDS:
        from sluice.db import commands as db_commands  # SQLAlchemy only when a db/logs command runs

        return db_commands.run(args, settings, config)
    if args.command in store_arguments.COMMANDS:
        from sluice.store import commands as store_commands

        return store_commands.run(args, settings, config)
    if args.command in (*prompts_cli.COMMANDS, "check-config", "serve"):
        from sluice.prompts import PromptFileError, PromptRegistry

        try:
            registry = PromptRegistry.load(config.prompts, config.prompts_dir)
        except PromptFileError as exc:
            return _invalid(f"invalid prompts: {exc}", json_report)
        if args.command in prompts_cli.COMMANDS:
            return prompts_cli.run(args, settings.phoenix_collector_endpoint, registry)
        problem = project_problem(config, path)  # what a worker imports at start-up
        if problem is not None:
            return _invalid(f"invalid config: {problem}", json_report)
        if args.command == "check-config":
            versions = f", {len(registry)} prompt versions" if len(registry) else ""
            summary = (f"{path or '<embedded defaults>'}: OK ({len(config.providers)} providers, "
                       f"{len(config.models)} models{versions})")
            print(json.dumps({"ok": True, "summary": summary,
                              "shutdown_grace_seconds": config.server.shutdown_grace_seconds}) if json_report
                  else summary)
            return 0
    if args.command == keys_cli.COMMAND:
        return keys_cli.run(args, settings, config)
    managed = config.keys.managed and "keys" in config.model_fields_set  # managed keys, asked for explicitly
    return serve(args, settings, path, has_config_keys=bool(config.static_keys) or managed or config.jwt is not None,
                 shutdown_grace_seconds=config.server.shutdown_grace_seconds,
                 header_read_timeout_seconds=config.server.header_read_timeout_seconds,
                 max_pending_connections=config.server.max_pending_connections)


def _invalid(message: str, json_report: bool) -> int:
    """Say what is wrong in one line (stderr, or the --json report on stdout); exit code 2."""
    if json_report:
        print(json.dumps({"ok": False, "error": message.split(": ", 1)[1]}))
    else:
        print(f"sluice: {message}", file=sys.stderr)
    return 2


def project_problem(config: SluiceConfig, path: str | None) -> str | None:
    """Why the project plugins (the config's and installed entry points) cannot be mounted, found by importing
    them as a worker would at start-up: `check-config`, `serve` and a reload fail before any worker starts."""
    from sluice.projects import any_to_mount

    if not any_to_mount(config):
        return None
    from sluice.projects.loader import load_projects

    try:
        load_projects(config)
    except ConfigError as exc:
        return f"{path or '<embedded defaults>'}: {exc}"
    return None


def serve(args: argparse.Namespace, settings: Settings, path: str | None, *, has_config_keys: bool = False,
          shutdown_grace_seconds: float = 30.0, header_read_timeout_seconds: float = 10.0,
          max_pending_connections: int | None = None) -> int:
    allow_no_auth = args.allow_no_auth or settings.allow_no_auth
    if not settings.api_keys and not settings.admin_key and not has_config_keys and not allow_no_auth:
        print("sluice: refusing to start without API keys: set SLUICE_API_KEYS=key1,key2, or SLUICE_ADMIN_KEY and "
              "create keys (`sluice keys create`, POST /admin/keys; `keys: {managed: true}` in the config accepts "
              "them without SLUICE_ADMIN_KEY), or accept JWTs (a `jwt:` section, docs/keys.md), or pass "
              "--allow-no-auth to serve without authentication",
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

        from sluice.serve.listen import ListenError, check_free

        if args.reuse_port:
            print("sluice: --reuse-port needs --server granian", file=sys.stderr)
            return 2
        try:
            check_free(host, port)
        except ListenError as exc:
            print(f"sluice: {exc}", file=sys.stderr)
            return 1
        configure_logging(settings.log_format)
        uvicorn.run("sluice.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    loop="uvloop", http="httptools", access_log=False, timeout_graceful_shutdown=30, log_config=None,
                    backlog=BACKLOG)
        return 0
    from sluice.serve.granian_entry import ServeOptions, command

    # Become granian's supervisor in a fresh interpreter: what was loaded to check the config stays behind.
    sys.stdout.flush()
    sys.stderr.flush()
    argv = command(ServeOptions(
        host=host, port=port, workers=workers, log_format=settings.log_format, max_concurrency=max_concurrency,
        config=None if path is None else str(Path(path).resolve()), data_dir=str(Path(settings.data_dir).resolve()),
        reuse_port=args.reuse_port, shutdown_grace_seconds=shutdown_grace_seconds,
        header_read_timeout_seconds=header_read_timeout_seconds, max_pending_connections=max_pending_connections))
    os.execv(argv[0], argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
