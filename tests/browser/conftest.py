"""Headless Debian Chromium driven by Playwright, shared by the browser tests.

``browser``: one Chromium per test module (launching it is the slow part), on the module's
event loop (each module sets ``pytest.mark.asyncio(loop_scope="module")``). ``page``: a fresh
context per test; a dialog or a script error on the page fails the test. A module may define
its own ``page`` (e.g. to also watch CSP violations).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's package; `playwright install` cannot run here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 5000  # also more than two polls of the load page (every 2 s)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    opened = await context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: dialogs.append(dialog.message))
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        await context.close()
    assert dialogs == [], f"a script ran a dialog: {dialogs}"
    assert errors == [], f"page errors: {errors}"
