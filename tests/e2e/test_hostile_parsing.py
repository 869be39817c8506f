"""Strict parsing (issue 13, item 14): what does not parse is `bad-args`, never a
silent default or an `internal` crash."""

from __future__ import annotations

from tests.helpers.server import StartServer


async def test_admin_ban_with_a_bad_duration_is_refused(start_server: StartServer) -> None:
    server = await start_server(moderation__admins=["root"])
    root = await server.login("root", password="pw")
    troll = await server.login("troll")
    for bad in ("4x", "1.5h", "-5m", "0", "99999d", "4h30"):
        line = await root.cmd(f"ban troll {bad} flooding")
        assert line.startswith("ERR bad-args bad duration"), (bad, line)
    assert (await troll.cmd("send_all still free")).startswith("OK sent")  # no silent 4 h
    assert (await root.cmd("ban troll 1h30m flooding")).startswith("OK troll has 0 strikes, banned")
    assert (await troll.line()).startswith("* you are banned from sending until ")
    assert (await troll.jcmd("mode json"))["mode"] == "json"
    err = await troll.jcmd("send_all x")
    assert err["code"] == "banned" and 5390 <= err["retry_after"] <= 5400, err
    # A first word that is not a number is the reason; the configured duration applies.
    assert (await root.cmd("unban troll")) == "OK troll"
    assert (await root.cmd("ban troll because")).startswith("OK troll has 0 strikes, banned")


async def test_schedule_at_the_edge_of_the_calendar_is_bad_args(start_server: StartServer) -> None:
    for zone in ("", "Asia/Tokyo", "America/New_York"):  # "": the system's (UTC in CI)
        server = await start_server(server__timezone=zone)
        alice = await server.login("alice")
        for when in ("0001-01-01T00:00", "0001-01-01T00:00Z", "9999-12-31T23:59", "2026-13-01"):
            line = await alice.cmd(f"schedule {when} send_all hi")
            assert line.startswith("ERR bad-args "), (zone, when, line)
    assert (await alice.cmd("ping")) == "OK pong"  # the session goes on
