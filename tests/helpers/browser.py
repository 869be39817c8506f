"""Debian's headless chromium driven by Playwright, for the web client's tests.

Playwright's own browser download is not reachable from CI, so `launch()` points it at
the system chromium (scripts/apt-packages.txt installs it). `WebUser` is one person on
the page at GET /: it logs in through the form and reads what the page shows, the way
a person would, by the elements' text.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

TIMEOUT_MS = 10_000
DESKTOP: ViewportSize = {"width": 1100, "height": 720}
PHONE: ViewportSize = {"width": 390, "height": 844}
NETWORK_ERRORS = ("Failed to load resource", "WebSocket connection to")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str | None:
    """The system chromium's path, or None when it is not installed."""
    return shutil.which("chromium")


@asynccontextmanager
async def launch() -> AsyncIterator[Browser]:
    exe = chromium()
    assert exe is not None, "chromium is not installed (apt-get install chromium)"
    expect.set_options(timeout=TIMEOUT_MS)  # a loaded CI machine is slower than 5 s
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=exe, args=list(CHROMIUM_ARGS), timeout=30_000
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class WebUser:
    """One browser tab logged in to the web client."""

    page: Page
    name: str
    errors: list[str] = field(default_factory=list)

    @classmethod
    async def login(
        cls,
        browser: Browser,
        base_url: str,
        name: str,
        password: str = "",
        *,
        viewport: ViewportSize | None = None,
    ) -> WebUser:
        context = await browser.new_context(
            viewport=viewport or DESKTOP,
            base_url=base_url,
            is_mobile=viewport == PHONE,
            has_touch=viewport == PHONE,
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        user = cls(page, name)
        # Uncaught exceptions and console errors (a CSP refusal, a failed module) fail
        # the test (assert_no_errors); failed requests are the tests' own doing
        # (a wrong password, a server restart) and are left to their assertions.
        page.on("pageerror", lambda exc: user.errors.append(str(exc)))
        page.on("console", user._console)
        await page.goto("/")
        await page.fill("#login-name", name)
        await page.fill("#login-password", password)
        await page.click("#login-submit")
        await expect(page.locator("#app")).to_be_visible()
        await user.wait_online()
        return user

    async def wait_online(self, timeout_ms: float = TIMEOUT_MS) -> None:
        app = self.page.locator("#app")
        await expect(app).to_have_attribute("data-conn", "online", timeout=timeout_ms)

    def chat_item(self, chat: str) -> Locator:
        return self.page.locator(f'.chat-item[data-chat="{chat}"]')

    async def open_chat(self, chat: str) -> None:
        await self.chat_item(chat).click()
        await expect(self.page.locator("#chat-title")).to_have_text(chat)

    async def start_chat(self, chat: str) -> None:
        """Opens a chat not in the list yet (@user, or #room, which creates it)."""
        await self.page.fill("#open-name", chat)
        await self.page.press("#open-name", "Enter")
        await expect(self.page.locator("#chat-title")).to_have_text(chat)

    async def send(self, text: str) -> None:
        """Sends in the open chat and waits until the page shows it as sent."""
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")
        await expect(self.page.locator("#text")).to_have_value("")
        await expect(self.message(text)).to_be_visible()

    def message(self, text: str) -> Locator:
        """The message (or comment) in the open chat whose text is exactly `text`."""
        exactly = re.compile(f"^{re.escape(text)}$")
        return self.page.locator("#messages .msg").filter(
            has=self.page.locator(":scope > .text", has_text=exactly)
        )

    async def see(self, text: str) -> None:
        await expect(self.message(text)).to_have_count(1)

    async def unread(self, chat: str) -> str:
        badge = self.chat_item(chat).locator(".badge")
        return (await badge.text_content() or "") if await badge.count() else ""

    def _console(self, message: ConsoleMessage) -> None:
        text = message.text
        if message.type == "error" and not text.startswith(NETWORK_ERRORS):
            self.errors.append(text)

    def assert_no_errors(self) -> None:
        assert self.errors == [], self.errors
