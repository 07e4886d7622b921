"""The token bucket that limits what a client sends: its burst, its rate, and a credit
for what a fault held back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simulator.core.rates import TokenBucket


def allowed_at(bucket: TokenBucket, now: float, most: int = 20_000) -> int:
    """How many events in a row the bucket allows at ``now``."""
    n = 0
    while n < most and bucket.allow(now):
        n += 1
    return n


@given(
    rate=st.integers(1, 1000),
    burst=st.integers(1, 1000),
    seconds=st.floats(0, 10),
)
def test_a_credit_allows_that_many_seconds_of_events_on_top_of_a_full_bucket(
    rate: int, burst: int, seconds: float
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    bucket.credit(seconds, now=0.0)
    assert allowed_at(bucket, 0.0) == int(burst + seconds * rate)


def test_a_credit_is_kept_until_spent_and_nothing_refills_above_the_burst() -> None:
    bucket = TokenBucket(10, 5, now=0.0)
    assert allowed_at(bucket, 0.0) == 5  # the burst, then none
    bucket.credit(2.0, now=0.0)
    assert allowed_at(bucket, 0.5) == 20  # the credit: half a second's refill is not added
    assert allowed_at(bucket, 1.5) == 5  # then the rate again, up to the burst


def test_without_a_credit_the_burst_is_the_most_at_once() -> None:
    bucket = TokenBucket(10, 5, now=0.0)
    assert allowed_at(bucket, 100.0) == 5


def test_a_credit_not_spent_within_a_second_cannot_be_saved_for_a_flood() -> None:
    bucket = TokenBucket(10, 5, now=0.0)
    bucket.credit(5.0, now=0.0)  # a silent client's 5 s stall
    assert allowed_at(bucket, 3.0) == 5  # three seconds later: the burst, no more
