"""Company names for contacts: one batched read for the names not known, then none."""

from backend.kommo import companies
from backend.kommo.client import KommoClient
from tests.kommo.fixtures import ACME, seed_tokens


async def test_names_are_read_once_per_company_then_kept(kommo, kommo_resources):
    await seed_tokens(kommo_resources, kommo)
    client = KommoClient(kommo_resources, ACME)
    acme = kommo.store.add_contact(ACME, "Acme Corp", kind="company")
    jane = kommo.store.add_contact(ACME, "Jane", company_id=acme.id)
    bob = kommo.store.add_contact(ACME, "Bob", company_id=acme.id)
    gone = kommo.store.add_contact(ACME, "Gone", company_id=424242)
    loner = kommo.store.add_contact(ACME, "Loner")
    contacts = await client.contacts([jane.id, bob.id, gone.id, loner.id])
    engine = kommo_resources.engine
    expected = {jane.id: "Acme Corp", bob.id: "Acme Corp", gone.id: None}
    assert await companies.names_of(client, engine, ACME, contacts) == expected
    assert await companies.names_of(client, engine, ACME, contacts) == expected
    calls = [r for r in kommo.requests if r.path == "/api/v4/companies"]
    assert len(calls) == 1  # both names in one call; the deleted company is not asked for again
