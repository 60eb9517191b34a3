"""Group imports (`POST /groups/{id}/import-subscribers`) and their progress reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from backend.sandbox.mailerlite.groups import Groups
from backend.sandbox.mailerlite.store import BASE, OPTED_OUT, not_found
from backend.sandbox.simulator import EMAIL, Answer


class Imports(Groups):
    def import_to_group(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        self._group(ident)
        report = {"id": self.s.new_id(), "account_id": "83510", "total": 0, "processed": 0,
                  "imported": 0, "updated": 0, "errored": 0, "percent": 100, "done": True}
        samples: dict[str, list[str]] = {n: [] for n in (
            "invalid", "mistyped", "changed", "unchanged", "unsubscribed", "role_based",
            "suspicious_format", "duplicate")}
        for row in (body or {}).get("subscribers") or []:
            self._import_row(ident, row, report, samples)
        for name, emails in samples.items():
            report[name], report[f"{name}_count"] = emails[:5], len(emails)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        report.update(banned_import_emails_count=0, updated_at=stamp, undone_at=None,
                      stopped_at=None, undo_started_at=None, finished_at=stamp)
        self.s.imports[report["id"]] = report
        return 200, {"import_progress_url": f"{BASE}/subscribers/import/{report['id']}"}

    def _import_row(self, group: str, row: Any, report: dict, samples: dict) -> None:
        report["total"] += 1
        report["processed"] += 1
        email = str((row or {}).get("email") or "")
        if not EMAIL.match(email):
            samples["invalid"].append(email)
            report["errored"] += 1
            return
        sub = self.s.by_email(email)
        if sub is not None and sub["status"] in OPTED_OUT:
            samples["unsubscribed"].append(email.lower())  # an import never revives an opt-out
            return
        report["updated" if sub else "imported"] += 1
        self._apply(sub or self._create(email, "active", None), row.get("fields") or {}, [group])

    def get_import(self, ident: str, q: dict[str, str], body: Any) -> Answer:
        if ident not in self.s.imports:
            raise not_found("Import")
        return 200, {"data": self.s.imports[ident]}
