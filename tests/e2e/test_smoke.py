"""A first conversation over real TCP: two users, live push, history."""

from tests.helpers.server import Server


async def test_two_users_chat(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    assert (await alice.cmd("send_all hello bob")).startswith("OK sent [")
    line = await bob.line()
    assert "<alice> hello bob" in line and "#general" in line
    assert await alice.silent()
