"""The web client at GET / in a real browser (Debian's headless chromium via Playwright)
against a real daemon, next to an nc user: chatting across doors, rooms and unread
counts, comments, history paging, a server restart, files both ways, hostile text,
and a phone-sized screen (issue 14, item 4)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import FilePayload, WebSocketRoute, expect

from tests.helpers.browser import PHONE, WebUser, chromium, launch
from tests.helpers.server import TIMEOUT, Child, Client, Server, StartServer, free_port

pytestmark = [
    pytest.mark.skipif(
        chromium() is None, reason="chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.timeout(60),
]

ROOT = Path(__file__).resolve().parents[2]


async def web_server(start_server: StartServer, **settings: object) -> tuple[Server, str]:
    port = free_port()
    server = await start_server(http__port=port, **settings)
    return server, f"http://127.0.0.1:{port}"


async def nc_cmd(client: Client, line: str) -> str:
    reply = await client.cmd(line)
    assert reply.startswith("OK"), reply
    return reply


async def test_two_browsers_and_an_nc_user_chat(start_server: StartServer) -> None:
    server, base = await web_server(start_server)
    carol = await server.login("carol")
    async with launch() as browser:
        alice = await WebUser.login(browser, base, "alice", "alice-pw")
        bob = await WebUser.login(browser, base, "bob", "bob-pw")

        # #general across three doors: browser -> browser and nc, nc -> both browsers.
        await alice.send("hello from alice")
        await bob.see("hello from alice")
        line = await carol.until(lambda s: "hello from alice" in s)
        assert "#general <alice> hello from alice" in line
        await nc_cmd(carol, "send_all hi browsers, carol here")
        await alice.see("hi browsers, carol here")
        await bob.see("hi browsers, carol here")
        await bob.send("bob here too")
        await alice.see("bob here too")
        assert "#general <bob> bob here too" in await carol.until(lambda s: "bob here too" in s)

        # A private chat shows up in the side list with an unread count.
        await bob.start_chat("@alice")
        await bob.send("psst, alice")
        await expect(alice.chat_item("@bob").locator(".badge")).to_have_text("1")
        await alice.open_chat("@bob")
        await alice.see("psst, alice")
        await expect(alice.chat_item("@bob").locator(".badge")).to_have_count(0)

        # A comment is shown under its message, on the other page too, and nc gets it.
        await alice.open_chat("#general")
        await alice.message("hi browsers, carol here").locator(".comment-btn").click()
        await expect(alice.page.locator("#replying")).to_be_visible()
        await alice.send("welcome, carol")
        await expect(bob.chat_item("#general").locator(".badge")).to_have_text("1")
        await bob.open_chat("#general")
        under = bob.message("hi browsers, carol here").locator(".comments .msg")
        await expect(under).to_have_count(1)
        await expect(under.locator(".text")).to_have_text("welcome, carol")
        assert "(re [" in await carol.until(lambda s: "welcome, carol" in s)

        # A room made on nc appears in the browser's list, with unread messages.
        await nc_cmd(carol, "room create plans")
        await nc_cmd(carol, "room invite #plans alice")
        await expect(alice.chat_item("#plans")).to_be_visible()
        await nc_cmd(carol, "send #plans agenda for monday")
        await expect(alice.chat_item("#plans").locator(".badge")).to_have_text("1")
        await alice.open_chat("#plans")
        await alice.see("agenda for monday")
        await alice.send("count me in")
        assert "count me in" in await carol.until(lambda s: "count me in" in s)

        alice.assert_no_errors()
        bob.assert_no_errors()
    await carol.close()


async def test_login_errors_rooms_reload_and_logout(start_server: StartServer) -> None:
    server, base = await web_server(start_server)
    await (await server.login("alice", password="right")).close()
    async with launch() as browser:
        context = await browser.new_context(base_url=base)
        page = await context.new_page()
        await page.goto("/")
        await page.fill("#login-name", "alice")
        await page.fill("#login-password", "wrong")
        await page.click("#login-submit")
        await expect(page.locator("#login-error")).to_contain_text("password")
        await expect(page.locator("#app")).to_be_hidden()
        await context.close()

        alice = await WebUser.login(browser, base, "alice", "right")
        bob = await WebUser.login(browser, base, "bob")
        # "#name" in the open box creates a room; the invite box adds a member.
        await alice.start_chat("#trip")
        await alice.page.fill("#invite-name", "bob")
        await alice.page.press("#invite-name", "Enter")
        await expect(bob.chat_item("#trip")).to_be_visible()
        await alice.send("tickets booked")
        await expect(bob.chat_item("#trip").locator(".badge")).to_have_text("1")
        await bob.open_chat("#trip")
        await bob.see("tickets booked")
        await bob.page.click("#leave")
        await expect(bob.chat_item("#trip")).to_have_count(0)
        await expect(alice.page.locator("#messages .note", has_text="bob left")).to_be_visible()
        # A reload keeps the session (the token lives in sessionStorage) and the history.
        await alice.page.reload()
        await alice.wait_online()
        await alice.open_chat("#trip")
        await alice.see("tickets booked")
        # Logging out revokes the token and shows the login form again.
        token = await alice.page.evaluate("sessionStorage.getItem('chatd.token')")
        assert token
        await alice.page.click("#logout")
        await expect(alice.page.locator("#login")).to_be_visible()
        assert await alice.page.evaluate("sessionStorage.getItem('chatd.token')") is None
        status = await alice.page.evaluate(
            "async (t) => (await fetch('/status', {headers: {Authorization: 'Bearer ' + t}}))"
            ".status",
            token,
        )
        assert status == 401
        # A page whose token was revoked elsewhere goes back to the login form.
        await bob.page.evaluate(
            "async () => fetch('/session', {method: 'DELETE', headers: {Authorization:"
            " 'Bearer ' + sessionStorage.getItem('chatd.token')}})"
        )
        await bob.page.reload()
        await expect(bob.page.locator("#login-error")).to_have_text(
            "Your session has ended; please log in again."
        )
        alice.assert_no_errors()
        bob.assert_no_errors()


async def test_a_refused_socket_is_explained_and_retried(start_server: StartServer) -> None:
    # Two sessions per user: alice's nc session and the page's token session leave no
    # room for the page's WebSocket until nc quits.
    server, base = await web_server(start_server, chat__max_sessions_per_user=2)
    alice_nc = await server.login("alice", password="pw")
    async with launch() as browser:
        context = await browser.new_context(base_url=base)
        page = await context.new_page()
        await page.goto("/")
        await page.fill("#login-name", "alice")
        await page.fill("#login-password", "pw")
        await page.click("#login-submit")
        banner = page.locator("#banner")
        await expect(banner).to_have_text("The server refused the live connection; retrying.")
        await expect(page.locator("#app")).not_to_have_attribute("data-conn", "online")
        await nc_cmd(alice_nc, "quit")
        await expect(page.locator("#app")).to_have_attribute("data-conn", "online", timeout=20_000)
        await expect(banner).to_be_hidden()
        await context.close()


async def test_a_silent_socket_is_pinged_and_a_dead_one_replaced(
    start_server: StartServer,
) -> None:
    # The page's timers run on Playwright's fake clock; its WebSockets go through a
    # route that records what the page sends on each and can stop passing the
    # server's frames on, which is how a half-open connection looks from the page.
    _, base = await web_server(start_server)
    sent: list[list[str]] = []  # per socket, in order
    passed: list[str] = []  # what the route handed on to the page
    dead: set[int] = set()
    closed_by_page: list[int] = []

    def route(page_side: WebSocketRoute) -> None:
        n = len(sent)
        sent.append([])
        server_side = page_side.connect_to_server()

        def up(message: str | bytes) -> None:
            sent[n].append(str(message))
            server_side.send(message)

        def down(message: str | bytes) -> None:
            if n not in dead:
                passed.append(str(message))
                page_side.send(message)

        async def closed(code: int | None, reason: str | None) -> None:
            closed_by_page.append(n)
            await server_side.close()

        page_side.on_message(up)
        server_side.on_message(down)
        page_side.on_close(closed)

    async with launch() as browser:
        context = await browser.new_context(base_url=base)
        page = await context.new_page()
        await page.clock.install()
        await page.route_web_socket(re.compile(r"/ws\?"), route)
        await page.goto("/")
        await page.fill("#login-name", "alice")
        await page.click("#login-submit")
        app = page.locator("#app")
        await expect(app).to_have_attribute("data-conn", "online")
        await until(lambda: any(line.startswith("history #general") for line in sent[0]))
        assert "ping" not in sent[0]
        # Every answer in before the clock moves: one that came in during the run
        # would count as recent traffic and put the ping off past it.
        await until(lambda: answered(passed) >= {"status", "rooms", "history"})
        await page.clock.run_for(36_000)  # 30 s of silence (checked every 5 s): a ping
        await until(lambda: "ping" in sent[0])
        await until(lambda: "ping" in answered(passed))
        dead.add(0)
        # The next ping goes unanswered: within 35 + 15 s the page drops the socket
        # and, half a second later, opens another.
        await page.clock.run_for(60_000)
        await until(lambda: closed_by_page == [0] and len(sent) == 2)
        assert sent[0].count("ping") == 2
        await expect(app).to_have_attribute("data-conn", "online")
        await until(lambda: "status" in sent[1])
        await context.close()


def answered(frames: list[str]) -> set[str]:
    """The commands these frames carry an answer (ok or error) to."""
    lines = [json.loads(line) for frame in frames for line in frame.split("\n") if line]
    return {obj["cmd"] for obj in lines if obj["type"] in ("ok", "error")}


async def until(condition: Callable[[], bool]) -> None:
    """Waits for something the page does on its own (frames reach the route's
    handlers a little after the page sends them)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the page did not get there")


