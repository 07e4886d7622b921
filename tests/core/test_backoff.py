"""Properties of reconnect backoff: bounded delays, growth to the cap, full jitter,
Retry-After honoured up to its cap, and a reset only after a stable connection.

How it was checked that these tests fail: resetting the count on any connection that
opened (``websockets``' behaviour: ``if uptime_s >= stable_s`` made ``if True``) made
``test_a_connection_that_never_stayed_stable_never_resets_the_count`` fail (shrunk to
two 0 s uptimes: attempt stayed 1) and ``test_accept_then_close_forever_grows_to_the_cap``
fail (every window 0.5 s); jitter on the first attempt only (websockets' ``backoff()``)
made ``test_draws_spread_over_the_window`` fail; ``attempt * log(factor)`` with
``attempt=2**4000`` raised OverflowError in ``test_huge_attempt_counts_do_not_overflow``.
Each was reverted.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from simulator.core.backoff import Backoff, BackoffPolicy
from simulator.errors import UsageError

ALMOST_ONE = math.nextafter(1.0, 0.0)

draws = st.floats(0.0, 1.0, exclude_max=True)
attempts = st.integers(0, 10_000)
huge_attempts = st.integers(0, 10**30)
retry_afters = st.floats(0.0, 1e6)


@st.composite
def policies(draw: st.DrawFn) -> BackoffPolicy:
    base = draw(st.floats(1e-3, 10.0))
    return BackoffPolicy(
        base_s=base,
        factor=draw(st.floats(1.0, 10.0)),
        cap_s=draw(st.floats(base, 600.0)),
        stable_s=draw(st.floats(0.0, 60.0)),
        retry_after_cap_s=draw(st.floats(0.0, 600.0)),
    )


@given(policies(), huge_attempts, draws)
@example(BackoffPolicy(), 10**30, ALMOST_ONE)
def test_backoff_delay_never_exceeds_cap(policy: BackoffPolicy, attempt: int, draw: float) -> None:
    delay = policy.delay_s(attempt, draw)
    assert 0.0 <= delay <= policy.cap_s


@given(policies(), huge_attempts, draws, retry_afters)
def test_retry_after_is_honoured_up_to_its_cap(
    policy: BackoffPolicy, attempt: int, draw: float, retry_after: float
) -> None:
    delay = policy.delay_s(attempt, draw, retry_after)
    assert delay >= min(retry_after, policy.retry_after_cap_s)
    assert delay <= policy.retry_after_cap_s + policy.cap_s
    # Retry-After only ever lengthens the wait.
    assert delay >= policy.delay_s(attempt, draw)


@given(policies(), huge_attempts, draws, draws, retry_afters)
def test_retry_after_keeps_the_jitter(
    policy: BackoffPolicy, attempt: int, one: float, other: float, retry_after: float
) -> None:
    """Clients refused together with the same hint come back spread over the whole
    window after it, as far apart as their draws: not all when the hint ends."""
    hint = min(retry_after, policy.retry_after_cap_s)
    apart = policy.delay_s(attempt, one, retry_after) - policy.delay_s(attempt, other, retry_after)
    window = policy.window_s(attempt)
    assert apart == pytest.approx((one - other) * window, abs=1e-9 * max(hint, window))


@given(policies(), attempts)
def test_window_grows_monotonically_to_the_cap(policy: BackoffPolicy, attempt: int) -> None:
    assert policy.window_s(0) == pytest.approx(policy.base_s)
    assert policy.window_s(attempt) <= policy.window_s(attempt + 1) <= policy.cap_s


@given(policies())
def test_window_reaches_the_cap_when_the_factor_grows(policy: BackoffPolicy) -> None:
    assume(policy.factor >= 1.01)
    # log(cap/base)/log(factor) attempts reach the cap; 1.01 reaches 600x within ~650.
    assert policy.window_s(10_000) == policy.cap_s


@pytest.mark.parametrize(
    "attempt", [0, 1, 5, 63, 64, 1024, 1100, 10**6, 10**30, pytest.param(2**4000, id="2**4000")]
)
@pytest.mark.parametrize("factor", [1.0, 1.5, 2.0, 1e10, 1e300])
def test_huge_attempt_counts_do_not_overflow(attempt: int, factor: float) -> None:
    policy = BackoffPolicy(base_s=0.5, factor=factor, cap_s=30.0)
    window = policy.window_s(attempt)
    assert 0.5 <= window <= 30.0
    assert policy.delay_s(attempt, ALMOST_ONE) <= 30.0


@given(policies(), attempts)
def test_draws_spread_over_the_window(policy: BackoffPolicy, attempt: int) -> None:
    """Full jitter: draw 0 gives no wait at all, a draw just under 1 gives the whole
    window, and the delay grows with the draw in between."""
    window = policy.window_s(attempt)
    assert policy.delay_s(attempt, 0.0) == 0.0
    assert policy.delay_s(attempt, ALMOST_ONE) == pytest.approx(window)
    assert policy.delay_s(attempt, 0.25) <= policy.delay_s(attempt, 0.5) <= window


def test_the_first_retry_is_randomised() -> None:
    """Many clients dropped together do not all come back at the same moment."""
    rng = random.Random(7)
    firsts = [
        Backoff(BackoffPolicy()).next_delay_s(rng.random(), uptime_s=None) for _ in range(200)
    ]
    assert len(set(firsts)) == 200
    assert min(firsts) < 0.05 and max(firsts) > 0.45  # spread over [0, 0.5)


@given(policies(), st.lists(st.floats(0.0, 1e6), min_size=1, max_size=60), draws)
def test_a_connection_that_never_stayed_stable_never_resets_the_count(
    policy: BackoffPolicy, uptimes: list[float], draw: float
) -> None:
    """Accept then close, forever (or never connect): each failure counts, so the
    windows grow to the cap and never start again from the first."""
    backoff = Backoff(policy)
    for n, up in enumerate(uptimes):
        uptime = None if up >= policy.stable_s else up  # a bare handshake, or none
        delay = backoff.next_delay_s(draw, uptime_s=uptime)
        assert backoff.attempt == n + 1
        assert delay == policy.delay_s(n, draw)


def test_accept_then_close_forever_grows_to_the_cap() -> None:
    policy = BackoffPolicy(base_s=0.5, factor=2.0, cap_s=30.0, stable_s=10.0)
    backoff = Backoff(policy)
    windows = []
    for _ in range(12):
        windows.append(backoff.next_delay_s(ALMOST_ONE, uptime_s=0.01))
    assert windows == pytest.approx([0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30])


@given(policies(), st.integers(1, 50), draws, st.floats(0.0, 1e6))
def test_one_stable_connection_resets_the_count(
    policy: BackoffPolicy, failures: int, draw: float, extra: float
) -> None:
    backoff = Backoff(policy)
    for _ in range(failures):
        backoff.next_delay_s(draw, uptime_s=None)
    delay = backoff.next_delay_s(draw, uptime_s=policy.stable_s + extra)
    assert delay == policy.delay_s(0, draw)
    assert backoff.attempt == 1


def test_stable_is_inclusive_and_just_short_of_it_is_not() -> None:
    policy = BackoffPolicy(stable_s=10.0)
    short, stable = Backoff(policy, attempt=5), Backoff(policy, attempt=5)
    short.next_delay_s(0.5, uptime_s=math.nextafter(10.0, 0.0))
    stable.next_delay_s(0.5, uptime_s=10.0)
    assert (short.attempt, stable.attempt) == (6, 1)


def test_reset_starts_again_from_the_first_window() -> None:
    backoff = Backoff(BackoffPolicy(), attempt=9)
    backoff.reset()
    assert backoff.next_delay_s(ALMOST_ONE, uptime_s=None) == pytest.approx(0.5)


def test_retry_after_does_not_change_the_count() -> None:
    backoff = Backoff(BackoffPolicy())
    assert backoff.next_delay_s(0.0, uptime_s=None, retry_after_s=5.0) == 5.0
    assert backoff.next_delay_s(0.0, uptime_s=None, retry_after_s=500.0) == 120.0
    assert backoff.attempt == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_s": 0}, "base_s=0: must be > 0"),
        ({"base_s": -1.0}, "base_s=-1.0: must be > 0"),
        ({"base_s": math.nan}, "base_s=nan: must be a finite number"),
        ({"base_s": math.inf}, "base_s=inf: must be a finite number"),
        ({"base_s": "1"}, "base_s='1': must be a number"),
        ({"factor": 0.5}, "factor=0.5: must be >= 1"),
        ({"factor": True}, "factor=True: must be a number"),
        ({"cap_s": 0.1}, "cannot have cap_s=0.1 < base_s=0.5"),
        ({"cap_s": math.inf}, "cap_s=inf: must be a finite number"),
        ({"stable_s": -0.1}, "stable_s=-0.1: must be >= 0"),
        ({"stable_s": math.nan}, "stable_s=nan: must be a finite number"),
        ({"retry_after_cap_s": -5}, "retry_after_cap_s=-5: must be >= 0"),
    ],
)
def test_invalid_policies_raise_usage_error_naming_the_field(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match="BackoffPolicy") as caught:
        BackoffPolicy(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: BackoffPolicy().window_s(-1), "attempt=-1: must be >= 0"),
        (lambda: BackoffPolicy().delay_s(0, 1.5), "draw=1.5: must be in [0, 1]"),
        (lambda: BackoffPolicy().delay_s(0, -0.1), "draw=-0.1: must be in [0, 1]"),
        (lambda: BackoffPolicy().delay_s(0, math.nan), "draw=nan"),
        (lambda: BackoffPolicy().delay_s(0, 0.5, -1.0), "retry_after_s=-1.0: must be >= 0"),
        (lambda: Backoff(BackoffPolicy(), attempt=-2), "attempt=-2: must be >= 0"),
        (
            lambda: Backoff(BackoffPolicy()).next_delay_s(0.5, uptime_s=-3.0),
            "uptime_s=-3.0: must be >= 0",
        ),
    ],
)
def test_invalid_arguments_raise_usage_error_naming_them(call: object, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        call()  # type: ignore[operator]
    assert message in str(caught.value)


def test_infinite_stable_and_retry_after_caps_mean_never_and_no_cap() -> None:
    policy = BackoffPolicy(stable_s=math.inf, retry_after_cap_s=math.inf)
    backoff = Backoff(policy, attempt=3)
    assert backoff.next_delay_s(0.0, uptime_s=1e9, retry_after_s=1e5) == 1e5
    assert backoff.attempt == 4
