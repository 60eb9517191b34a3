"""The sandbox's demo: one Kommo account with a five-stage sales pipeline (plus Won and Lost) and
30 leads with their contacts, a MailerLite account and a Mailchimp account whose keys the page
shows, and the install of the account through mailsync's real OAuth callback.

The simulators keep their state in memory, so every start is a fresh demo: `forget_account`
removes what a previous run stored for the demo account before it is installed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2

from backend import repository
from backend.sandbox.kommo_store import KommoStore
from backend.sandbox.mailchimp import SANDBOX_API_KEY as MAILCHIMP_KEY
from backend.sandbox.mailchimp import MailchimpSandbox
from backend.sandbox.mailerlite import SANDBOX_API_KEY as MAILERLITE_KEY
from backend.sandbox.mailerlite import MailerLiteSandbox

ACCOUNT_ID, SUBDOMAIN, ACCOUNT_NAME = 32_100_001, "demo", "Sunrise Coffee Roasters"
PIPELINE_ID = 8_100_001
WON, LOST = 142, 143
STAGES = ((81_000_011, "New inquiry", "#99ccff"), (81_000_012, "Contacted", "#ffdc7f"),
          (81_000_013, "Qualified", "#ffcc66"), (81_000_014, "Proposal sent", "#ff8f92"),
          (81_000_015, "Negotiation", "#d6eaff"), (WON, "Closed - won", "#CCFF66"),
          (LOST, "Closed - lost", "#D5D8DB"))
# Keys the simulators refuse, shown on the page so a first-time user sees the vendors' errors.
WRONG_MAILERLITE_KEY = MAILERLITE_KEY[:-6] + "WRONG1"
WRONG_MAILCHIMP_KEY = "ffffffffffffffffffffffffffffffff-us21"
MAILERLITE_GROUPS = ("Newsletter", "Webinar attendees")
MAILCHIMP_AUDIENCES = (("a1b2c3d4e5", "Sunrise customers"), ("f6e5d4c3b2", "Coffee club newsletter"))

# (lead name, contact name, email, company or "", stage index, price)
LEADS = (
    ("Office espresso machine", "Olivia Martins", "olivia.martins@northwind.io", "Northwind Traders", 0,
     2400),
    ("Monthly bean subscription", "Liam Chen", "liam.chen@brightpath.co", "", 0, 480),
    ("Wedding favours, 120 bags", "Sofia Rossi", "sofia.rossi@mailbox.org", "", 0, 960),
    ("Café opening order", "Noah Fischer", "noah@bluebirdcafe.de", "Bluebird Café", 0, 5200),
    ("Corporate gift boxes", "Emma Dubois", "emma.dubois@lumen-agency.fr", "Lumen Agency", 0, 3100),
    ("Cold brew kegs", "Mateo García", "mateo.garcia@hotelsol.es", "Hotel Sol", 0, 1800),
    ("Barista training day", "Ava Johnson", "ava.johnson@gmail.com", "", 1, 650),
    ("Decaf trial pack", "Lucas Silva", "lucas.silva@padariaboa.com.br", "Padaria Boa", 1, 120),
    ("Coworking coffee bar", "Mia Kowalski", "mia@hubspace.pl", "HubSpace", 1, 4300),
    ("Grinder replacement", "Ethan Brown", "ethan.brown@outlook.com", "", 1, 890),
    ("Tasting event for 40", "Isabella Costa", "isabella.costa@vinhos.pt", "Vinhos & Cia", 1, 1200),
    ("Restaurant house blend", "James Wilson", "james@thecopperpot.co.uk", "The Copper Pot", 2, 6100),
    ("University canteen", "Amelia Novak", "a.novak@unihradec.cz", "Univerzita Hradec", 2, 9800),
    ("Green beans, 60 kg", "Benjamin Lee", "ben.lee@roastlab.sg", "Roast Lab", 2, 2700),
    ("Hotel lobby machine", "Charlotte Moreau", "c.moreau@grandhotel.fr", "Grand Hôtel", 2, 7400),
    ("Quarterly office supply", "Henry Walker", "henry.walker@fintrust.com", "FinTrust", 2, 3600),
    ("Pop-up kiosk", "Lucía Fernández", "lucia.fernandez@mercado.mx", "", 3, 2100),
    ("Airport lounge blend", "Alexander Petrov", "a.petrov@skylounge.ae", "SkyLounge", 3, 12500),
    ("Bakery chain pilot", "Harper Davis", "harper@flourandfig.com", "Flour & Fig", 3, 5600),
    ("Subscription for 12 months", "Daniel Kim", "daniel.kim@naver.com", "", 3, 1440),
    ("Test lead from the web form", "Test Person", "test@example.com", "", 3, 0),
    ("Gym smoothie bar", "Evelyn Clark", "evelyn@ironhousegym.com", "Iron House Gym", 4, 3900),
    ("Bookshop café", "Gabriel Santos", "gabriel@livrariaaurora.pt", "Livraria Aurora", 4, 2300),
    ("Conference catering", "Zoe Taylor", "zoe.taylor@eventwise.io", "EventWise", 4, 8200),
    ("Hospital cafeteria", "Samuel Okafor", "s.okafor@stmaryhealth.org", "St Mary Health", 4, 10400),
    ("Cupping workshop", "Chloe Martin", "chloe.martin@gmail.com", "", WON, 400),
    ("Office espresso, 2nd floor", "William Anderson", "w.anderson@northwind.io", "Northwind Traders",
     WON, 2400),
    ("Holiday gift tins", "Grace Thompson", "grace@papernest.co", "Paper Nest", WON, 1750),
    ("Food truck blend", "Jack Robinson", "jack@rollingbeans.com", "", LOST, 600),
    ("Vending machine refill", "Ella White", "ella.white@vendco.net", "VendCo", LOST, 950),
)


@dataclass
class Demo:
    """What was seeded: the ids the page and the tests need."""

    account_id: int = ACCOUNT_ID
    host: str = f"{SUBDOMAIN}.kommo.com"
    leads: list[int] = field(default_factory=list)
    companies: dict[int, str] = field(default_factory=dict)  # lead id -> company name
    mailerlite_groups: list[str] = field(default_factory=list)
    installed: bool = False
    error: str | None = None

    def keys(self) -> dict[str, dict[str, str]]:
        return {"mailerlite": {"right": MAILERLITE_KEY, "wrong": WRONG_MAILERLITE_KEY},
                "mailchimp": {"right": MAILCHIMP_KEY, "wrong": WRONG_MAILCHIMP_KEY}}


def stage_rows() -> list[dict[str, Any]]:
    return [{"id": sid, "name": name, "sort": 10 * (n + 1), "is_editable": sid not in (WON, LOST),
             "pipeline_id": PIPELINE_ID, "color": color, "type": 0, "account_id": ACCOUNT_ID}
            for n, (sid, name, color) in enumerate(STAGES)]


def seed_kommo(store: KommoStore) -> Demo:
    """The demo account: its pipeline replaces the simulator's default one."""
    account = store.add_account(ACCOUNT_ID, SUBDOMAIN, ACCOUNT_NAME)
    account.pipelines = [{"id": PIPELINE_ID, "name": "Sales", "sort": 1, "is_main": True,
                          "is_unsorted_on": False, "is_archive": False, "account_id": ACCOUNT_ID,
                          "_embedded": {"statuses": stage_rows()}}]
    demo = Demo()
    company_ids: dict[str, int] = {}
    for name, person, email, company, stage, price in LEADS:
        status_id = stage if stage in (WON, LOST) else STAGES[stage][0]
        if company and company not in company_ids:  # a Kommo company, linked to its contacts
            company_ids[company] = store.add_contact(ACCOUNT_ID, company, kind="company").id
        contact = store.add_contact(ACCOUNT_ID, person, emails=[email],
                                    company_id=company_ids.get(company))
        lead = store.add_lead(ACCOUNT_ID, name, pipeline_id=PIPELINE_ID, status_id=status_id,
                              contacts=[contact.id], price=price)
        demo.leads.append(lead.id)
        if company:
            demo.companies[lead.id] = company
    return demo


