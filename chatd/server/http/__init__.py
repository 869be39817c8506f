"""The HTTP door (HTTP.md, docs/http.md): REST, long-poll, SSE, WebSocket, web client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from chatd.server.http.connection import HttpConnection
from chatd.server.http.door import HttpDoor

if TYPE_CHECKING:
    from chatd.config import Config
    from chatd.server.context import Context
    from chatd.server.ops import Operations
    from chatd.store.base import Store

__all__ = ["HttpConnection", "HttpDoor", "listen"]


async def listen(ctx: Context, store: Store, ops: Operations, cfg: Config) -> list[asyncio.Server]:
    """Opens the HTTP door (and HTTPS with the [tls] certificate); nothing listens
    while its ports are 0 and systemd passed no `http` socket."""
    door = HttpDoor(ctx, store)
    return await ops.listen_door(
        "http",
        cfg.http.host or cfg.server.host,
        cfg.http.port,
        lambda: HttpConnection(door),
        tls_port=cfg.http.tls_port,
    )
