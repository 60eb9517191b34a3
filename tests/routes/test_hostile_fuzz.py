"""Random bodies and headers, chosen by hypothesis, at every webhook route and at the widget's JSON
routes: never a 5xx, and a refused webhook stores nothing."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import select

from backend.models import InboxEvent
from backend.throttle import SlidingWindow
from tests.kommo.fixtures import install, widget_token
from tests.routes.hostile_hooks import KOMMO_ACCOUNT, hooks

__all__ = ["hooks"]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- bodies ----------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats()
           | st.text(max_size=20) | st.sampled_from(["²", "١٢", "9" * 30, "-1", "", " ", "\x00"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
ml_events = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscriber.unsubscribed", "subscriber.bounced", "subscriber.unsubscribe",
                              "campaign.sent", "subscriber.exploded"]) | scalars},
    optional={"subscriber": st.fixed_dictionaries({}, optional={
        "email": scalars, "id": scalars, "unsubscribed_at": scalars, "updated_at": scalars}),
        "event_id": scalars, "data": json_values, "reason": scalars})
json_bodies = (json_values | ml_events | st.builds(lambda events: {"events": events},
                                                   st.lists(ml_events | json_values, max_size=5)))

segment = st.one_of(st.sampled_from(["", "0", "1", "id", "status", "leads", "add", "²", "9" * 14]),
                    st.text(max_size=6))
form_keys = st.one_of(
    st.builds(lambda entity, action, n, field: f"{entity}[{action}][{n}][{field}]",
              st.sampled_from(["leads", "contacts", "task", "data"]),
              st.sampled_from(["status", "add", "update", "delete", "restore"]) | segment,
              st.integers(-3, 10**13).map(str) | segment,
              st.sampled_from(["id", "status_id", "pipeline_id", "account_id", "type", "email"]) | segment),
    st.builds(lambda head, parts: head + "".join(f"[{p}]" for p in parts),
              st.text(min_size=1, max_size=6), st.lists(segment, max_size=14)),
    st.text(max_size=30))
form_values = st.one_of(st.integers(-(10**20), 10**20).map(str), st.sampled_from(
    [str(KOMMO_ACCOUNT), "unsubscribe", "campaign", "a@b.io"]), st.text(max_size=20))


def _form(pairs: list[tuple[str, str]], encode: bool) -> bytes:
    text = "&".join(f"{quote(k) if encode else k}={quote(v) if encode else v}" for k, v in pairs)
    return text.encode("utf-8", "surrogatepass")


form_bodies = st.builds(_form, st.lists(st.tuples(form_keys, form_values), max_size=12), st.booleans())
bodies = st.one_of(st.binary(max_size=300), form_bodies,
                   json_bodies.map(lambda v: json.dumps(v).encode()))
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
                        max_size=80)


async def inbox_rows(resources) -> int:
    async with resources.sessions() as session:
        return (await session.exec(select(func.count()).select_from(InboxEvent))).one()


@FUZZ
@given(route=st.sampled_from(["kommo", "mailerlite", "classic", "mailchimp"]),
       hook=st.sampled_from(["valid", "valid", "valid", "unknown", "wrong_family"]),
       signature=st.sampled_from(["signed", "signed", "none", "forged", "non_ascii", "random"]),
       body=bodies, content_type=header_values, random_signature=header_values)
async def test_webhook_routes_never_answer_5xx(hooks, offline_app, route, hook, signature, body,
                                              content_type, random_signature):
    offline_app.state.hook_failures = SlidingWindow(10**9, 60)  # here every failure is answered
    before = await inbox_rows(hooks.resources)
    if signature == "random":
        headers = {"Signature": random_signature, "X-MailerLite-Signature": random_signature,
                   "Content-Type": content_type}
        response = await hooks.client.post(hooks.url(route, hook), content=body,
                                           headers={k: v.encode("latin-1") for k, v in headers.items()})
    else:
        response = await hooks.post(route, body, signature=signature, hook=hook)
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]["code"]
        assert await inbox_rows(hooks.resources) == before
    else:
        assert set(response.json()) == {"accepted"}


@FUZZ
@given(body=json_bodies.map(lambda v: json.dumps(v).encode()))
async def test_signed_json_reaches_the_parser_and_never_answers_5xx(hooks, body):
    """Signed correctly, so every body gets past the signature to the JSON and event parsing."""
    for route in ("mailerlite", "classic"):
        response = await hooks.post(route, body)
        assert response.status_code < 500, (route, response.status_code, response.text)


# --- the widget's JSON routes ----------------------------------------------------------------

WIDGET_ROUTES = [("PUT", "/api/widget/provider"), ("POST", "/api/widget/provider/segments"),
                 ("PUT", "/api/widget/mapping"), ("POST", "/api/widget/resync"),
                 ("POST", "/api/widget/backfill")]
rule = st.fixed_dictionaries({}, optional={
    "pipeline_id": scalars, "status_id": scalars, "segment_id": scalars,
    "action": st.sampled_from(["segment", "unsubscribe", "remove"]) | scalars})
widget_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"rules": st.lists(rule, max_size=3) | json_values,
                                        "options": json_values}),
    st.fixed_dictionaries({}, optional={"lead_id": scalars, "contact_id": scalars}),
    st.fixed_dictionaries({}, optional={"dry_run": scalars, "new_subscribers_as": scalars}),
    # `kind` is never a platform's: a known one would check the random key live, at the platform
    st.fixed_dictionaries({}, optional={
        "kind": scalars.filter(lambda kind: kind not in ("mailerlite", "mailchimp")),
        "api_key": scalars, "list_id": scalars, "name": scalars}),
).map(lambda v: json.dumps(v).encode())


@pytest.fixture
async def widget(web, kommo, kommo_settings):
    """An installed account's widget client and token (once per test, not per example)."""
    await install(web, kommo)
    return web, widget_token(kommo_settings)


@FUZZ
@given(route=st.sampled_from(WIDGET_ROUTES), body=widget_bodies | st.binary(max_size=200),
       content_type=header_values)
async def test_widget_json_routes_never_answer_5xx(widget, route, body, content_type):
    web, token = widget
    method, path = route
    response = await web.request(method, path, content=body, headers={
        "X-Auth-Token": token, "Content-Type": content_type.encode("latin-1")})
    assert response.status_code < 500, (method, path, body, response.status_code, response.text)


@pytest.mark.parametrize("pipeline_id", ["²", "9" * 5000, -3, 1.5, "12a"])
async def test_a_stage_id_that_is_no_whole_number_is_a_422(web, kommo, kommo_settings, pipeline_id):
    await install(web, kommo)
    rules = [{"pipeline_id": pipeline_id, "status_id": 142, "action": "remove"}]
    response = await web.put("/api/widget/mapping", json={"rules": rules},
                             headers={"X-Auth-Token": widget_token(kommo_settings)})
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_mapping")