def seed_esps(demo: Demo, mailerlite: MailerLiteSandbox, mailchimp: MailchimpSandbox) -> None:
    """Each platform starts with a few segments and subscribers of its own, as a real one would."""
    demo.mailerlite_groups = [mailerlite.add_group(name) for name in MAILERLITE_GROUPS]
    mailerlite.add_subscriber("newsletter.fan@fastmail.com", groups=demo.mailerlite_groups[:1])
    mailerlite.add_subscriber("olivia.martins@northwind.io", groups=demo.mailerlite_groups[1:])
    for list_id, name in MAILCHIMP_AUDIENCES:
        mailchimp.add_audience(name, list_id=list_id)
    mailchimp.add_member(MAILCHIMP_AUDIENCES[0][0], "chloe.martin@gmail.com", tags=["Workshop"])
    mailchimp.add_member(MAILCHIMP_AUDIENCES[1][0], "newsletter.fan@fastmail.com", tags=["Newsletter"])


async def forget_account(session: Any, account_id: int = ACCOUNT_ID) -> None:
    """Drop the demo account and (by cascade) everything stored for it: its ESP connection,
    mapping and sync state point at simulator objects that no longer exist after a restart."""
    await repository.delete_account(session, account_id)


async def install(client: httpx2.AsyncClient, base_url: str, store: KommoStore,
                  demo: Demo) -> None:
    """What Kommo does when an admin clicks Install: redirect to our callback with a code."""
    answer = await client.get(f"{base_url}/oauth/kommo/callback", params={
        "code": store.authorize(demo.account_id), "referer": demo.host, "from_widget": "1"})
    if answer.status_code != 200:
        raise RuntimeError(f"the demo install answered {answer.status_code}: {answer.text[:300]}")
    demo.installed = True
