"""The web client in Debian's chromium when its token is revoked elsewhere (DELETE
/session from another tab or a script): the server closes the page's WebSocket with
code 4401 and the page goes back to its login form at once, saying why, and still
says so after a reload."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.helpers.browser import WebUser, chromium, launch
from tests.helpers.http import client, start_http
from tests.helpers.server import StartServer

pytestmark = [
    pytest.mark.skipif(
        chromium() is None, reason="chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.timeout(60),
]

ENDED = "Your session has ended; please log in again."


async def test_a_token_revoked_elsewhere_logs_the_page_out_at_once(
    start_server: StartServer,
) -> None:
    _server, base = await start_http(start_server)
    async with launch() as browser:
        bob = await WebUser.login(browser, base, "bob")
        token = await bob.page.evaluate("sessionStorage.getItem('chatd.token')")
        assert isinstance(token, str)
        async with client(base, token) as other:  # not the page: a script elsewhere
            assert (await other.delete("/session")).status_code == 200
        await expect(bob.page.locator("#login")).to_be_visible()  # no reload needed
        await expect(bob.page.locator("#login-error")).to_have_text(ENDED)
        assert await bob.page.evaluate("sessionStorage.getItem('chatd.token')") is None
        await bob.page.reload()
        await expect(bob.page.locator("#login-error")).to_have_text(ENDED)
        # Logging in again starts clean.
        await bob.page.fill("#login-name", "bob")
        await bob.page.click("#login-submit")
        await expect(bob.page.locator("#app")).to_be_visible()
        await bob.wait_online()
        await bob.page.reload()
        await bob.wait_online()
        bob.assert_no_errors()