async def test_history_pages_in_on_scroll(start_server: StartServer) -> None:
    server, base = await web_server(start_server, limits__general_messages_per_window=1000)
    carol = await server.login("carol")
    await carol.send("".join(f"send_all m{i:02d}\n" for i in range(1, 76)))
    for _ in range(75):
        assert (await carol.reply())[-1].startswith("OK sent")
    await nc_cmd(carol, "comment 1 a late comment on m01")  # ids are 1..75 on a new server
    async with launch() as browser:
        alice = await WebUser.login(browser, base, "alice")
        messages = alice.page.locator("#messages .msg")
        await alice.see("m75")
        await expect(messages).to_have_count(30)  # one page: m47..m75 and the comment
        # The comment's message is not loaded yet: it stands alone, saying what it answers.
        late = alice.message("a late comment on m01")
        await expect(late.locator(".re")).to_have_text("re [1]")
        scroller = alice.page.locator("#scroller")
        for _ in range(10):
            if await alice.page.locator(".note.start").count():
                break
            before = await messages.count()
            await scroller.evaluate("e => { e.scrollTop = 0; }")
            await expect(messages).not_to_have_count(before)
        await expect(alice.page.locator(".note.start")).to_have_text(
            "This is the beginning of #general."
        )
        texts = await alice.page.locator("#messages .msg > .text").all_text_contents()
        assert texts == ["m01", "a late comment on m01"] + [f"m{i:02d}" for i in range(2, 76)]
        # Paging reached m01: the comment moved under it.
        under = alice.message("m01").locator(".comments .msg > .text")
        await expect(under).to_have_text("a late comment on m01")
        alice.assert_no_errors()
    await carol.close()


