"""The command line: `python -m bot [run|check|serve|apikey ...]`, parsed with argparse.

Configuration mistakes end with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from bot.settings import ConfigError, Settings, load_settings
from storage import StorageError, Store

EXIT_CONFIG = 2
EXIT_CHECK_FAILED = 1
#: `serve` and `apikey` never talk to Discord: a stand-in satisfies the settings' required token.


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bot",
        description="Veo 3 videos from Discord and over HTTP. Without a command: run the Discord bot.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="run the Discord bot (and the HTTP API when VEO_HTTP_PORT is set)")
    sub.add_parser("check", help="validate settings and backend credentials, then exit")
    sub.add_parser("serve", help="run the queue, the worker and the HTTP API without Discord (needs VEO_HTTP_PORT)")
    keys = sub.add_parser("apikey", help="manage HTTP API keys")
    ksub = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = ksub.add_parser("create", help="create a key and print it once (only its hash is kept)")
    create.add_argument("name", help="a name for the key (letters, digits, '.', '_', '-')")
    create.add_argument("--daily", type=int, metavar="N", help="videos per rolling 24 h (default VEO_DAILY_QUOTA)")
    ksub.add_parser("list", help="names, creation, last use and usage (never a key)")
    revoke = ksub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("name")
    return p


def _when(moment: float | None) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


async def run_apikey(settings: Settings, args: argparse.Namespace) -> int:
    from storage.apikeys import ApiKeys, KeyExists

    settings.ensure_data_dir()
    async with await Store.open(settings.database_path) as store:
        keys = ApiKeys(store)
        if args.action == "create":
            if args.daily is not None and args.daily < 0:
                raise ConfigError("--daily cannot be negative")
            try:
                record, key = await keys.create(args.name, daily_quota=args.daily)
            except (KeyExists, ValueError) as err:
                print(f"error: {err}", file=sys.stderr)
                return EXIT_CHECK_FAILED
            print(f"created API key {record.name!r}; it is shown only this once:")
            print(key)
            return 0
        if args.action == "revoke":
            if await keys.revoke(args.name):
                print(f"revoked API key {args.name!r}")
                return 0
            print(f"error: no active API key named {args.name!r}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        rows = await keys.list()
        if not rows:
            print("no API keys; create one with `python -m bot apikey create NAME`")
            return 0
        print(f"{'name':24} {'created':20} {'last used':20} {'videos':>7} {'daily':>6} status")
        for k in rows:
            daily = "-" if k.daily_quota is None else str(k.daily_quota)
            status = f"revoked {_when(k.revoked_at)}" if k.revoked_at else "active"
            used = _when(k.last_used_at)
            print(f"{k.name:24} {_when(k.created_at):20} {used:20} {k.usage_count:>7} {daily:>6} {status}")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    command = args.command or "run"
    try:
        settings = load_settings(discord=command == "run")
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if command == "apikey":
        try:
            return asyncio.run(run_apikey(settings, args))
        except (ConfigError, StorageError) as err:
            print(f"configuration error: {err}", file=sys.stderr)
            return EXIT_CONFIG
    return _run_service(command, settings)


def _run_service(command: str, settings: Settings) -> int:
    from bot.__main__ import run_bot, run_check
    from bot.backends.errors import BackendError
    from bot.backends.flow import errors as fe
    from bot.logs import setup_logging
    from bot.serve import run_serve

    redactor = setup_logging(settings.veo_log_level, settings.veo_log_format)
    runner = {"run": run_bot, "check": run_check, "serve": run_serve}[command]
    try:
        return asyncio.run(runner(settings, redactor))
    except (ConfigError, StorageError, fe.CookieFileError) as err:
        print(f"configuration error: {redactor(str(err))}", file=sys.stderr)
        return EXIT_CONFIG
    except BackendError as err:
        from bot.messages import backend_error_text

        print(f"check failed: {redactor(backend_error_text(err))} ({type(err).__name__})", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except KeyboardInterrupt:
        return 0
