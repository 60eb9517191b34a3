"""A first-time user in the sandbox, in a real browser: connect an email platform from the widget's
settings (the wrong key first), suggest a mapping, save, move a lead, read the card panel,
unsubscribe the address at the platform, find the note. Once per platform, and the settings modal
in Spanish. Screenshots of every step land in tests/browser/artifacts/."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from backend.bundle import bundle_root
from backend.sandbox import demo
from tests.browser.steps import (
    SETTLE,
    card_until,
    close_card,
    connect,
    key,
    lead,
    move,
    ms,
    open_page,
    open_settings,
    save_settings,
    unsubscribe_at_esp,
)

pytestmark = pytest.mark.slow
LEAD, CONTACT_EMAIL = "Barista training day", "ava.johnson@gmail.com"


def _i18n(lang: str) -> dict:
    return json.loads((bundle_root() / "widget" / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def _configure(page, shot, kind: str, name: str, *, audience: str | None = None) -> None:
    modal = open_settings(page)
    shot("settings-open")
    connect(page, kind, key(page, f"{kind}-wrong"))
    expect(ms(modal, "provider-error")).to_have_text(_i18n("en")["provider"][f"rejected_{kind}"],
                                                     timeout=SETTLE)
    shot("wrong-key")
    connect(page, kind, key(page, kind))
    expect(ms(modal, "provider-status")).to_have_text(f"Connected to {name}.", timeout=SETTLE)
    if audience is not None:
        expect(ms(modal, "suggest")).to_be_hidden()  # tags live in an audience: choose one first
        modal.locator('.control--select:has([data-ms="audience"]) select').select_option(audience)
        expect(ms(modal, "audience-status")).to_have_text("Audience saved.", timeout=SETTLE)
    shot("connected")
    ms(modal, "suggest").click()
    expect(ms(modal, "mapping-note")).to_have_text(_i18n("en")["mapping"]["suggested"])
    expect(ms(modal, "stage-row")).to_have_count(7)
    shot("suggested", element=modal.locator(".widget-settings__modal"))
    save_settings(page)
    shot("saved")


def _move_then_opt_out(page, shot, sandbox, platform: str) -> None:
    esp = page.locator('[data-sandbox="esp"]')
    in_progress = esp.locator('[data-sandbox="segment"][data-name$="In Progress"] [data-sandbox="member"]',
                              has_text=CONTACT_EMAIL)
    move(page, LEAD, "Qualified")
    card = card_until(page, LEAD, "card-segments", "In Progress", deadline=time.monotonic() + 5.0)
    expect(ms(card, "card-email")).to_have_text(CONTACT_EMAIL)
    expect(ms(card, "card-status")).to_have_attribute("data-status", "active" if platform == "MailerLite"
                                                      else "subscribed")
    shot("card-segment")
    close_card(page)
    expect(in_progress).to_have_count(1)  # the platform's side, on the page
    shot("moved")
    unsubscribe_at_esp(page, CONTACT_EMAIL)
    shot("esp-unsubscribed")
    card = card_until(page, LEAD, "card-status", "Unsubscribed", deadline=time.monotonic() + 5.0)
    expect(ms(card, "card-status")).to_have_attribute("data-status", "unsubscribed")
    note = card.locator('[data-sandbox="note"]')
    expect(note).to_have_count(1, timeout=SETTLE)
    expect(note).to_contain_text(f"{CONTACT_EMAIL} unsubscribed at {platform}")
    expect(card.locator('[data-sandbox="card-tags"]')).to_have_text("email-opt-out")
    shot("card-unsubscribed")
    lead_id = int(lead(page, LEAD).get_attribute("data-lead") or 0)
    notes = sandbox.get(f"/sandbox/api/leads/{lead_id}").json()["notes"]
    said = f"{CONTACT_EMAIL} unsubscribed at {platform}"
    assert [(n["entity"], n["text"].startswith(said)) for n in notes] == [("leads", True)]


def test_mailerlite_from_key_to_unsubscribe(sandbox, page):
    open_page(page, sandbox.url)
    page.shots("board")
    _configure(page, page.shots, "mailerlite", "MailerLite")
    _move_then_opt_out(page, page.shots, sandbox, "MailerLite")
    assert page.js_errors == []


def test_mailchimp_from_key_to_unsubscribe(sandbox, page):
    open_page(page, sandbox.url)
    page.locator('[data-sandbox="esp-tab"][data-kind="mailchimp"]').click()
    _configure(page, page.shots, "mailchimp", "Mailchimp", audience=demo.MAILCHIMP_AUDIENCES[0][0])
    _move_then_opt_out(page, page.shots, sandbox, "Mailchimp")
    assert page.js_errors == []


def test_the_settings_modal_in_spanish(sandbox, page):
    es, en = _i18n("es"), _i18n("en")
    open_page(page, sandbox.url, "es")
    modal = open_settings(page)
    connect(page, "mailerlite", key(page, "mailerlite"))
    expect(ms(modal, "provider-status")).to_have_text(es["provider"]["connected"].format(label="MailerLite"),
                                                      timeout=SETTLE)
    ms(modal, "suggest").click()
    expect(ms(modal, "mapping-note")).to_have_text(es["mapping"]["suggested"])
    expect(modal.locator('[data-sandbox="settings-save"]')).to_have_text("Guardar")
    expect(modal.locator("#sbx-settings-descr")).to_have_text(es["widget"]["description"])
    text = modal.inner_text()
    for section in ("provider", "mapping"):
        assert es[section]["title"] in text
        assert en[section]["title"] not in text
    contacted = ms(modal, "stage-row").nth(1).locator('.control--select:has([data-ms="stage-segment"]) '
                                                   'option:checked')
    expect(contacted).to_have_text(es["mapping"]["pending"].format(name="In Progress"))
    page.shots("settings-es", element=modal.locator(".widget-settings__modal"))
    assert page.js_errors == []
