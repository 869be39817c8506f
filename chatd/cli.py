"""Command line: `chatd [options]` runs the daemon; `chatd check-config [PATH]` checks a
config file. Exit codes: 0 clean stop, 2 bad config or arguments, 1 anything else."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from chatd import __version__, logs
from chatd.config import Config, ConfigError, load
from chatd.store.base import StoreError

DEFAULT_CONFIG = Path("chatd.toml")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path)
    try:
        config = _config(args)
    except ConfigError as e:
        print(f"chatd: bad config: {e}", file=sys.stderr)
        return 2
    logs.configure(config.log.level, config.log.format)
    return run(config)


def run(config: Config) -> int:
    """Runs the daemon until SIGTERM/SIGINT; uvloop when enabled and installed."""
    from chatd.server.daemon import Daemon

    async def serve() -> None:
        daemon = Daemon(config)
        await daemon.start()
        await daemon.serve_forever()

    log = structlog.get_logger("chatd")
    try:
        if config.server.uvloop:
            try:
                import uvloop
            except ImportError:
                log.info("server.uvloop_missing")
            else:
                uvloop.run(serve())
                return 0
        asyncio.run(serve())
    except StoreError as e:
        log.error("server.store_failed", error=str(e))
        return 1
    except OSError as e:
        log.error("server.start_failed", error=str(e))
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatd", description="chatd, a line-protocol chat daemon")
    p.add_argument("--version", action="version", version=f"chatd {__version__}")
    p.add_argument("--config", type=Path, help="config file (default: ./chatd.toml if present)")
    p.add_argument("--host", help="address to listen on (server.host)")
    p.add_argument("--port", type=int, help="TCP port (server.port)")
    p.add_argument("--data-dir", help="where the database and files live (server.data_dir)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error", "critical"])
    sub = p.add_subparsers(dest="command")
    check = sub.add_parser("check-config", help="validate a config file; exit 0 or 2")
    check.add_argument("path", nargs="?", type=Path, default=DEFAULT_CONFIG)
    return p


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    overrides = {
        key: value
        for key, value in {
            "server.host": args.host,
            "server.port": args.port,
            "server.data_dir": args.data_dir,
            "log.level": args.log_level,
        }.items()
        if value is not None
    }
    return load(path).with_overrides(overrides)


def _check_config(path: Path) -> int:
    try:
        load(path)
    except ConfigError as e:
        print(f"chatd: bad config: {e}", file=sys.stderr)
        return 2
    print(f"{path}: ok")
    return 0
