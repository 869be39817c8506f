"""Command line: `chatd [options]` runs the daemon; `chatd check-config [PATH]` checks a
config file; `chatd backup DEST` copies the data directory while the daemon runs;
`chatd reload PID` asks a running daemon to re-read its config (the unit's ExecReload=);
`chatd migrate` creates or upgrades the PostgreSQL schema ([store] backend = "postgres");
`chatd admin add NAME` creates an admin's account (or sets its password) in the store.
Exit codes: 0 clean stop, 2 bad config or arguments, 1 anything else."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from chatd import __version__, logs
from chatd.backup import BackupError, backup_data_dir
from chatd.config import Config, ConfigError, load
from chatd.store.base import StoreError

DEFAULT_CONFIG = Path("chatd.toml")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "reload":
        return _reload(args.pid)
    if args.command == "check-config":
        return _check_config(args.path or args.config or DEFAULT_CONFIG)
    try:
        path, overrides = _sources(args)
        config = load(path).with_overrides(overrides)
    except ConfigError as e:
        _bad_config(e)
        return 2
    if args.command == "migrate":
        return _migrate(config)
    if args.command == "admin":
        return _admin_add(config, args.name, stdin=args.password_stdin)
    if args.command == "backup":
        if config.store.backend == "postgres":
            print(
                "chatd: backup copies an SQLite data directory; this store is PostgreSQL: "
                "back it up with pg_dump or base backups (docs/operations.md, section 11)",
                file=sys.stderr,
            )
            return 2
        logs.configure("warning", config.log.format, stream=sys.stderr)
        return _backup(Path(config.server.data_dir), args.dest)
    logs.configure(config.log.level, config.log.format)
    return run(config, config_path=path, overrides=overrides)


def run(
    config: Config,
    *,
    config_path: Path | None = None,
    overrides: Mapping[str, object] | None = None,
) -> int:
    """Runs the daemon until SIGTERM/SIGINT; uvloop when enabled and installed. SIGHUP
    re-reads `config_path` with the same `overrides` (the command-line flags)."""
    from chatd.server.daemon import Daemon

    async def serve() -> None:
        daemon = Daemon(config, config_path=config_path, overrides=overrides)
        await daemon.start()
        # The loaded state lives as long as the process: keep the cyclic GC off it, and
        # collect the young generation less often (messages and outcomes churn fast).
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        await daemon.serve_forever()

    log = logs.get_logger("chatd")
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
    except ConfigError as e:  # found at start-up, e.g. an unreadable TLS key
        _bad_config(e)
        return 2
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
    check = sub.add_parser(
        "check-config",
        help="validate a config file (and reach PostgreSQL if it is the store); exit 0, 1 or 2",
    )
    check.add_argument("path", nargs="?", type=Path, help="default: --config, else ./chatd.toml")
    backup = sub.add_parser(
        "backup",
        help="copy the database and files into DEST while chatd runs (exit 0, 1 or 2)",
        description="A consistent online copy of the data directory (server.data_dir, or "
        "--data-dir) into DEST, which must be new or empty. Restore: docs/operations.md.",
    )
    backup.add_argument("dest", type=Path, help="new or empty directory for the copy")
    # Also accepted after the subcommand; SUPPRESS keeps the values given before it.
    backup.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="as before the subcommand"
    )
    backup.add_argument(
        "--data-dir", default=argparse.SUPPRESS, help="the live data directory to copy"
    )
    reload = sub.add_parser(
        "reload",
        help="re-read the config of the daemon with this PID (SIGHUP); exit 0, 1 or 2",
        description="Sends SIGHUP to PID (default: $MAINPID, as systemd sets it for "
        "ExecReload=), so reloading needs no /bin/kill (procps) on a minimal system.",
    )
    reload.add_argument("pid", nargs="?", default=os.environ.get("MAINPID", ""))
    migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the PostgreSQL schema (exit 0, 1 or 2)",
        description='With [store] backend = "postgres": creates the schema in the database '
        "at store.dsn, or upgrades it to this chatd's version (safe to run on every node). "
        "With SQLite there is nothing to do: chatd upgrades its file when it opens it.",
    )
    migrate.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="as before the subcommand"
    )
    admin = sub.add_parser(
        "admin",
        help="provision an admin's account: admin add NAME (exit 0, 1 or 2)",
        description="Creates the account NAME with a password you type (or sets it), in "
        "the store chatd uses; with moderation.provisioned_admins = true this is the only "
        "way an admin's account comes to exist. Run it before starting chatd, or restart "
        "chatd after it.",
    )
    admin.add_argument("action", choices=["add"])
    admin.add_argument("name", help="an account name listed in moderation.admins")
    admin.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    admin.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="as before the subcommand"
    )
    admin.add_argument(
        "--data-dir", default=argparse.SUPPRESS, help="the data directory (server.data_dir)"
    )
    return p


def _sources(args: argparse.Namespace) -> tuple[Path | None, dict[str, object]]:
    """The config file and command-line overrides: what start-up and reload both read."""
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
    return path, overrides


def _backup(data_dir: Path, dest: Path) -> int:
    try:
        report = backup_data_dir(data_dir, dest)
    except BackupError as e:
        print(f"chatd: backup failed: {e}", file=sys.stderr)
        return 1
    print(
        f"{report.dest}: database {report.database_bytes} bytes, "
        f"{report.files_copied} files ({report.files_bytes} bytes), "
        f"{report.files_skipped} skipped, {report.seconds:.2f}s"
    )
    return 0


def _check_config(path: Path) -> int:
    try:
        config = load(path)
    except ConfigError as e:
        _bad_config(e)
        return 2
    if config.store.backend == "postgres":
        from chatd.store import postgres

        try:
            found = postgres.check(config.store.dsn, timeout=config.store.connect_timeout_s)
        except StoreError as e:
            print(f"chatd: {path}: store.dsn: {e}", file=sys.stderr)
            return 1
        print(f"{path}: ok ({found})")
        return 0
    print(f"{path}: ok")
    return 0


def _admin_add(config: Config, name: str, *, stdin: bool) -> int:
    """`chatd admin add NAME`: the account, with the operator's password, in the store
    (created with the read position a new account gets, or its password replaced and
    its HTTP tokens revoked). 0 done, 2 a bad name or password, 1 the store failed."""
    from chatd.core import outcome as o
    from chatd.core.names import key, valid_name
    from chatd.core.passwords import hash_password
    from chatd.store.open import open_store

    if not valid_name(name) or key(name) not in {key(a) for a in config.moderation.admins}:
        print(
            f"chatd: admin add: {name!r} is not a name listed in moderation.admins", file=sys.stderr
        )
        return 2
    if stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        import getpass

        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            print("chatd: admin add: the passwords differ", file=sys.stderr)
            return 2
    if not password or any(ch.isspace() for ch in password):
        print("chatd: admin add: a password is one word, not empty", file=sys.stderr)
        return 2
    try:
        store = open_store(config)
        try:
            snapshot = store.load()
            existing = {a.key: a for a in snapshot.accounts}.get(key(name))
            created = existing.created if existing is not None else time.time()
            store.commit(
                [
                    o.PutAccount(
                        key(name), name, hash_password(password), created, snapshot.next_id - 1
                    ),
                    o.DeleteTokensOf(key(name)),
                ]
            )
        finally:
            store.close()
    except StoreError as e:
        print(f"chatd: admin add: {e}", file=sys.stderr)
        return 1
    what = "password set" if existing is not None else "account created"
    print(f"{name}: {what}; restart chatd if it is running")
    return 0


def _migrate(config: Config) -> int:
    """`chatd migrate`: 0 done (or nothing to do), 1 the database refused or is away."""
    if config.store.backend != "postgres":
        print("chatd: migrate: the store is SQLite; it upgrades itself when chatd opens it")
        return 0
    from chatd.store import postgres

    try:
        before, after = postgres.migrate(config.store.dsn, timeout=config.store.connect_timeout_s)
    except StoreError as e:
        print(f"chatd: migrate: {e}", file=sys.stderr)
        return 1
    if before == after:
        print(f"chatd: migrate: schema version {after}, nothing to do")
    else:
        print(f"chatd: migrate: schema version {before} -> {after}")
    return 0


def _bad_config(e: ConfigError) -> None:
    """The one line naming the bad key; at error priority when stderr is the journal,
    so `journalctl -u chatd -p err` shows why the unit failed."""
    print(logs.syslog_prefixed(f"chatd: bad config: {e}"), file=sys.stderr)


def _reload(pid: str) -> int:
    """SIGHUP to the daemon: 0 sent, 1 no such process (or not ours), 2 not a PID."""
    if not pid.strip().isdigit() or int(pid) <= 0:
        print(f"chatd: reload: not a process id: {pid!r}", file=sys.stderr)
        return 2
    try:
        os.kill(int(pid), signal.SIGHUP)
    except OSError as e:
        print(f"chatd: reload: process {int(pid)}: {e.strerror}", file=sys.stderr)
        return 1
    return 0
