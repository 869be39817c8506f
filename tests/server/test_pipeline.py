"""The one command path as a door uses it: Submit's reply hook and done callback."""

from __future__ import annotations

import asyncio

from chatd.protocol import commands as c
from chatd.protocol.events import Event
from chatd.protocol.replies import SendAllOk
from chatd.server.pipeline import Submit
from tests.helpers.server import Server


async def test_a_submit_maps_its_reply_and_hears_of_the_commit(server: Server) -> None:
    alice = await server.login("alice")
    [conn] = [x for x in server.line_connections() if x.peer and x.peer.account]
    assert conn.pipeline is not None and conn.peer is not None
    seen: list[Event] = []
    done = asyncio.get_running_loop().create_future()

    def reply(event: Event) -> Event | None:
        seen.append(event)
        return None  # this door writes nothing for it (IRC without echo-message)

    conn.pipeline.feed(
        [Submit(c.SendAll("quiet", verb="send_all"), reply, lambda: done.set_result(1))]
    )
    await asyncio.wait_for(done, 5)
    [ok] = seen
    assert isinstance(ok, SendAllOk)
    assert await alice.silent(0.2)  # no OK line was written
    # Its own message counts as received although no reply carried it.
    assert conn.peer.written_id == ok.id
    bob = await server.login("bob")
    assert await bob.cmd("history #general") == "OK 1 message in #general"
