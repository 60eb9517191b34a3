""""Sync existing leads" in the widget's settings, in a real browser: connect a platform, suggest a
mapping, save, reopen the settings, preview (the counts in plain words, computed here from the demo
data and the platform's own members), choose "Only update people already on the list", sync, and
follow the progress to the result. Once per platform, and the section in Spanish. Screenshots of
every step land in tests/browser/artifacts/."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from backend.bundle import bundle_root
from backend.sandbox import demo
from tests.browser.steps import SETTLE, choose, connect, key, ms, open_page, open_settings, save_settings

pytestmark = pytest.mark.slow
BACKFILL = 30_000  # ms: a preview or a sync of the 30 demo leads, one page, read every second


def _i18n(lang: str) -> dict:
    return json.loads((bundle_root() / "widget" / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def _set_up(page, kind: str, name: str, *, audience: str | None = None):
    """Connect, (Mailchimp) choose the audience, suggest a mapping of every stage, save, reopen."""
    modal = open_settings(page)
    connect(page, kind, key(page, kind))
    expect(ms(modal, "provider-status")).to_have_text(f"Connected to {name}.", timeout=SETTLE)
    if audience is not None:
        choose(modal, "audience", audience)
        expect(ms(modal, "audience-status")).to_have_text("Audience saved.", timeout=SETTLE)
    expect(ms(modal, "backfill")).to_be_hidden()  # no saved mapping yet: nothing to sync
    ms(modal, "suggest").click()
    expect(ms(modal, "stage-row")).to_have_count(len(demo.STAGES))
    save_settings(page)
    modal = open_settings(page)
    expect(ms(modal, "backfill-preview")).to_be_visible(timeout=SETTLE)
    return modal


def _platform_members(sandbox, kind: str, audience: str | None) -> dict[str, str]:
    """email -> status of everyone the simulated platform holds (the chosen audience's, for
    Mailchimp), read from the sandbox page's own API."""
    esp = sandbox.get("/sandbox/api/esp").json()
    if kind == "mailchimp":
        holders = [a for a in esp["mailchimp"]["audiences"] if a["id"] == audience]
    else:
        holders = [esp["mailerlite"]]
    members = {}
    for holder in holders:
        for member in holder["ungrouped"] + [m for s in holder["segments"] for m in s["members"]]:
            members[member["email"]] = member["status"]
    return members


def _expected(members: dict[str, str]) -> dict[str, int]:
    """What the preview must count: the suggested mapping covers every stage, so every demo lead
    (one contact, one distinct valid address each, no consent field) is in a mapped stage."""
    emails = [email for _, _, email, _, _, _ in demo.LEADS]
    assert len(set(emails)) == len(emails)  # no duplicates in the demo
    existing = [e for e in emails if e in members]
    opted_out = [e for e in existing if members[e] not in ("active", "subscribed")]
    return {"total": len(emails), "new": len(emails) - len(existing), "existing": len(existing),
            "opted_out": len(opted_out)}


def _people(n: int, adjective: str) -> str:
    return " ".join(filter(None, [str(n), adjective, "person" if n == 1 else "people"]))


