"""Kommo API shapes read from recorded-style fixtures, one exact test each."""

import json
from pathlib import Path

from backend.kommo import types

API = Path(__file__).resolve().parents[1] / "fixtures" / "kommo" / "api"


def load(name: str):
    return json.loads((API / name).read_text())


def test_contact__with_company():
    contact = types.contact(load("contact__with_company.json"))
    assert (contact.id, contact.name, contact.lead_ids) == (24870120, "Jane Doe", (15318176,))
    assert contact.companies == (types.Company(id=24870099, name=""),)  # the reference only
    assert [v.value for v in contact.emails] == ["jane@acme.example"]


def test_companies__by_id():
    [item] = types.embedded(load("companies__by_id.json"), "companies")
    assert types.company(item) == types.Company(id=24870099, name="Acme Corp")


def test_a_company_reference_with_a_name_keeps_it():
    body = {"id": 1, "name": "Jo", "_embedded": {"companies": [{"id": "7", "name": " Beta "}, {"x": 1}]}}
    assert types.contact(body).companies == (types.Company(id=7, name="Beta"),)
