"""What one user types cannot drive another user's terminal; programs get it as sent."""

from __future__ import annotations

from tests.helpers.server import Server


async def test_c1_and_bidi_controls_never_reach_a_text_reader(server: Server) -> None:
    text_reader = await server.login("tina")
    json_reader = await server.login("jon", mode="json")
    sender = await server.login("mallory")
    hostile = "pay \u202egnp.exe\u202c now\u0085\u009b2J\u200b!"
    assert (await sender.cmd(f"send_all {hostile}")).startswith("OK sent")
    line = await text_reader.line()
    assert line.endswith("<mallory> pay gnp.exe now2J!")
    assert (await json_reader.obj())["text"] == hostile
    await text_reader.send("history #general\n")
    assert (await text_reader.reply())[0].endswith("<mallory> pay gnp.exe now2J!")