def _preview_then_sync(page, sandbox, kind: str, name: str, *, audience: str | None = None) -> None:
    shot = page.shots
    modal = _set_up(page, kind, name, audience=audience)
    section = ms(modal, "backfill")
    shot("backfill-ready", element=modal.locator(".widget-settings__modal"))
    before = _platform_members(sandbox, kind, audience)
    want = _expected(before)
    assert want["existing"] >= 1 and want["new"] >= 1  # the demo seeds one known address per platform

    started = time.monotonic()
    ms(section, "backfill-preview").click()
    summary = ms(section, "backfill-summary")
    expect(summary).to_be_visible(timeout=BACKFILL)
    preview_s = time.monotonic() - started
    expect(summary).to_have_attribute("data-total", str(want["total"]))
    lead_line = summary.locator(".mailsync__backfill-lead")
    expect(lead_line).to_have_text(f"{want['total']} leads in mapped stages:")
    expect(summary.locator('li[data-kind="new"]')).to_have_text(
        f"{want['new']} new subscribers (not on your list yet)")
    existing = f"{want['existing']} already on your list"
    if want["opted_out"]:
        existing += f" ({want['opted_out']} of them opted out — they stay opted out)"
    expect(summary.locator('li[data-kind="existing"]')).to_have_text(existing)
    expect(summary.locator('li[data-kind="duplicates"]')).to_have_count(0)
    expect(summary.locator('li[data-kind="skipped"]')).to_have_text("Nothing is skipped.")
    assert _platform_members(sandbox, kind, audience) == before  # a preview writes nothing

    start = ms(section, "backfill-start")
    expect(start).to_be_disabled()  # nothing happens until the admin chooses
    expect(ms(section, "backfill-warning")).to_contain_text("Syncing subscribes people.")
    section.locator('[data-ms="backfill-choice"][value="subscribed"]').check()
    expect(ms(section, "backfill-warning")).to_contain_text(f"subscribes {want['new']} people at {name}")
    section.locator('[data-ms="backfill-choice"][value="skip"]').check()
    expect(ms(section, "backfill-warning")).to_contain_text("adds no one new")
    expect(start).to_be_enabled()
    shot("backfill-preview", element=modal.locator(".widget-settings__modal"))

    started = time.monotonic()
    start.click()
    progress = ms(section, "backfill-progress")
    expect(progress).to_be_visible()
    shot("backfill-running", element=modal.locator(".widget-settings__modal"))
    expect(progress).to_have_attribute("data-state", "done", timeout=BACKFILL)
    sync_s = time.monotonic() - started
    expect(progress).to_have_attribute("data-done", str(want["total"]))
    expect(progress).to_have_text(f"Done: {want['total']} leads synced.")
    result = ms(section, "backfill-result")
    expect(result).to_have_text(f"{_people(want['new'], 'new')} "
                                f"{'was' if want['new'] == 1 else 'were'} left out. "
                                f"{_people(want['existing'], '')} already on your list got their segments.")
    expect(ms(section, "backfill-error")).to_have_text("")
    expect(ms(section, "backfill-start")).to_be_hidden()  # a new sync starts with a new preview
    expect(summary).to_be_hidden()
    shot("backfill-done", element=modal.locator(".widget-settings__modal"))
    print(f"{kind}: preview {preview_s:.1f} s, sync {sync_s:.1f} s")

    # "Only update people already on the list": no new address at the platform, and the known
    # ones are in the segment of their lead's stage.
    after = _platform_members(sandbox, kind, audience)
    assert set(after) == set(before)
    assert page.js_errors == []


def test_mailerlite_sync_existing_leads(sandbox, page):
    open_page(page, sandbox.url)
    _preview_then_sync(page, sandbox, "mailerlite", "MailerLite")


def test_mailchimp_sync_existing_leads(sandbox, page):
    open_page(page, sandbox.url)
    page.locator('[data-sandbox="esp-tab"][data-kind="mailchimp"]').click()
    _preview_then_sync(page, sandbox, "mailchimp", "Mailchimp", audience=demo.MAILCHIMP_AUDIENCES[0][0])


def test_sync_existing_leads_in_spanish(sandbox, page):
    es, en = _i18n("es")["backfill"], _i18n("en")["backfill"]
    open_page(page, sandbox.url, "es")
    modal = open_settings(page)
    connect(page, "mailerlite", key(page, "mailerlite"))
    expect(ms(modal, "provider-status")).to_have_text(
        _i18n("es")["provider"]["connected"].format(label="MailerLite"), timeout=SETTLE)
    ms(modal, "suggest").click()
    save_settings(page)
    modal = open_settings(page)
    section = ms(modal, "backfill")
    expect(ms(section, "backfill-preview")).to_have_text(es["preview"], timeout=SETTLE)
    expect(modal.locator('[data-ms-section="backfill"] .mailsync__title')).to_have_text(es["title"])
    # Another admin's sync is under way (the backend answers 409): said in plain words.
    page.route("**/api/widget/backfill", lambda route: route.fulfill(
        status=409, content_type="application/json",
        body=json.dumps({"error": {"code": "backfill_running", "message": "a sync is already running"}}))
        if route.request.method == "POST" else route.continue_())
    ms(section, "backfill-preview").click()
    expect(ms(section, "backfill-error")).to_have_text(es["already_running"])
    expect(ms(section, "backfill-preview")).to_be_enabled()  # nothing was running after all
    page.unroute("**/api/widget/backfill")
    ms(section, "backfill-preview").click()
    summary = ms(section, "backfill-summary")
    total = len(demo.LEADS)
    expect(summary.locator(".mailsync__backfill-lead")).to_have_text(es["total"].format(n=total),
                                                                    timeout=BACKFILL)
    expect(summary.locator('li[data-kind="skipped"]')).to_have_text(es["skipped_none"])
    expect(ms(section, "backfill-error")).to_have_text("")
    new = total - _expected(_platform_members(sandbox, "mailerlite", None))["existing"]
    expect(ms(section, "backfill-warning")).to_have_text(es["warning_none"].format(n=new))
    labels = section.locator(".mailsync__radio-title")
    expect(labels).to_have_text([es["choice_subscribed"], es["choice_unconfirmed"], es["choice_skip"]])
    expect(ms(section, "backfill-start")).to_have_text(es["start"])
    text = section.inner_text()
    for word in ("preview", "choice_subscribed", "choice_skip", "start", "skipped_none"):
        assert en[word] not in text, word
    page.shots("backfill-es", element=modal.locator(".widget-settings__modal"))
    assert page.js_errors == []