async def test_page_survives_a_restart_and_shows_what_it_missed(
    spawn_server: Callable[..., Child], tmp_path: Path
) -> None:
    # A daemon in a child process, restarted for real. In between it runs once with
    # the HTTP door closed, so the page cannot come back before carol has spoken.
    line_port, http_port = free_port(), free_port()
    with_http = tmp_path / "http.toml"
    with_http.write_text(f"[http]\nport = {http_port}\n")
    without_http = tmp_path / "nohttp.toml"
    without_http.write_text("[http]\nport = 0\n")

    def restart(child: Child, config: Path) -> Child:
        child.proc.terminate()
        child.proc.wait(TIMEOUT)
        return spawn_server("--config", str(config), port=line_port)

    child = spawn_server("--config", str(with_http), port=line_port)
    async with launch() as browser:
        alice = await WebUser.login(browser, f"http://127.0.0.1:{http_port}", "alice", "pw")
        await alice.send("before the restart")
        child = restart(child, without_http)
        await expect(alice.page.locator("#app")).to_have_attribute("data-conn", "offline")
        carol = await Client.connect(line_port)
        await nc_cmd(carol, "login carol")
        # alice on nc receives this one: the server will not replay it to the page,
        # which must find it by itself (status, then history of a chat new to it).
        alice_nc = await Client.connect(line_port)
        await nc_cmd(alice_nc, "login alice pw")
        await nc_cmd(carol, "send alice and this, privately")
        await alice_nc.until(lambda s: "and this, privately" in s)
        await nc_cmd(alice_nc, "quit")
        # Nobody of alice's receives this one: the server replays it to the page.
        await nc_cmd(carol, "send_all you missed this")
        await carol.close()
        child = restart(child, with_http)
        await alice.wait_online(timeout_ms=20_000)  # the backoff reaches 15 s at most
        await alice.see("you missed this")
        await expect(alice.page.locator(".missed-marker")).to_have_text("1 missed message")
        await expect(alice.message("you missed this")).to_have_class(re.compile(r"\bmissed\b"))
        await expect(alice.chat_item("@carol").locator(".badge")).to_have_text("1")
        await expect(alice.page.locator("#banner")).to_have_text("Reconnected: 2 missed messages")
        _keep_screenshots(reconnected=await alice.page.screenshot())
        await alice.open_chat("@carol")
        await alice.see("and this, privately")
        # And the page is live again after it.
        bob = await Client.connect(line_port)
        await nc_cmd(bob, "login bob")
        await nc_cmd(bob, "send alice still there?")
        await expect(alice.chat_item("@bob")).to_be_visible()
        await alice.open_chat("@bob")
        await alice.see("still there?")
        await bob.close()
        alice.assert_no_errors()


