"""The simulated Kommo's HTTP controls used by the crash tests: Kommo's retry of unacknowledged
webhook deliveries, and reading the notes an account received."""

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend.sandbox.kommo import KommoSandbox
from backend.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

ACME, WON = 29085424, 142
HOOK = "http://hooks/hook"


class FlakyReceiver:
    """Answers each delivery with the next of `statuses`; remembers the bodies."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[str] = []
        self.app = Starlette(routes=[Route("/hook", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> JSONResponse:
        self.bodies.append((await request.body()).decode())
        return JSONResponse({}, status_code=self.statuses.pop(0))


async def test_unacknowledged_deliveries_are_sent_again_with_the_same_body_once_each():
    receiver = FlakyReceiver(503, 200, 200)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=receiver.app)) as hooks:
        sandbox = KommoSandbox(webhook_client=hooks)
        sandbox.store.add_account(ACME, "acme")
        first, second, third = (sandbox.store.add_lead(ACME) for _ in range(3))
        await sandbox.change_stage(ACME, first.id, WON, url=HOOK)  # 503: not acknowledged
        await sandbox.change_stage(ACME, second.id, WON, url=HOOK)  # 200
        sandbox.delivery.drop_next(1)
        await sandbox.change_stage(ACME, third.id, WON, url=HOOK)  # lost on Kommo's side
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=sandbox.app),
                                      base_url="http://k") as http:
            retried = (await http.post("/_sandbox/webhooks/redeliver")).json()
            again = (await http.post("/_sandbox/webhooks/redeliver")).json()
    assert retried == {"deliveries": [{"url": HOOK, "status": 200}]}
    assert again == {"deliveries": []}
    assert receiver.bodies == [receiver.bodies[0], receiver.bodies[1], receiver.bodies[0]]
    assert [d.status for d in sandbox.deliveries] == [503, 200, None, 200]


async def test_the_notes_an_account_received_can_be_read():
    sandbox = KommoSandbox()
    store = sandbox.store
    store.add_account(ACME, "acme")
    lead = store.add_lead(ACME)
    issued = store.token({"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
                          "grant_type": "authorization_code", "code": store.authorize(ACME)})
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=sandbox.app),
                                  base_url="http://k") as http:
        added = await http.post("/api/v4/leads/notes", headers={
            "Authorization": f"Bearer {issued['access_token']}"}, json=[
            {"entity_id": lead.id, "note_type": "service_message",
             "params": {"service": "mailsync", "text": "opted out"}}])
        notes = (await http.get(f"/_sandbox/accounts/{ACME}/notes")).json()
        unknown = await http.get("/_sandbox/accounts/99/notes")
    assert added.status_code == 200
    assert [(n["entity_type"], n["entity_id"], n["note_type"], n["params"]["text"])
            for n in notes] == [("leads", lead.id, "service_message", "opted out")]
    assert unknown.status_code == 404
