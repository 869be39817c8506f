"""IRC registration: with and without CAP, PASS and SASL, nick collisions, PING/QUIT."""

from __future__ import annotations

from tests.helpers.irc import IrcClient, start_irc
from tests.helpers.server import StartServer


async def test_plain_registration_welcome_and_general(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    c = await IrcClient.connect(port)
    got = await c.register("alice")
    cmds = [m.command for m in got]
    assert cmds[:5] == ["001", "002", "003", "004", "005"]
    assert got[0].params[0] == "alice"
    assert cmds[-1] == "422"
    isupport = " ".join(" ".join(m.params[1:-1]) for m in got if m.command == "005")
    assert "CASEMAPPING=ascii" in isupport and "CHANTYPES=#" in isupport
    burst = await c.until("366")
    assert burst[0].command == "JOIN" and burst[0].params == ("#general",)
    assert burst[0].source is not None and burst[0].source.startswith("alice!")
    names = [m for m in burst if m.command == "353"]
    assert "alice" in names[0].params[-1].split()
    await c.send("PING :tok")
    pong = (await c.until("PONG"))[-1]
    assert pong.params[-1] == "tok"
    await c.send("QUIT :bye")
    err = (await c.until("ERROR"))[-1]
    assert "bye" in err.params[0]
    await c.close()
