"""The in-process limits: token bucket, sliding window, remembered values, caller keys."""

import pytest

from backend.throttle import Remembered, SlidingWindow, Throttled, TokenBucket, caller_key


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(5, 10, clock=clock)
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    assert bucket.take() == pytest.approx(0.2)
    clock.now += 0.2
    assert bucket.take() == 0.0
    clock.now += 100
    assert sum(bucket.take() == 0.0 for _ in range(20)) == 10  # never more than the burst


def test_sliding_window_counts_per_key_and_forgets_after_the_window():
    clock = Clock()
    window = SlidingWindow(2, 60, clock=clock)
    assert window.hit("a") == 0 and window.hit("a") == 0
    assert window.hit("a") == 60 and window.hit("b") == 0
    clock.now += 30
    assert window.wait("a") == 30
    clock.now += 30
    assert window.hit("a") == 0


def test_sliding_window_holds_a_bounded_number_of_keys():
    window = SlidingWindow(1, 60, max_keys=3, clock=Clock())
    for key in "abcd":
        window.add(key)
    assert window.wait("a") == 0  # the oldest was forgotten
    assert window.wait("d") == 60


def test_remembered_values_are_digests_that_expire():
    clock = Clock()
    seen = Remembered(600, max_items=2, clock=clock)
    seen.add("code-1")
    assert "code-1" in seen and "code-2" not in seen
    assert all(isinstance(k, bytes) and b"code" not in k for k in seen._until)
    clock.now += 600
    assert "code-1" not in seen
    for code in ("x", "y", "z"):
        seen.add(code)
    assert "x" not in seen and "z" in seen
    seen.discard("z")
    assert "z" not in seen


@pytest.mark.parametrize("address, key", [
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    (None, "unknown"),
    ("testclient", "testclient"),
])
def test_caller_keys(address, key):
    assert caller_key(address) == key


def test_throttled_rounds_retry_after_up_to_whole_seconds():
    assert Throttled("x", retry_after=0.2).retry_after == 1
    assert Throttled("x", retry_after=59.01).retry_after == 60
    assert Throttled("x", retry_after=0.2).status_code == 429
