import asyncio

import pytest

from backend import db
from backend.ratelimit import RateLimiter


class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


async def test_burst_then_waits_at_the_refill_rate(sessions):
    clock = FakeClock()
    limiter = RateLimiter(sessions, clock=clock, sleep=clock.sleep)
    for _ in range(7):
        assert await limiter.acquire("kommo:1", rate=7, burst=7) == 0
    waited = await limiter.acquire("kommo:1", rate=7, burst=7)
    assert waited == pytest.approx(1 / 7, rel=0.01)
    # another key has its own budget
    assert await limiter.acquire("kommo:2", rate=7, burst=7) == 0


async def test_refill_is_capped_at_burst(sessions):
    clock = FakeClock()
    limiter = RateLimiter(sessions, clock=clock, sleep=clock.sleep)
    await limiter.acquire("k", rate=1, burst=2)
    clock.now += 3600
    for _ in range(2):
        assert await limiter.acquire("k", rate=1, burst=2) == 0
    assert await limiter.acquire("k", rate=1, burst=2) == pytest.approx(1.0, rel=0.01)


async def test_concurrent_callers_share_one_budget(sessions, engine):
    """Two limiters (as two processes would) and 40 callers: the real clock must show that no
    more than burst + rate * elapsed tokens were handed out."""
    limiters = [RateLimiter(db.session_factory(engine)) for _ in range(2)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    stamps = []

    async def call(n):
        await limiters[n % 2].acquire("shared", rate=20, burst=5)
        stamps.append(loop.time() - started)

    await asyncio.gather(*(call(n) for n in range(40)))
    elapsed = max(stamps)
    assert len(stamps) == 40
    assert elapsed >= (40 - 5) / 20 * 0.9  # could not have gone faster than the budget allows


async def test_local_limiter_keeps_the_same_budget():
    from backend.ratelimit import LocalRateLimiter

    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, sleep=clock.sleep)
    for _ in range(7):
        assert await limiter.acquire("kommo:1", rate=7, burst=7) == 0
    assert await limiter.acquire("kommo:1", rate=7, burst=7) == pytest.approx(1 / 7, rel=0.01)
    assert await limiter.acquire("kommo:2", rate=7, burst=7) == 0
    clock.now += 3600
    for _ in range(7):
        assert await limiter.acquire("kommo:1", rate=7, burst=7) == 0
    assert await limiter.acquire("kommo:1", rate=7, burst=7) > 0


async def test_at_most_n_simultaneous_calls_across_limiters(engine):
    """Two limiters (two processes) share 10 permits: never more than 10 holders at once."""
    limiters = [RateLimiter(db.session_factory(engine)) for _ in range(2)]
    holding, peak, done = 0, 0, 0

    async def call(n):
        nonlocal holding, peak, done
        async with limiters[n % 2].slot("mailchimp:key", 10):
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.02)
            holding -= 1
        done += 1

    await asyncio.gather(*(call(n) for n in range(30)))
    assert done == 30 and 2 <= peak <= 10


async def test_a_permit_whose_holder_died_frees_itself(engine):
    from backend.models import ConcurrencySlot

    clock = FakeClock()
    sessions = db.session_factory(engine)
    limiter = RateLimiter(sessions, clock=clock, sleep=clock.sleep)
    async with sessions() as session, session.begin():  # two holders killed mid-call
        session.add_all(ConcurrencySlot(key="k", slot=n, holder=f"dead{n}",
                                        lease_until=clock.now + 1) for n in range(2))
    async with limiter.slot("k", 2):  # waits, in fake time, for a lease to run out
        pass
    assert 1 <= sum(clock.sleeps) < 1.5


async def test_local_permits_are_a_semaphore():
    from backend.ratelimit import LocalRateLimiter

    limiter = LocalRateLimiter()
    holding, peak = 0, 0

    async def call():
        nonlocal holding, peak
        async with limiter.slot("k", 3):
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.01)
            holding -= 1

    await asyncio.gather(*(call() for _ in range(10)))
    assert peak == 3


@pytest.mark.parametrize("local", [False, True])
async def test_a_pause_holds_every_token_until_it_ends(sessions, local):
    """A vendor's 429: a short pause is waited out, then the bucket refills from empty; a long
    one fails the call at once, naming the vendor and the seconds left."""
    from backend.errors import UpstreamRateLimited
    from backend.ratelimit import LocalRateLimiter

    clock = FakeClock()
    limiter = (LocalRateLimiter(clock=clock, sleep=clock.sleep) if local
               else RateLimiter(sessions, clock=clock, sleep=clock.sleep))
    await limiter.acquire("kommo:1", rate=5, burst=5)
    await limiter.pause("kommo:1", 3)
    await limiter.pause("kommo:1", 1)  # an earlier end does not shorten the pause
    assert await limiter.acquire("kommo:1", rate=5, burst=5) == pytest.approx(3.2, abs=0.01)
    assert await limiter.acquire("kommo:2", rate=5, burst=5) == 0  # other keys are not paused
    await limiter.pause("kommo:1", 30)
    with pytest.raises(UpstreamRateLimited) as paused:
        await limiter.acquire("kommo:1", rate=5, burst=5, service="kommo")
    assert (paused.value.code, paused.value.service) == ("vendor_paused", "kommo")
    assert paused.value.retry_after == pytest.approx(30.2, abs=0.01)
    clock.now += 30.2
    assert await limiter.acquire("kommo:1", rate=5, burst=5) == 0
