"""`chat` / `run_client.py`: argument parsing and the choice between the two front ends.

A terminal on both stdin and stdout gets the interactive readline client; anything else
(a pipe, a file, `--command`) the scripted one. Exit codes: 0 fine, 1 a command got
ERR (scripts), 2 cannot connect or log in (or bad arguments), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from chatd.client.app import run_interactive, run_scripted
from chatd.client.connection import Endpoint, parse_servers
from chatd.client.render import Theme, use_color
from chatd.client.session import name_problem
from chatd.client.terminal import history_path, load_history

DEFAULT_HOST = "127.0.0.1"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        servers = endpoints(args)
    except ValueError as e:
        parser.error(str(e))
    interactive = args.command is None and sys.stdin.isatty() and sys.stdout.isatty()
    theme = Theme(color=use_color(sys.stdout, os.environ))
    # For scripts and services; people are asked with getpass instead (no echo, no
    # shell history).
    password = os.environ.get("CHATD_PASSWORD") or None
    try:
        user = args.user or _ask_name(interactive)
        if user is None:
            return 2
        if interactive:
            history = history_path(os.environ)
            load_history(history)
            return asyncio.run(
                run_interactive(
                    servers, user, password, theme, retry_base=args.retry_delay, history=history
                )
            )
        return asyncio.run(run_scripted(servers, user, password, theme, command=args.command))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def endpoints(args: argparse.Namespace) -> list[Endpoint]:
    """The servers to try, in order: every `--server` (a port-less one takes `--port`),
    else `--host` and `--port`. TLS options apply to all. ValueError says what is wrong."""
    tls = args.tls or args.cafile is not None
    if not args.server:
        return [Endpoint(args.host or DEFAULT_HOST, args.port, tls, args.cafile)]
    if args.host is not None:
        raise ValueError("--host and --server do not mix: give every server with --server")
    return [Endpoint(h, p, tls, args.cafile) for h, p in parse_servers(args.server, args.port)]


def _ask_name(
    interactive: bool, ask: Callable[[str], str] = input, err: TextIO | None = None
) -> str | None:
    """The name prompt. A name with a space is refused and asked again: sent as is, its
    second word would be taken for a password. An empty answer or EOF gives up."""
    err = err or sys.stderr
    if not interactive:
        print("chat: --user NAME is needed when stdin is not a terminal", file=err)
        return None
    while True:
        try:
            name = ask("name: ").strip()
        except EOFError:
            return None
        problem = name_problem(name)
        if problem is None:
            return name
        print(f"chat: {problem}", file=err)
        if not name:
            return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chat",
        description="chatd's terminal client. Type /help once connected.",
        epilog="With stdin not a terminal, each input line is sent as if typed and the "
        "exit code is 0 if all succeeded, 1 if any got ERR, 2 on connection problems. "
        "CHATD_PASSWORD supplies a password to scripts.",
    )
    p.add_argument("--host", help=f"server address (default {DEFAULT_HOST}); see --server")
    p.add_argument(
        "--port",
        type=int,
        default=8000,
        help="server port (default 8000), also for a --server without one",
    )
    p.add_argument(
        "--server",
        action="append",
        metavar="HOST[:PORT]",
        help="a server to use; repeat it (or separate with commas) to give several nodes: "
        "the client tries them in order and, when the connection drops, fails over to the "
        "next. IPv6 in brackets: [::1]:8000. Replaces --host (not to be used with it)",
    )
    p.add_argument("--user", help="your name (asked when not given)")
    p.add_argument("--tls", action="store_true", help="connect with TLS, verifying the server")
    p.add_argument("--cafile", help="trust this CA certificate (PEM) for --tls")
    p.add_argument(
        "--command", metavar="CMD", help='run one command and exit, e.g. "send bob hi" or "/who"'
    )
    # The first reconnect delay (then doubling, up to 30 times it); tests make it short.
    p.add_argument("--retry-delay", type=float, default=1.0, help=argparse.SUPPRESS)
    return p