async def test_upload_and_download_round_trip(start_server: StartServer, tmp_path: Path) -> None:
    server, base = await web_server(start_server)
    carol = await server.login("carol")
    data = os.urandom(200_000) + bytes(range(256))
    async with launch() as browser:
        alice = await WebUser.login(browser, base, "alice", "pw-a")
        bob = await WebUser.login(browser, base, "bob", "pw-b")
        payload: FilePayload = {
            "name": "notes.bin",
            "mimeType": "application/octet-stream",
            "buffer": data,
        }
        await alice.page.set_input_files("#file", files=[payload])
        sent = alice.page.locator("#messages .file", has_text="notes.bin")
        await expect(sent).to_have_count(1)
        line = await carol.until(lambda s: "notes.bin" in s)
        assert str(len(data)) in line

        file_button = bob.page.locator("#messages .file", has_text="notes.bin")
        await expect(file_button).to_contain_text("195.6 KiB")
        async with bob.page.expect_download() as info:
            await file_button.click()
        download = await info.value
        assert download.suggested_filename == "notes.bin"
        path = tmp_path / "got.bin"
        await download.save_as(path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert path.read_bytes() == data

        # A file from nc downloads byte for byte in the browser too.
        small = b"line one\nline two\x00\xff\n"
        await carol.send("upload #general from-nc.txt\n" + _b64(small) + ".\n")
        assert (await carol.reply())[-1].startswith("OK sent")
        from_nc = alice.page.locator("#messages .file", has_text="from-nc.txt")
        async with alice.page.expect_download() as info:
            await from_nc.click()
        path2 = tmp_path / "from-nc.txt"
        await (await info.value).save_as(path2)
        assert path2.read_bytes() == small
        alice.assert_no_errors()
        bob.assert_no_errors()
    await carol.close()


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode()


async def test_server_text_is_shown_as_text_never_as_html(start_server: StartServer) -> None:
    server, base = await web_server(start_server)
    mallory = await server.login("mallory")
    attack = '<img src=x onerror="window.__xss=1">'
    bold = "<b>not bold</b> & <script>window.__xss=2</script>"
    async with launch() as browser:
        alice = await WebUser.login(browser, base, "alice")
        await nc_cmd(mallory, f"send_all {attack}")
        await nc_cmd(mallory, f"send_all {bold}")
        await nc_cmd(mallory, f"send alice {attack}")
        await alice.see(attack)
        await alice.see(bold)
        texts = await alice.page.locator("#messages .msg > .text").all_text_contents()
        assert texts[-2:] == [attack, bold]
        assert await alice.page.locator("#messages img, #messages b, #messages script").count() == 0
        await alice.open_chat("@mallory")
        await alice.see(attack)
        assert await alice.page.locator("#messages img").count() == 0
        await asyncio.sleep(0.2)  # give a broken image's onerror time to fire, if one existed
        assert await alice.page.evaluate("window.__xss") is None
        alice.assert_no_errors()
    await mallory.close()


async def test_phone_sized_screen(start_server: StartServer) -> None:
    server, base = await web_server(start_server)
    # A scene worth a screenshot: alice comes back to a conversation she missed.
    await (await server.login("alice", password="pw")).close()
    bob = await server.login("bob")
    carol = await server.login("carol")
    await nc_cmd(carol, "send_all morning all! the build is green again")
    server.clock.advance(95)
    await nc_cmd(bob, "send_all nice, I'll cut the release after lunch")
    server.clock.advance(140)
    ok = await nc_cmd(carol, "send_all notes from yesterday's call are in the wiki")
    root = int(ok.split("[")[1].split("]")[0])
    server.clock.advance(61)
    await nc_cmd(bob, f"comment {root} thanks, reading them now")
    await carol.send("upload #general release-notes.txt\n" + _b64(b"v1.4\n" * 300) + ".\n")
    assert (await carol.reply())[-1].startswith("OK sent")
    await nc_cmd(carol, "room create release")
    await nc_cmd(carol, "room invite #release alice")
    async with launch() as browser:
        alice = await WebUser.login(browser, base, "alice", "pw")
        await expect(alice.page.locator(".missed-marker")).to_have_text("5 missed messages")
        phone = await WebUser.login(browser, base, "alice", "pw", viewport=PHONE)
        page = phone.page
        server.clock.advance(200)
        await nc_cmd(carol, "send #release checklist is pinned")
        await nc_cmd(bob, "send alice lunch at 12?")
        await nc_cmd(bob, "send alice the usual place")
        await expect(alice.chat_item("@bob").locator(".badge")).to_have_text("2")
        await expect(phone.chat_item("@bob").locator(".badge")).to_have_text("2")
        await alice.send("see you both there")
        desktop = await alice.page.screenshot()

        # The side list fills the screen; each chat is a comfortable tap target.
        for chat in ("#general", "#release", "@bob"):
            item = phone.chat_item(chat)
            await expect(item).to_be_visible()
            box = await item.bounding_box()
            assert box is not None
            assert box["height"] >= 40 and box["x"] >= 0
            assert box["x"] + box["width"] <= PHONE["width"]
        assert await page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
        await expect(page.locator("#main")).to_be_hidden()
        phone_list = await page.screenshot()
        # Tapping a chat shows it full-screen, with a way back.
        await phone.open_chat("#general")
        await expect(page.locator("#sidebar")).to_be_hidden()
        await phone.see("see you both there")
        await expect(page.locator("#text")).to_be_in_viewport()
        assert await page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
        phone_chat = await page.screenshot()
        await page.click("#back")
        await expect(page.locator("#sidebar")).to_be_visible()
        for shot in (desktop, phone_list, phone_chat):
            assert shot.startswith(b"\x89PNG")
        alice.assert_no_errors()
        phone.assert_no_errors()
    _keep_screenshots(desktop=desktop, phone_list=phone_list, phone_chat=phone_chat)
    await bob.close()
    await carol.close()


def _keep_screenshots(**shots: bytes) -> None:
    """CHATD_SCREENSHOTS=docs/img keeps the pictures docs/http.md shows."""
    target = os.environ.get("CHATD_SCREENSHOTS")
    if not target:
        return
    out = ROOT / target
    out.mkdir(parents=True, exist_ok=True)
    for name, png in shots.items():
        (out / f"web-{name.replace('_', '-')}.png").write_bytes(png)


def test_the_page_has_no_way_to_parse_server_text_as_html() -> None:
    """The rule behind the XSS test, checked on every script the page ships."""
    static = ROOT / "chatd" / "web" / "static"
    scripts = sorted(static.glob("*.js"))
    assert {p.name for p in scripts} >= {"app.js", "conn.js", "state.js", "view.js", "api.js"}
    for path in scripts:
        code = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, f"{path.name} uses {sink}"
    html = (static / "index.html").read_text()
    assert "<script>" not in html and "script-src 'self'" in html
