"""How the simulated Kommo's webhook deliveries fare: the switch that drops them (Kommo loses some
deliveries and never resends them) and Kommo's rule that a webhook answered badly more than 100
times in 2 hours is disabled (kommo-api.md §4; bad = not 2xx, or no answer in time).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

DISABLE_AFTER = 100  # bad answers …
DISABLE_WINDOW = 2 * 3600.0  # … within this many seconds


class DeliveryPolicy:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.drop_all = False  # every delivery is lost while set
        self.drops_left = 0  # the next this many deliveries are lost
        self.dropped = 0  # how many were lost so far
        self._bad: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def drop_next(self, count: int = 1) -> None:
        self.drops_left += count

    def should_drop(self) -> bool:
        """Decides one delivery's fate (consuming a `drop_next` when it drops it)."""
        if not self.drop_all and self.drops_left <= 0:
            return False
        if not self.drop_all:
            self.drops_left -= 1
        self.dropped += 1
        return True

    def answered(self, hook: dict[str, Any], status: int | None) -> None:
        """Count a bad answer against the webhook; past the limit Kommo disables it."""
        if status is not None and 200 <= status < 300:
            return
        now = self.clock()
        bad = self._bad[hook["destination"]]
        bad.append(now)
        while bad and bad[0] <= now - DISABLE_WINDOW:
            bad.popleft()
        if len(bad) > DISABLE_AFTER:
            hook["disabled"] = True

    def bad_answers(self, destination: str) -> int:
        now = self.clock()
        return sum(1 for at in self._bad.get(destination, ()) if at > now - DISABLE_WINDOW)
