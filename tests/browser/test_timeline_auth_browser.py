"""The timeline page when the API needs a bearer token, in headless Chromium.

The page asks for the token, keeps it in the tab's sessionStorage only (no cookie, no
localStorage, not in the URL), sends it as ``Authorization: Bearer``, and says so plainly
when the API answers 401.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.test_timeline_ui_browser import (
    PHONE,
    Served,
    _search,
    _seed,
    migrated_db,
    page,
    per_test_fixture,
    serving,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
__all__ = ["migrated_db", "page"]  # fixtures shared with the page's other tests

TOKEN = "page-" + "t" * 40
TOKEN_KEY = "ivr-engine.api-token"


@per_test_fixture
async def guarded(tmp_path: Path, migrated_db: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path, migrated_db, api_tokens=[TOKEN]) as running:
        yield running


async def _stored(page: Page) -> object:
    return await page.evaluate(f"() => window.sessionStorage.getItem({TOKEN_KEY!r})")


async def _enter_token(page: Page, token: str) -> None:
    await page.fill("#token-input", token)
    await page.click("#token-submit")


async def test_the_page_asks_for_the_token_refuses_a_wrong_one_then_shows_the_timeline(
    guarded: Served, page: Page
) -> None:
    await _seed(guarded.timeline, "Ada Lovelace")
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("authorization")) if "/v1/" in r.url else None,
    )
    await page.goto(guarded.url + f"?q={PHONE.replace('+', '%2B')}")
    await expect(page.locator("#token-form")).to_be_visible()
    await expect(page.locator("#message")).to_contain_text("needs a token")
    assert sent == []  # nothing asked of the API without a token

    await _enter_token(page, "wrong-" + "w" * 40)
    await expect(page.locator("#message")).to_have_text(
        "The API token was refused (401): enter a valid token."
    )
    await expect(page.locator("#token-form")).to_be_visible()
    await expect(page.locator("#customer")).to_be_hidden()
    assert await _stored(page) is None

    await _enter_token(page, TOKEN)
    await expect(page.locator("#customer-name")).to_have_text("Ada Lovelace")
    await expect(page.locator("#token-form")).to_be_hidden()
    await expect(page.locator("#token-forget")).to_be_visible()
    assert sent[0] == "Bearer " + "wrong-" + "w" * 40
    assert sent[-1] == f"Bearer {TOKEN}"
    assert await _stored(page) == TOKEN
    assert await page.evaluate("() => window.localStorage.length") == 0
    assert await page.context.cookies() == []
    assert TOKEN not in page.url


async def test_the_token_lasts_for_the_tab_until_forgotten(guarded: Served, page: Page) -> None:
    await _seed(guarded.timeline, "Ada Lovelace")
    await page.goto(guarded.url)
    await _enter_token(page, TOKEN)
    await page.reload()
    await expect(page.locator("#token-form")).to_be_hidden()
    await _search(page, PHONE)
    await expect(page.locator("#customer-name")).to_have_text("Ada Lovelace")

    await page.click("#token-forget")
    await expect(page.locator("#token-form")).to_be_visible()
    await expect(page.locator("#customer")).to_be_hidden()
    assert await _stored(page) is None
    await _search(page, PHONE)
    await expect(page.locator("#message")).to_have_text(
        "This API needs a token (401): enter your API token."
    )
