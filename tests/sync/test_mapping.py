from types import SimpleNamespace as NS

import pytest

from backend.errors import Unprocessable
from backend.sync.mapping import Rule, StageMapping, check_against, parse_rules
from backend.sync.options import FieldMapEntry, SyncOptions

PIPELINES = [NS(id=10, stages=[NS(id=100), NS(id=101), NS(id=142), NS(id=143)])]


def test_rules_parse_and_the_mapping_knows_its_managed_segments():
    rules = parse_rules([
        {"pipeline_id": 10, "status_id": 100, "action": "segment", "segment_id": 7},
        {"pipeline_id": "10", "status_id": "142", "action": "segment", "segment_id": "won"},
        {"pipeline_id": 10, "status_id": 143, "action": "unsubscribe", "segment_id": "ignored"},
        {"pipeline_id": 10, "status_id": 101, "action": "remove"}])
    mapping = StageMapping(tuple(rules))
    assert rules[0] == Rule(10, 100, "segment", "7")
    assert rules[2].segment_id is None
    assert mapping.managed_segments == {"7", "won"}
    assert mapping.rule_for(10, 142).segment_id == "won"
    assert mapping.rule_for(10, 999) is None
    check_against(rules, PIPELINES, ["7", "won", "other"])


@pytest.mark.parametrize("rules, message", [
    ("nope", "rules must be a list"),
    ([{"pipeline_id": 10, "status_id": 100, "action": "move"}], "rule 1: action must be"),
    ([{"pipeline_id": 10, "status_id": 100, "action": "segment"}], "needs a segment_id"),
    ([{"pipeline_id": "x", "status_id": 100, "action": "remove"}], "must be numbers"),
    ([{"pipeline_id": 10, "status_id": 100, "action": "remove"}] * 2, "rule 2: stage 100"),
])
def test_bad_rule_shapes(rules, message):
    with pytest.raises(Unprocessable, match=message) as refused:
        parse_rules(rules)
    assert refused.value.code == "invalid_mapping"


@pytest.mark.parametrize("rule, message", [
    (Rule(11, 100, "remove"), "rule 1: pipeline 11 does not exist"),
    (Rule(10, 555, "remove"), "rule 1: stage 555 is not in pipeline 10"),
    (Rule(10, 100, "segment", "gone"), "rule 1: segment gone does not exist"),
])
def test_rules_are_checked_against_live_pipelines_and_segments(rule, message):
    with pytest.raises(Unprocessable, match=message):
        check_against([rule], PIPELINES, ["7"])


def test_options_default_and_validate():
    assert SyncOptions.parse(None) == SyncOptions()
    options = SyncOptions.parse({"notes_on_sync": True, "new_contact_segment_id": 7,
                                 "field_map": [{"kommo_field_id": 5, "esp_field": " city "}]}, ["7"])
    assert options == SyncOptions(notes_on_sync=True, new_contact_segment_id="7",
                                  field_map=(FieldMapEntry(5, "city"),))
    assert SyncOptions.from_stored(options.to_json()) == options
    assert options.to_json()["field_map"] == [{"kommo_field_id": 5, "esp_field": "city"}]
    assert SyncOptions.from_stored({"notes_on_sync": True, "retired_option": 1}) == SyncOptions(
        notes_on_sync=True)


@pytest.mark.parametrize("options, message", [
    ({"colour": "red"}, "unknown option"), ({"no_consent": "maybe"}, "no_consent"),
    ({"email_choice": "OTHER"}, "email_choice"), ({"on_contact_delete": "keep"}, "on_contact_delete"),
    ({"notes_on_sync": "yes"}, "notes_on_sync"), ({"consent_field_id": "5"}, "consent_field_id"),
    ({"field_map": [{"kommo_field_id": 5}]}, "field_map entry 1"),
    ({"new_contact_segment_id": "zz"}, "new_contact_segment_id zz does not exist"),
])
def test_bad_options(options, message):
    with pytest.raises(Unprocessable, match=message):
        SyncOptions.parse(options, ["7"])
