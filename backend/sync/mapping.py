"""The admin's stage → segment rules (docs/ARCHITECTURE.md §3, §7); the options are in `options.py`.

Pure validation and lookup; the mapping route checks rules against the account's live pipelines
and the ESP's segments before storing them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from backend.sync.options import SyncOptions, invalid

ACTIONS = ("segment", "unsubscribe", "remove")


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
    # ASCII digits only: str.isdigit() also passes "²", which int() refuses.
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise invalid(f"{where}: pipeline_id and status_id must be numbers")
    return int(text)


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


def labels(rules: Sequence[Rule], options: SyncOptions, pipelines: Iterable[Any],
           segments: Iterable[Any]) -> dict[str, dict[str, str]]:
    """The names, as saved, of the stages and segments the mapping and options refer to."""
    used = {r.segment_id for r in rules} | {options.new_contact_segment_id}
    mapped = {(r.pipeline_id, r.status_id) for r in rules}
    return {"segments": {s.id: s.name for s in segments if s.id in used},
            "stages": {f"{p.id}:{s.id}": s.name for p in pipelines for s in p.stages
                       if (p.id, s.id) in mapped}}
