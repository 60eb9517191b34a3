"""The admin's choices: stage → segment rules and sync options (ARCHITECTURE §3, §7).

Pure validation and lookup; the routes check rules against the account's live pipelines and
the ESP's segments before storing them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.errors import Unprocessable
from backend.views import DEFAULT_OPTIONS

ACTIONS = ("segment", "unsubscribe", "remove")
EMAIL_CHOICES = ("first", "WORK", "PRIV")


def invalid(message: str) -> Unprocessable:
    return Unprocessable(message, code="invalid_mapping")


@dataclass(frozen=True)
class Rule:
    pipeline_id: int
    status_id: int
    action: str
    segment_id: str | None = None


@dataclass(frozen=True)
class StageMapping:
    rules: tuple[Rule, ...]

    def rule_for(self, pipeline_id: int | None, status_id: int | None) -> Rule | None:
        for rule in self.rules:
            if rule.pipeline_id == pipeline_id and rule.status_id == status_id:
                return rule
        return None

    @property
    def managed_segments(self) -> frozenset[str]:
        """Every segment the mapping names: the only segments sync ever removes anyone from."""
        return frozenset(r.segment_id for r in self.rules if r.segment_id is not None)

    @property
    def stages(self) -> frozenset[tuple[int, int]]:
        return frozenset((r.pipeline_id, r.status_id) for r in self.rules)


def parse_rules(raw: Any) -> list[Rule]:
    if not isinstance(raw, list):
        raise invalid("rules must be a list")
    rules: list[Rule] = []
    seen: set[tuple[int, int]] = set()
    for n, item in enumerate(raw):
        rule = _rule(n, item)
        if (rule.pipeline_id, rule.status_id) in seen:
            raise invalid(f"rule {n + 1}: stage {rule.status_id} of pipeline {rule.pipeline_id} "
                          "is mapped twice")
        seen.add((rule.pipeline_id, rule.status_id))
        rules.append(rule)
    return rules


def _rule(n: int, item: Any) -> Rule:
    where = f"rule {n + 1}"
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object")
    pipeline_id, status_id = _int(item.get("pipeline_id"), where), _int(item.get("status_id"), where)
    action = item.get("action")
    if action not in ACTIONS:
        raise invalid(f"{where}: action must be one of {', '.join(ACTIONS)}")
    segment = item.get("segment_id")
    if action == "segment":
        if not isinstance(segment, str | int) or isinstance(segment, bool) or str(segment) == "":
            raise invalid(f"{where}: action \"segment\" needs a segment_id")
        return Rule(pipeline_id, status_id, action, str(segment))
    return Rule(pipeline_id, status_id, action, None)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise invalid(f"{where}: pipeline_id and status_id must be numbers")
    return int(value)


def check_against(rules: Sequence[Rule], pipelines: Iterable[Any], segment_ids: Iterable[str]) -> None:
    """Every rule names a live stage of a live pipeline and, for `segment`, a live segment."""
    stages = {p.id: {s.id for s in p.stages} for p in pipelines}
    segments = set(segment_ids)
    for n, rule in enumerate(rules):
        if rule.pipeline_id not in stages:
            raise invalid(f"rule {n + 1}: pipeline {rule.pipeline_id} does not exist in Kommo")
        if rule.status_id not in stages[rule.pipeline_id]:
            raise invalid(f"rule {n + 1}: stage {rule.status_id} is not in pipeline {rule.pipeline_id}")
        if rule.segment_id is not None and rule.segment_id not in segments:
            raise invalid(f"rule {n + 1}: segment {rule.segment_id} does not exist at the email platform")


def labels(rules: Sequence[Rule], options: Mapping[str, Any], pipelines: Iterable[Any],
           segments: Iterable[Any]) -> dict[str, dict[str, str]]:
    """The names, as saved, of the stages and segments the mapping and options refer to."""
    used = {r.segment_id for r in rules} | {options.get("new_contact_segment_id")}
    mapped = {(r.pipeline_id, r.status_id) for r in rules}
    return {"segments": {s.id: s.name for s in segments if s.id in used},
            "stages": {f"{p.id}:{s.id}": s.name for p in pipelines for s in p.stages
                       if (p.id, s.id) in mapped}}


def parse_options(raw: Any, segment_ids: Iterable[str] | None = None) -> dict[str, Any]:
    """Known options only, typed, with defaults for what is missing."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise invalid("options must be an object")
    unknown = sorted(set(raw) - set(DEFAULT_OPTIONS))
    if unknown:
        raise invalid(f"unknown option(s): {', '.join(unknown)}")
    options = {**DEFAULT_OPTIONS, **raw}
    _check_option_types(options)
    segment = options["new_contact_segment_id"]
    if segment is not None:
        options["new_contact_segment_id"] = segment = str(segment)
        if segment_ids is not None and segment not in set(segment_ids):
            raise invalid(f"new_contact_segment_id {segment} does not exist at the email platform")
    options["field_map"] = [_field_map_entry(n, e) for n, e in enumerate(options["field_map"])]
    return options


def _check_option_types(options: Mapping[str, Any]) -> None:
    consent = options["consent_field_id"]
    if consent is not None and (isinstance(consent, bool) or not isinstance(consent, int)):
        raise invalid("consent_field_id must be a Kommo custom field id or null")
    if options["no_consent"] not in ("skip", "pending"):
        raise invalid('no_consent must be "skip" or "pending"')
    if options["email_choice"] not in EMAIL_CHOICES:
        raise invalid('email_choice must be "first", "WORK" or "PRIV"')
    if options["on_contact_delete"] not in ("remove", "forget"):
        raise invalid('on_contact_delete must be "remove" or "forget"')
    for flag in ("notes_on_sync", "all_lead_contacts"):
        if not isinstance(options[flag], bool):
            raise invalid(f"{flag} must be true or false")
    if not isinstance(options["field_map"], list):
        raise invalid("field_map must be a list")


def _field_map_entry(n: int, entry: Any) -> dict[str, Any]:
    if (not isinstance(entry, dict) or isinstance(entry.get("kommo_field_id"), bool)
            or not isinstance(entry.get("kommo_field_id"), int)
            or not isinstance(entry.get("esp_field"), str) or not entry["esp_field"].strip()):
        raise invalid(f"field_map entry {n + 1} needs kommo_field_id (number) and esp_field (text)")
    return {"kommo_field_id": entry["kommo_field_id"], "esp_field": entry["esp_field"].strip()}
