"""Names (issue 13, item 13): a new account may not take a name confusable with an
existing one (Ergo's skeleton rule) nor a reserved name."""

from __future__ import annotations

from tests.helpers.server import Server, StartServer


async def _login_line(server: Server, name: str) -> str:
    c = await server.connect()
    return await c.cmd(f"login {name}")


async def test_confusable_names_are_refused(server: Server) -> None:
    for name in ("alice", "mallory", "bob0", "wendy", "claire"):
        await server.login(name)
    for lookalike, like in (
        ("aIice", "alice"),  # capital i
        ("a1ice", "alice"),
        ("ALICE1", None),  # not confusable: a new name
        ("rnallory", "mallory"),
        ("bobO", "bob0"),
        ("bobo", "bob0"),
        ("vvendy", "wendy"),
        ("daire", "claire"),
        ("ALlCE", None),  # capital A L, small l, capital C E: not alice to a reader
    ):
        line = await _login_line(server, lookalike)
        if like is None:
            assert line.startswith(f"OK welcome {lookalike} (new account)"), line
        else:
            assert line == (
                f"ERR bad-name {lookalike} looks too much like the user {like}; pick another name"
            ), line
    # The same name in another case is the same account, not a lookalike.
    assert (await _login_line(server, "ALICE")).startswith("OK welcome alice")
    assert (await _login_line(server, "Bob0")).startswith("OK welcome bob0")


async def test_reserved_names_are_refused_for_new_accounts(start_server: StartServer) -> None:
    server = await start_server(moderation__admins=["root"])
    for name in ("general", "General", "chatd", "server", "admin", "adrnin", "ADMIN"):
        line = await _login_line(server, name)
        assert line == f"ERR bad-name the name {name} is reserved; pick another name", line
    # An admin the operator named may be created, and then nobody may look like it.
    assert (await _login_line(server, "root pw")).startswith("OK welcome root (new account)")
    assert (await _login_line(server, "r00t")).startswith("ERR bad-name the name r00t is reserved")
    assert (await _login_line(server, "rootkit")).startswith("OK welcome rootkit")


async def test_accounts_made_before_the_rule_still_log_in(start_server: StartServer) -> None:
    server = await start_server(moderation__reserved_names=[])
    await server.login("admin")
    await server.login("chatd")
    server = await server.restart()  # the shipped reserved list applies again
    assert (await _login_line(server, "admin")).startswith("OK welcome admin,")
    assert (await _login_line(server, "chatd")).startswith("OK welcome chatd,")
    assert (await _login_line(server, "adrnin")).startswith("ERR bad-name")
