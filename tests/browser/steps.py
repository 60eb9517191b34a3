"""What a user does on the sandbox page, one helper per action. The widget's elements are found by
their `data-ms` hooks (documented at the top of widget/script.js), the page's own by `data-sandbox`.
"""

from __future__ import annotations

import time

from playwright.sync_api import Locator, Page, expect

SETTLE = 15_000  # ms: a modal or a backend round trip that includes a live key check


def ms(page: Page | Locator, hook: str) -> Locator:
    return page.locator(f'[data-ms="{hook}"]')


def choose(page: Page | Locator, hook: str, value: str | None = None, *, label: str | None = None) -> None:
    """Pick an option of a Kommo system select (a hidden input driven by the visible list)."""
    select = page.locator(f'.control--select:has([data-ms="{hook}"]) select').first
    if label is not None:
        select.select_option(label=label)
    else:
        select.select_option(value)


def open_page(page: Page, url: str, lang: str = "en") -> None:
    page.goto(f"{url}/sandbox/?lang={lang}")
    expect(page.locator('[data-sandbox="lead"]')).to_have_count(30)


def open_settings(page: Page) -> Locator:
    page.click('[data-sandbox="open-settings"]')
    modal = page.locator('[data-sandbox="settings-modal"]')
    expect(ms(modal, "provider-kind")).to_be_attached(timeout=SETTLE)
    return modal


def key(page: Page, which: str) -> str:
    return (page.locator(f'[data-sandbox="key-{which}"] code').text_content() or "").strip()


def connect(page: Page, kind: str, api_key: str) -> None:
    choose(page, "provider-kind", kind)
    ms(page, "api-key").fill(api_key)
    ms(page, "connect").click()


def save_settings(page: Page) -> None:
    page.click('[data-sandbox="settings-save"]')
    expect(page.locator('[data-sandbox="settings-modal"]')).to_be_hidden(timeout=SETTLE)


def lead(page: Page, name: str) -> Locator:
    return page.locator('[data-sandbox="lead"]', has_text=name)


def move(page: Page, name: str, stage: str) -> None:
    """The lead's "Move to…" menu: the simulated Kommo fires its stage-change webhook."""
    lead(page, name).locator('[data-sandbox="move"]').select_option(label=stage)
    column = page.locator('[data-sandbox="stage"]', has_text=stage)
    expect(lead(column, name)).to_be_visible()


def open_card(page: Page, name: str) -> Locator:
    lead(page, name).locator('[data-sandbox="open-lead"]').click()
    card = page.locator('[data-sandbox="card"]')
    expect(card).to_be_visible()
    # The panel has loaded once its status says something other than the placeholder.
    expect(ms(card, "card-status")).not_to_have_text("…", timeout=SETTLE)
    return card


def close_card(page: Page) -> None:
    page.click('[data-sandbox="card-close"]')
    expect(page.locator('[data-sandbox="card"]')).to_be_hidden()


def card_until(page: Page, name: str, hook: str, text: str, *, deadline: float) -> Locator:
    """Open the lead's card and wait, without reopening it, until its mailsync panel (which
    follows the contact's state by itself) shows `text` in `hook`; fails at `deadline` (a
    `time.monotonic()` value)."""
    card = open_card(page, name)
    remaining_ms = (deadline - time.monotonic()) * 1000
    expect(ms(card, hook)).to_contain_text(text, timeout=max(100, remaining_ms))
    return card


def unsubscribe_at_esp(page: Page, email: str) -> None:
    member = page.locator(f'[data-sandbox="esp"] [data-sandbox="member"][data-email="{email}"]')
    member.locator('[data-sandbox="unsubscribe"]').first.click()
    expect(member.first.locator('[data-sandbox="member-status"]')).to_have_text("unsubscribed")
