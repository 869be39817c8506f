"""The HTTP door (HTTP.md, docs/http.md): REST, long-poll, SSE, WebSocket, web client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from chatd.server.http.connection import HttpConnection
from chatd.server.http.door import HttpDoor

if TYPE_CHECKING:
    from chatd.config import Config
    from chatd.server.context import Context
    from chatd.server.listeners import Operations
    from chatd.store.base import Store

__all__ = ["HttpConnection", "HttpDoor", "listen"]


async def listen(ctx: Context, store: Store, ops: Operations, cfg: Config) -> list[asyncio.Server]:
    """Opens the HTTP door (and HTTPS with the [tls] certificate); nothing listens
    while its ports are 0 and systemd passed no `http` socket."""
    door = HttpDoor(ctx, store)
    servers = await ops.listen_door(
        "http",
        cfg.http.host or cfg.server.host,
        cfg.http.port,
        lambda: HttpConnection(door),
        tls_port=cfg.http.tls_port,
    )
    if not servers:
        return []
    # The daemon closes its listeners when it stops; this one also tells the door.
    return [*servers, cast(asyncio.Server, _Shutdown(door))]


class _Shutdown(asyncio.AbstractServer):
    """Stands in the daemon's list of listeners so that stopping the daemon also
    shuts the door (sessions told, connections closed). Only `close` is used."""

    def __init__(self, door: HttpDoor) -> None:
        self._door = door

    def close(self) -> None:
        self._door.shutdown()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._door.loop

    def is_serving(self) -> bool:
        return not self._door.stopping

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None
