"""Complaints cannot be weaponised (issue 13, item 11, the parts that keep the wire
contract): admins cannot be banned by complaints, and an operator may require a
minimum account age and some activity (messages sent) before a complaint counts (off
by default)."""

from __future__ import annotations

from tests.helpers.server import StartServer


async def test_complaints_do_not_ban_an_admin(start_server: StartServer) -> None:
    server = await start_server(moderation__admins=["root"])
    root = await server.login("root", password="pw")
    for name in ("r1", "r2", "r3"):
        c = await server.login(name)
        assert (await c.cmd("report root")).startswith(f"OK root has {name[1]} strike")
    assert (await root.until(lambda x: "strikes" in x)).startswith("* you were reported")
    assert (await root.cmd("send_all still here")).startswith("OK sent")
    # Everyone else is banned at three, as before.
    await server.login("troll")
    for name in ("r1", "r2", "r3"):
        c = await server.login(name)
        await c.cmd("report troll")
    troll = await server.login("troll")
    assert (await troll.cmd("send_all x")).startswith("ERR banned ")


async def test_young_accounts_cannot_report_when_configured(start_server: StartServer) -> None:
    server = await start_server(moderation__complaint_min_account_age_s=3600)
    await server.login("target")
    fresh = await server.login("fresh")
    line = await fresh.cmd("report target")
    assert line.startswith("ERR forbidden your account is too new to report others"), line
    server.clock.advance(3600)
    assert (await fresh.cmd("report target")).startswith("OK target has 1 strike")


async def test_accounts_that_never_spoke_cannot_silence_anyone_when_configured(
    start_server: StartServer,
) -> None:
    server = await start_server(
        moderation__complaint_min_messages=2, limits__general_messages_per_window=100
    )
    target = await server.login("target")
    sybils = [await server.login(f"sock{i}") for i in range(3)]  # made in one second
    for c in sybils:
        line = await c.cmd("report target")
        assert line.startswith("ERR forbidden take part before you report others"), line
        assert "(0 so far)" in line
    assert (await target.cmd("send_all not silenced")).startswith("OK sent")
    # Two messages each make them regulars; the count survives a restart (from the
    # stored messages), so their third complaint bans.
    for c in sybils:
        for n in (1, 2):
            assert (await c.cmd(f"send_all hello {n}")).startswith("OK sent")
    server = await server.restart(
        moderation__complaint_min_messages=2, limits__general_messages_per_window=100
    )
    for i in range(3):
        c = await server.login(f"sock{i}")
        assert (await c.cmd("report target")).startswith("OK target has")
    target = await server.login("target")
    assert (await target.cmd("send_all x")).startswith("ERR banned ")
