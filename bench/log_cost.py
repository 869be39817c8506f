"""CPU per logged event (issue 17): the hot `message.sent` at info (batched: one line per
loop turn), and `room.created` (one line per call), through the real `chatd.logs`
pipeline, for JSON lines into a file and for journald's native protocol (into a
datagram socket drained by a child process, as journald would be).

    .venv/bin/python -m bench.log_cost --events 200000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chatd import logs

_DRAIN = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(sys.argv[1])
print("ready", flush=True)
while s.recv(1 << 16) != b"stop":
    pass
"""


def per_event_us(events: int, per_turn: int = 80, event: str = "message.sent") -> float:
    """Process CPU µs per `event` with the current configuration, logged from an event
    loop `per_turn` events a turn (a batch of 80 messages, as in fanout100)."""

    async def run() -> float:
        log = logs.get_logger("chatd.bench")
        start = time.process_time()
        for turn in range(0, events, per_turn):
            for i in range(turn, turn + per_turn):
                log.info(event, user="alice", chat="#general", id=i)
            await asyncio.sleep(0)
        return (time.process_time() - start) / events * 1e6

    return asyncio.run(run())


def per_login_us(logins: int) -> float:
    """Process CPU µs per loop turn of a login storm: the three events of a new login
    (a storm is a turn per login), and the turn's end."""

    async def run() -> float:
        log = logs.get_logger("chatd.bench")
        start = time.process_time()
        for i in range(logins):
            log.info("session.opened", session=i, peer="127.0.0.1", telnet=False)
            log.info("user.created", user=f"u{i}", password=False)
            log.info("user.login", user=f"u{i}", session=i, new=True, unread=0)
            await asyncio.sleep(0)
        return (time.process_time() - start) / logins * 1e6

    return asyncio.run(run())


def report(label: str, events: int) -> None:
    sent = per_event_us(events)
    other = per_event_us(events // 4, event="room.created")
    login = per_login_us(events // 8)
    print(
        f"{label:20} {sent:6.2f} µs/message.sent  {other:6.2f} µs/room.created (a line each)"
        f"  {login:6.2f} µs/login turn"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "out.log"
        with out_path.open("w") as out:
            logs.configure("warning", "json", out)
            report("warning (dropped):", args.events)
            logs.configure("info", "json", out)
            report("info, JSON lines:", args.events)
            sock = str(Path(tmp) / "journal.sock")
            drain = subprocess.Popen(
                [sys.executable, "-c", _DRAIN, sock], stdout=subprocess.PIPE, text=True
            )
            try:
                assert drain.stdout is not None and drain.stdout.readline().strip() == "ready"
                st = os.fstat(out.fileno())
                env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
                logs.configure("info", "auto", out, environ=env, journal_socket=sock)
                report("info, journald:", args.events)
            finally:
                import socket

                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendto(b"stop", sock)
                drain.wait(10)
        lines = out_path.read_text().splitlines()
        print(f"sample line: {lines[0][:160]}…")


if __name__ == "__main__":
    main()
