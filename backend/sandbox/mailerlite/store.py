"""The simulated MailerLite's state in memory, and the refusals its handlers raise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backend.sandbox.simulator import LoggedRequest, take_window

BASE = "https://connect.mailerlite.com/api"
OPTED_OUT = {"unsubscribed", "bounced", "junk"}
STATUSES = {"active", "unsubscribed", "unconfirmed", "bounced", "junk"}
DEFAULT_FIELDS = [("1", "Name", "name"), ("2", "Last name", "last_name"), ("3", "Company", "company"),
                  ("4", "Country", "country"), ("5", "City", "city"), ("6", "Phone", "phone"),
                  ("7", "State", "state"), ("8", "Zip", "z_i_p")]


class Refusal(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


def not_found(model: str, ident: str = "") -> Refusal:
    # Recorded: "... [App\\Models\\Field] 121212" with an id, "...Subscriber]." without.
    where = f"No query results for model [App\\Models\\{model}]"
    return Refusal(404, {"message": f"{where} {ident}" if ident else f"{where}."})


def invalid(errors: dict[str, list[str]]) -> Refusal:
    return Refusal(422, {"message": "The given data was invalid.", "errors": errors})


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class State:
    api_keys: set[str]
    classic_keys: set[str]
    rate_limit: int
    window: float
    import_limit: int
    clock: Callable[[], float]
    ids: int = 165968862226941797
    subscribers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    imports: dict[str, dict[str, Any]] = field(default_factory=dict)
    memberships: dict[str, list[str]] = field(default_factory=dict)  # subscriber id → group ids
    requests: list[LoggedRequest] = field(default_factory=list)
    windows: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def new_id(self) -> str:
        self.ids += 1
        return str(self.ids)

    def by_email(self, email: str) -> dict[str, Any] | None:
        return next((s for s in self.subscribers.values() if s["email"] == email.lower()), None)

    def find(self, ident: str) -> dict[str, Any]:
        found = self.subscribers.get(ident) or self.by_email(ident)
        if found is None:
            raise not_found("Subscriber\\Subscriber")
        return found

    def take(self, bucket: str, key: str, limit: int) -> tuple[int, float]:
        """Fixed window per key: (remaining after this request or -1 when refused, reset in s)."""
        return take_window(self.windows, (bucket, key), limit, self.window, self.clock)


class Handlers:
    """Base of the API's handler groups, which all read and change one `State`."""

    def __init__(self, state: State) -> None:
        self.s = state
