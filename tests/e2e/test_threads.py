"""Comments and threads over real TCP: posting, visibility, replay."""

from __future__ import annotations

from tests.helpers.server import Server


async def test_comments_and_threads_over_tcp(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    posted = await alice.jcmd("send_all lunch?")
    assert (await bob.obj())["text"] == "lunch?"

    reply = await bob.jcmd(f"comment {posted['id']} yes")
    assert reply["type"] == "ok" and reply["cmd"] == "comment"
    assert reply["reply_to"] == posted["id"] and reply["id"] > posted["id"]
    assert reply["ts"].endswith("Z")
    got = await alice.obj()
    assert got["type"] == "message" and got["reply_to"] == posted["id"]
    assert (got["chat"], got["from"], got["text"]) == ("#general", "bob", "yes")

    nested = await alice.jcmd(f"comment {reply['id']} great")
    assert nested["reply_to"] == posted["id"]
    await bob.obj()

    thread = await bob.jcmd(f"thread {reply['id']}")
    assert thread["message"]["id"] == posted["id"] and thread["message"]["reply_to"] is None
    assert [(m["from"], m["text"]) for m in thread["comments"]] == [
        ("bob", "yes"),
        ("alice", "great"),
    ]
    missing = await bob.jcmd("thread 999")
    assert missing["type"] == "error" and missing["code"] == "no-such-message"


async def test_private_comment_visibility_over_tcp(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    carol = await server.login("carol", mode="json")
    secret = await alice.jcmd("send bob the code is 42")
    await bob.obj()
    for line in (f"comment {secret['id']} nosy", f"thread {secret['id']}"):
        err = await carol.jcmd(line)
        assert err["code"] == "no-such-message" and "42" not in err["message"]
    reply = await bob.jcmd(f"comment {secret['id']} thanks")
    got = await alice.obj()
    assert (got["chat"], got["to"], got["reply_to"]) == ("@bob", "alice", secret["id"])
    assert got["id"] == reply["id"]
    assert await carol.silent()


async def test_comments_are_replayed_like_messages(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob", mode="json")
    posted = await bob.jcmd("send_all hello")
    await alice.line()
    await alice.close()
    await bob.jcmd(f"comment {posted['id']} anyone?")
    alice = await server.connect()
    await alice.send("login alice\n")
    assert (await alice.line()).startswith("OK welcome alice, 1 unread")
    assert f"(re [{posted['id']}]) anyone?" in await alice.line()
    await alice.send(f"thread {posted['id']}\n")
    lines = await alice.reply()
    assert lines[-1] == f"OK thread [{posted['id']}], 1 comment"
    assert "hello" in lines[0] and "anyone?" in lines[1]
