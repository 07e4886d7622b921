"""The statistics of `sim learn`: which schedule and which field kind fit observed values.

Every fit returns a :class:`Fit`: the scenario text for the field (or schedule) and a
one-line account of how well it fits, which `sim learn` writes as a comment. Goodness of
fit is the Kolmogorov–Smirnov statistic ``D`` (the largest distance between the observed
and the fitted distribution functions) with its asymptotic p-value; smaller ``D`` fits
better. Relations between fields (a difference, a percentage change, a running sum) are
accepted only when they hold, within the values' rounding, for 99% of the messages (of
the consecutive pairs of messages, for a change).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from simulator.core.scenario_limits import INT64, MAX_DEPTH, MAX_RATE_PER_S
from simulator.core.toml_text import toml_value

Floats = npt.NDArray[np.float64]

#: Share of messages a relation must hold for.
RELATION_SHARE: Final = 0.99
#: Fewest messages a change relation is learned from, if it holds for every one: three
#: consecutive pairs. It has no coefficient to fit, so it does not hold by chance: an
#: unrelated float passed for the change of another in none of 2,000 tries of 4
#: messages. (Up to 100 messages, RELATION_SHARE of the pairs is all.)
MIN_RELATION: Final = 4
#: Fewest messages a running sum is learned from. Its coefficient is fitted to the
#: steps, so on few of them one can be found for unrelated fields: an integer walk
#: (steps 0..3) passed for a running sum of round(x / k) of an unrelated float x in
#: 20..30 in 12.9% of 20,000 tries of 4 messages, 1.5% of 6, 0.14% of 8, 0.015% of 10
#: and none of 11 or more; a walk of steps -2..2 against an unrelated integer 1..99 in
#: 2.8% at 4 messages, 0.01% at 8 and none from 10; a float walk against an unrelated
#: float in 0.9% at 4 and none from 6. With MIN_SUM_STEPS too, none of 20,000 tries
#: of each at 10 messages passed (the integer walk's 0.015% was of steps too few): a
#: message of 5 numeric fields (20 ordered pairs) invents one well under 0.3% of the
#: time. The dashboard's counts hold from 14 messages (140 s) of a capture.
MIN_SUM: Final = 10
#: Fewest distinct steps of an integer running sum: steps of only 0 and 1 say one bit
#: a message (which side of a threshold the other field was), and passed for a sum of
#: an unrelated float in 1.6% of tries at 10 messages (0.06% for steps 0..2 at 10).
MIN_SUM_STEPS: Final = 3
#: Gaps within this share of their mean are a fixed interval (a live feed jitters).
FIXED_SPREAD: Final = 0.01
#: What a recorded time may be off by, in wall time: the asyncio clock's resolution and
#: scheduling, on the machine that recorded (times the speed, in scenario time).
CLOCK_JITTER_NS: Final = 10**6
#: The shortest interval a scenario's stream may have (:data:`MAX_RATE_PER_S`).
_SHORTEST_NS: Final = 10**9 // MAX_RATE_PER_S
#: The units a fixed interval is rounded to, roundest first.
_ROUND_UNITS: Final = (10**9, 10**8, 10**7, 10**6, 10**5, 10**4, 10**3)
#: Most distinct values a string field may have to be learned as a choice.
MAX_CHOICES: Final = 50
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_TEMPLATE = re.compile(r"(\D*?)(\d+)(\D*)")


@dataclass(frozen=True, slots=True)
class Fit:
    """What was learned: ``kind`` (for the summary), the TOML of the field or schedule,
    and how well it fits."""

    kind: str
    toml: str
    quality: str

    @property
    def left_out(self) -> bool:
        """Whether this is no field at all: a scenario cannot hold what was seen, and
        ``quality`` says why (the writer makes it a comment)."""
        return self.kind == LEFT_OUT


#: The kind of a :class:`Fit` that is no field (:func:`leave_out`).
LEFT_OUT: Final = "left out"
#: Why a null is never sent as it was (it follows "null in 3 of 60 messages, ").
NO_NULL: Final = "which a scenario cannot send (TOML has no null)"
#: How integers beyond 64 bits are sent, and why (it follows "integers beyond 64 bits").
#: Floats rather than strings: a float is still a number, the type a reader expects
#: (and what orjson, and JavaScript, read such an integer as anyway).
AS_FLOATS: Final = (
    "sent as floats, as TOML integers are 64-bit: still numbers, to 16 significant digits"
)
#: Why what nests too deep is left out (it follows "its items would be").
TOO_DEEP: Final = f"nested deeper than the {MAX_DEPTH} levels a scenario holds"


def leave_out(reason: str) -> Fit:
    """What cannot be a field of a scenario, and why: written as a comment only."""
    return Fit(LEFT_OUT, "", reason)


def floats_beyond_int64(value: Any) -> Any:
    """The JSON value ``value`` with every integer beyond 64 bits (which no TOML
    integer holds) as the nearest float (:data:`AS_FLOATS`), so that it can be
    written; ``value`` itself when it holds none, so ``is`` tells the caller whether
    to say so."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value in INT64 else float(value)
    if isinstance(value, list):
        items = [floats_beyond_int64(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        members = {k: floats_beyond_int64(v) for k, v in value.items()}
        return value if all(members[k] is v for k, v in value.items()) else members
    return value


def nested_deeper(value: Any, room: int) -> bool:
    """Whether the JSON value ``value`` nests deeper than ``room`` levels (a scalar, or
    an empty array or object, nests 0; ``[[1]]`` 2). It looks no deeper than ``room``:
    a recorded value may nest 1,024 deep, past Python's recursion limit."""
    if room < 0:
        return True
    if isinstance(value, list | dict) and value:
        children = value if isinstance(value, list) else value.values()
        return any(nested_deeper(v, room - 1) for v in children)
    return False


def _beyond_int64(x: Floats) -> bool:
    """Whether the numbers ``x`` reach past a 64-bit integer as floats (2**63 - 1 rounds
    to 2**63): a fit of them writes no integer, and rounds to no integer either."""
    return bool(x.min() < -(2.0**63) or x.max() >= 2.0**63)


# ----------------------------------------------------------------------------- KS


def ks_statistic(sample: Floats, cdf: Callable[[Floats], Floats]) -> float:
    """One-sample KS statistic of ``sample`` against the distribution function ``cdf``."""
    x = np.sort(sample)
    n = len(x)
    if n == 0:
        return 1.0
    f = cdf(x)
    above = np.arange(1, n + 1) / n - f
    below = f - np.arange(0, n) / n
    return float(max(above.max(), below.max()))


def ks_two_sample(a: Sequence[float] | Floats, b: Sequence[float] | Floats) -> float:
    """Two-sample KS statistic: the largest distance between the empirical CDFs."""
    x, y = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    if not len(x) or not len(y):
        return 1.0
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / len(x)
    fy = np.searchsorted(y, grid, side="right") / len(y)
    return float(np.abs(fx - fy).max())


def ks_p_value(d: float, n: int) -> float:
    """Asymptotic p-value of a one-sample KS statistic ``d`` on ``n`` values."""
    if n == 0:
        return 0.0
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    if lam < 0.2:
        return 1.0
    total = math.fsum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return max(0.0, min(1.0, 2.0 * total))


def _quality(d: float, n: int) -> str:
    return f"KS D = {d:.4f}, p = {ks_p_value(d, n):.3g}, n = {n}"


def _normal_cdf(mean: float, std: float) -> Callable[[Floats], Floats]:
    def cdf(x: Floats) -> Floats:
        z = (x - mean) / (std * math.sqrt(2))
        return 0.5 * (1 + np.vectorize(math.erf)(z))  # type: ignore[no-any-return]

    return cdf


# ----------------------------------------------------------------------------- schedules


def fit_schedule(t_ns: Sequence[int], jitter_ns: float = CLOCK_JITTER_NS) -> Fit:
    """``every``: fixed (gaps within :data:`FIXED_SPREAD` of their mean), else a
    uniform interval or Poisson (``rate``), whichever the inter-arrival times fit best;
    a stream of one or two messages is ``at`` their times. ``jitter_ns`` is what a
    recorded time may be off by, in scenario time: :data:`CLOCK_JITTER_NS` times the
    speed the recording was made at (the caller multiplies it as it does the times)."""
    t = np.asarray(t_ns, dtype=np.int64)
    if len(t) < 3:
        offsets = ", ".join(f'"{_duration(x)}"' for x in _rounded([int(x) for x in t] or [0]))
        return Fit("at", f"at = [{offsets}]", f"only {len(t)} message{'s' * (len(t) != 1)}")
    gaps = np.diff(t).astype(np.float64)
    n = len(gaps)
    lo, hi, mean = float(gaps.min()), float(gaps.max()), float(gaps.mean())
    if mean < _SHORTEST_NS:
        return _fastest(mean)
    if hi - lo <= max(FIXED_SPREAD * mean, 1.0):
        return _fixed(t, lo, hi, jitter_ns)
    uniform = ks_statistic(gaps, lambda x: np.clip((x - lo) / (hi - lo), 0, 1))
    poisson = ks_statistic(gaps, lambda x: 1 - np.exp(-x / mean))
    if uniform <= poisson:
        low, high = _outward(lo, hi)
        text = f'every = {{ min = "{_duration(low)}", max = "{_duration(high)}" }}'
        return Fit(
            "uniform",
            text,
            f"uniform interval: {_quality(uniform, n)} (Poisson: D = {poisson:.4f})",
        )
    rate = 1e9 / mean
    return Fit(
        "poisson",
        f"rate = {_number(rate, 6)}",
        f"Poisson: {_quality(poisson, n)} (uniform interval: D = {uniform:.4f})",
    )


def _fastest(mean: float) -> Fit:
    """The schedule of a stream whose messages were ``mean`` ns apart, faster than a
    scenario's stream may send (:data:`MAX_RATE_PER_S`): as fast as it may, said."""
    seen = f"{_duration(round(mean))} apart on average ({1e9 / mean:.0f} msg/s)" if mean else ""
    return Fit(
        "fixed",
        f'every = "{_duration(_SHORTEST_NS)}"',
        f"{seen or 'all at one time'}, faster than the {MAX_RATE_PER_S} msg/s a"
        f" scenario's stream may send: sent at that rate",
    )


def _fixed(t: npt.NDArray[np.int64], lo: float, hi: float, jitter_ns: float) -> Fit:
    """A fixed interval, for the times ``t`` whose gaps are ``lo`` to ``hi`` apart:
    their mean (of the whole span: a feed that sends on a clock is off by its jitter
    at both ends only) made the roundest value that the jitter explains."""
    mean = (float(t[-1]) - float(t[0])) / (len(t) - 1)
    # The jitter is what a time may be off by: the clock's, times the speed, or what
    # the gaps show; never more than a fixed interval's own spread may be (1%: a 45 ms
    # interval at speed 20 is no 40 ms one).
    off = min(max(jitter_ns, (hi - lo) / 2), FIXED_SPREAD * mean)
    every = _roundest(mean, off, zero=False)
    if every >= 10**7:  # a live feed's jitter is not part of its interval
        every = round(every / 10**6) * 10**6
    # The first offset as round (its jitter is not part of the schedule either), else
    # to the precision the interval was given.
    unit = next(u for u in (10**6, 10**3, 1) if every % u == 0)
    first = _roundest(float(t[0]), off, zero=True, fallback=unit)
    start = "" if first == every else f'\nfirst = "{_duration(first)}"'
    return Fit(
        "fixed",
        f'every = "{_duration(every)}"{start}',
        f"fixed interval: gaps within {(hi - lo) / mean:.2%} of their mean, n = {len(t) - 1}",
    )


def _roundest(ns: float, off: float, *, zero: bool, fallback: int = 1) -> int:
    """The roundest duration within ``off`` of ``ns``: a whole number of seconds, else
    of 100 ms, 10 ms... 1 us (0 only if ``zero``); else ``ns`` to the ``fallback``."""
    for unit in _ROUND_UNITS:
        near = round(ns / unit) * unit
        if abs(near - ns) <= off and (near or zero):
            return near
    return max(round(ns / fallback) * fallback, 0 if zero else 1)


def _outward(lo: float, hi: float) -> tuple[int, int]:
    """The observed range of gaps widened to whole milliseconds (or microseconds): the
    smallest and largest of n uniform gaps fall short of the true bounds by about
    (hi - lo) / n."""
    for unit in (10**6, 10**3, 1):
        if hi - lo >= 100 * unit:
            return int(lo // unit * unit), int(-(-hi // unit) * unit)
    return int(lo), int(hi)


def _rounded(offsets: list[int]) -> list[int]:
    """Measured offsets to the millisecond (their microseconds are the recording's
    jitter, not the feed's schedule), or to the microsecond (or not at all) when the
    millisecond would make two of them one; an offset under a millisecond as it is."""
    for unit in (10**6, 10**3, 1):
        rounded = [t if t < unit else round(t / unit) * unit for t in offsets]
        if len(set(rounded)) == len(set(offsets)):
            return rounded
    return offsets  # pragma: no cover - unit 1 always keeps them apart


def _duration(ns: int) -> str:
    for unit, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


# ----------------------------------------------------------------------------- numbers


def decimals(values: Sequence[float]) -> int:
    """How many decimals the values are written with (at most 12)."""
    best = 0
    for v in values[:2000]:
        if isinstance(v, int):
            continue
        text = repr(float(v))
        if "e" in text:
            return 12
        best = max(best, len(text.split(".")[1].rstrip("0")))
    return min(best, 12)


def _number(x: float, digits: int = 6) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x)) if digits == 0 else f"{x:.1f}"
    return repr(round(float(x), digits))


def _spread(x: float, digits: int = 6) -> str:
    """A spread (a std, a sigma, a step: > 0) as :func:`_number` writes it, but never
    rounded to 0, which the scenario loader refuses: 1.19e-07 stays itself."""
    return _number(x, digits) if round(float(x), digits) > 0 else repr(float(f"{x:.3g}"))


def fit_numeric(values: Sequence[float], is_int: bool) -> Fit:
    """A constant, a counter, a walk, or the iid distribution that fits best. Numbers
    beyond a 64-bit integer are fitted as floats, and integers (``is_int``) are said
    to be sent as floats (:data:`AS_FLOATS`)."""
    x = np.asarray(values, dtype=np.float64)
    if not _beyond_int64(x):
        return _fit_numbers(x, values, is_int, wide=False)
    fit = _fit_numbers(x, values, False, wide=True)
    if not is_int:
        return fit  # floats, sent as floats
    # 2**63 - 1 is a 64-bit integer, but as a float (a fit's) it is 2**63.
    where = "beyond" if any(v not in INT64 for v in values) else "at the edge of"
    return Fit(fit.kind, fit.toml, f"integers {where} 64 bits {AS_FLOATS}; {fit.quality}")


def _fit_numbers(x: Floats, values: Sequence[float], is_int: bool, *, wide: bool) -> Fit:
    """:func:`fit_numeric` of ``values`` (as the floats ``x``); ``wide`` when they reach
    beyond a 64-bit integer, which ``round = 0`` would send them as."""
    n = len(x)
    r = 0 if is_int else decimals(values)
    # Integers seen: round = 0, so integers are sent; but not past 64 bits, where a
    # float is whole anyway.
    rounding = "" if wide and r == 0 else f", round = {r}"
    if np.all(x == x[0]):
        return Fit(
            "const", _number(x[0], 12) if not is_int else str(int(x[0])), f"constant, n = {n}"
        )
    steps = np.diff(x)
    if is_int and len(steps) and np.all(steps == steps[0]) and steps[0] != 0:
        text = f'{{ dist = "counter", start = {int(x[0])}, step = {int(steps[0])} }}'
        return Fit("counter", text, f"counter: every step {int(steps[0])}, n = {n}")
    lo, hi = float(x.min()), float(x.max())
    bounds = f"min = {_number(lo, 12)}, max = {_number(hi, 12)}"
    if n > 20 and lag1(x) > 0.8:
        return _walk(x, bounds, rounding, r)
    return _iid(x, is_int, bounds, rounding)


def lag1(x: Floats) -> float:
    """Lag-1 autocorrelation: near 1 for a walk, near 0 for independent draws."""
    a, b = x[:-1] - x.mean(), x[1:] - x.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator else 0.0


def _walk(x: Floats, bounds: str, rounding: str, r: int) -> Fit:
    """AR(1) by least squares: ``x[t+1] - x[t] = -revert * (x[t] - mean) + N(0, step)``."""
    step_in = x[:-1] - x.mean()  # centred: a fit far from 0 (1e19) is ill-conditioned
    change = np.diff(x)
    slope, intercept = np.polyfit(step_in, change, 1)
    revert = float(min(max(-slope, 0.0), 1.0))
    residual = change - (slope * step_in + intercept)
    step = float(residual.std()) or float(np.abs(change).mean()) or 1e-9
    mean = float(x.mean())
    revert_text = (
        f", revert = {revert:.4f}, mean = {_number(mean, max(r, 4))}" if revert > 1e-3 else ""
    )
    text = (
        f'{{ dist = "walk", start = {_number(x[0], 12)}, step = {_spread(step, max(r + 2, 4))}'
        f"{revert_text}, {bounds}{rounding} }}"
    )
    return Fit(
        "walk",
        text,
        f"random walk: lag-1 autocorrelation {lag1(x):.3f}, step std {step:.4g},"
        f" revert {revert:.4f}, n = {len(x)}",
    )


def _iid(x: Floats, is_int: bool, bounds: str, rounding: str) -> Fit:
    n = len(x)
    lo, hi = float(x.min()), float(x.max())
    candidates: list[tuple[float, str, str]] = []
    if is_int:
        span = hi - lo + 1
        d = ks_statistic(x, lambda v: np.clip((np.floor(v) - lo + 1) / span, 0, 1))
        candidates.append(
            (d, "randint", f'{{ dist = "randint", min = {int(lo)}, max = {int(hi)} }}')
        )
    else:
        d = ks_statistic(x, lambda v: np.clip((v - lo) / (hi - lo), 0, 1))
        text = f'{{ dist = "uniform", min = {_number(lo, 12)}, max = {_number(hi, 12)}{rounding} }}'
        candidates.append((d, "uniform", text))
    mean, std = float(x.mean()), float(x.std()) or 1e-9
    d = ks_statistic(x, _normal_cdf(mean, std))
    text = (
        f'{{ dist = "normal", mean = {_number(mean)}, std = {_spread(std)}, {bounds}{rounding} }}'
    )
    candidates.append((d, "normal", text))
    if lo > 0:
        logs = np.log(x)
        mu, sigma = float(logs.mean()), float(logs.std()) or 1e-9
        d = ks_statistic(logs, _normal_cdf(mu, sigma))
        text = (
            f'{{ dist = "lognormal", mu = {_number(mu)}, sigma = {_spread(sigma)}, {bounds},'
            f' bounds = "reflect"{rounding} }}'
        )
        candidates.append((d, "lognormal", text))
    candidates.sort(key=lambda c: c[0])
    d, kind, text = candidates[0]
    others = ", ".join(f"{k}: D = {dd:.4f}" for dd, k, _ in candidates[1:])
    return Fit(kind, text, f"{kind}: {_quality(d, n)}" + (f" ({others})" if others else ""))


# ----------------------------------------------------------------------------- relations


def _tolerance(r: int) -> float:
    return 0.5 * 10.0**-r + 1e-9 if r < 12 else 1e-9


def _holds(residual: Floats, tolerance: float) -> float:
    """The share of messages for which a relation holds within ``tolerance``."""
    return float(np.mean(np.abs(residual) <= tolerance)) if len(residual) else 0.0


def fit_change(
    name: str, values: Sequence[float], others: Mapping[str, Sequence[float]], is_int: bool
) -> Fit | None:
    """``name`` as the difference or percentage change of consecutive values of one of
    ``others``, holding for :data:`RELATION_SHARE` of the consecutive pairs of messages;
    ``None`` when none holds. The first message is not checked: `prev.` makes it 0 (it
    reads the message itself there), but a capture that joined mid-stream had the
    message before it unrecorded, so its comment says what it had when not 0."""
    f = np.asarray(values, dtype=np.float64)
    if len(f) < MIN_RELATION or np.all(f == f[0]) or _beyond_int64(f):
        return None  # beyond 64 bits: the rounding below would send integers
    r = 0 if is_int else decimals(values)
    tolerance = _tolerance(r) * 1.01
    rounding = f", round = {r}"
    pairs = f[1:]
    for other, raw in others.items():
        g = np.asarray(raw, dtype=np.float64)
        if other == name or len(g) != len(f) or np.all(g == g[0]):
            continue
        step, prev = np.diff(g), g[:-1]
        share = _holds(pairs - step, tolerance)
        if share >= RELATION_SHARE:
            return Fit(
                "difference",
                f'{{ expr = "{other} - prev.{other}"{rounding} }}',
                f"difference of consecutive {other}: holds for {share:.2%} of"
                f" {len(pairs)} consecutive pairs{_first_change(values[0], tolerance)}",
            )
        if np.all(prev != 0):
            share = _holds(pairs - step / prev * 100, tolerance)
            if share >= RELATION_SHARE:
                return Fit(
                    "percentage",
                    f'{{ expr = "({other} - prev.{other}) / prev.{other} * 100"{rounding} }}',
                    f"percentage change of {other}: holds for {share:.2%} of"
                    f" {len(pairs)} consecutive pairs{_first_change(values[0], tolerance)}",
                )
    return None


def _first_change(first: float, tolerance: float) -> str:
    """What a change relation's comment says of the first message's value ``first``:
    nothing when it is 0, as the scenario's first message sends."""
    if abs(first) <= tolerance:
        return ""
    return (
        f"; the first message had {first!r}, its previous one unrecorded"
        " (a capture that joined mid-stream): the scenario's first sends 0"
    )


def fit_running_sum(
    name: str, values: Sequence[float], others: Mapping[str, Sequence[float]], is_int: bool
) -> Fit | None:
    """``name`` as a running sum of ``k * other`` (or, for integers, of
    ``round(other / k)``), holding for :data:`RELATION_SHARE` of its steps; ``None``
    when none holds, when ``name`` does not accumulate (:func:`accumulates`), or when
    a coincidence is not rare (fewer than :data:`MIN_SUM` messages, or an integer total
    of fewer than :data:`MIN_SUM_STEPS` distinct steps). An ``other`` that is the
    percentage change of ``name`` is not summed (:func:`_percentage_of`)."""
    f = np.asarray(values, dtype=np.float64)
    if len(f) < MIN_SUM or np.all(f == f[0]) or _beyond_int64(f) or not accumulates(f):
        return None  # beyond 64 bits: its initial value and rounding would be integers
    if is_int and len(np.unique(np.diff(f))) < MIN_SUM_STEPS:
        return None  # too little said by each step for a divisor to be told from chance
    for other, raw in others.items():
        g = np.asarray(raw, dtype=np.float64)
        if other == name or len(g) != len(f) or np.all(g[1:] == 0):
            continue
        if is_int:
            fit = _integer_sum(name, f, other, g)
        else:
            fit = _float_sum(name, f, other, g, decimals(values))
        if fit is not None and not _percentage_of(other, raw, name, values):
            return fit
    return None


def _percentage_of(other: str, raw: Sequence[float], name: str, values: Sequence[float]) -> bool:
    """Whether ``other`` (its values ``raw``) is the percentage change of ``name``'s
    ``values``. A price and its change in percent also pass for a running sum of the
    change, ``prev.price + change * k``, when the price moves little (``k`` would be
    ``prev.price / 100``, about constant): that sum is the reverse of the relation,
    drawing the change and leaving the price unbounded, so the change relation wins.
    (A difference is a running sum with ``k = 1``, the same relation: the sum is kept,
    and the field that accumulates is the total.)"""
    change = fit_change(other, raw, {name: values}, False)
    return change is not None and change.kind == "percentage"


def accumulates(x: Floats) -> bool:
    """Whether the numbers ``x`` accumulate, as a running sum does: their steps vary
    less than they do (so ``x`` cannot as well be the one drawn, whose consecutive
    differences are the other field: ``total = prev.total + size`` is also ``size =
    total - prev.total``). A walk does; independent draws do not (their steps vary
    more). Unlike a walk's lag-1 autocorrelation, it tells from a handful of values."""
    return bool(np.std(np.diff(x)) < np.std(x))


def _integer_sum(name: str, f: Floats, other: str, g: Floats) -> Fit | None:
    """The integers ``f`` as a running sum of ``round(other / d)`` (``other``'s values
    ``g``), ``d`` the shortest decimal that the most steps allow (each of them then
    holds); ``None`` unless it holds for :data:`RELATION_SHARE` of them."""
    steps, moves = np.diff(f), g[1:]
    held, lo, hi = _most_held(*_divisor_ranges(steps, moves))
    if held < RELATION_SHARE * len(steps) or not math.isfinite(hi):
        return None  # no divisor, or any large one (the total hardly moves)

    def holding(d: float) -> int:
        return int(np.count_nonzero(steps == np.round(moves / d)))

    divisor = _shortest(lo, hi, lambda d: d > 0 and holding(d) >= held)
    if divisor is None:  # at a tie, round() went the other way: as measured then
        divisor = _within(_ratio_estimate(moves, steps), lo, hi)
    share = holding(divisor) / len(steps)
    if share < RELATION_SHARE:
        return None
    initial = int(f[0] - round(float(g[0]) / divisor))
    text = repr(divisor) if not divisor.is_integer() or divisor >= 1e15 else str(int(divisor))
    return Fit(
        "running sum",
        f'{{ expr = "prev.{name} + round({other} / {text})", initial = {initial} }}',
        f"running sum of round({other} / {text}): holds for {share:.2%} of messages",
    )


def _float_sum(name: str, f: Floats, other: str, g: Floats, r: int) -> Fit | None:
    """The numbers ``f``, rounded to ``r`` decimals, as a running sum of ``k * other``
    (``other``'s values ``g``), ``k`` a factor that the most steps allow; ``None``
    unless it holds for :data:`RELATION_SHARE` of them. ``k`` and ``initial`` are the
    shortest decimals that give every recorded value (rounded to ``r``) where the sum
    holds for every step; else (some step did not hold, or the steps held but their
    sum drifts from the values, as a factor that wanders does) ``k`` is the shortest
    decimal that keeps each step that held, and ``initial`` gives the first value."""
    steps, moves = np.diff(f), g[1:]
    tolerance = _tolerance(r) * 1.01 * 2  # a step is the difference of two rounded values
    held, lo, hi = _most_held(*_factor_ranges(steps, moves, tolerance))
    if held < RELATION_SHARE * len(steps) or not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    # What a value may be off by: its rounding, and the float error of a sum of len(f).
    off = _tolerance(r) + 2.3e-16 * len(f) * float(np.abs(f).max())
    every = held == len(steps)

    def holding(k: float) -> int:
        return int(np.count_nonzero(np.abs(steps - k * moves) <= tolerance))

    def gives(k: float) -> bool:
        if k == 0 or holding(k) < held:
            return False
        start, stop = _initials(f, g, k, off)
        return not every or start <= stop

    k = _shortest(lo, hi, gives)
    if k is None:  # none gives every value (the sum drifts): the shortest the steps allow
        k = _shortest(lo, hi, lambda c: c != 0 and holding(c) >= held)
    if k is None:  # no decimal of 15 digits: as measured
        k = _within(_ratio_estimate(steps, moves), lo, hi)
    share = holding(k) / len(steps)
    if k == 0 or share < RELATION_SHARE:
        return None
    start, stop = _initials(f, g, k, off) if every else (math.nan, math.nan)
    if not start <= stop:  # only the first value, for a sum that holds for most steps
        first = float(f[0] - k * g[0])
        start, stop = first - off, first + off
    initial = _shortest(start, stop)
    text = _number(f[0] - k * float(g[0]), max(r, 2)) if initial is None else repr(initial)
    factor = "" if k == 1 else f" * {k!r}"
    return Fit(
        "running sum",
        f'{{ expr = "prev.{name} + {other}{factor}", initial = {text}, round = {r} }}',
        f"running sum of {other}{factor}: holds for {share:.2%} of messages",
    )


def _initials(f: Floats, g: Floats, k: float, off: float) -> tuple[float, float]:
    """The ``initial`` values from which a running sum of ``k * g`` gives every value
    of ``f`` within ``off``: from the first to the second (none when it is larger)."""
    apart = f - np.cumsum(k * g)
    return float(apart.max()) - off, float(apart.min()) + off


def _shortest(
    lo: float, hi: float, accept: Callable[[float], bool] = lambda _: True
) -> float | None:
    """The number from ``lo`` to ``hi`` with the fewest significant digits (the one
    nearest their middle, among those) that ``accept`` takes, so that a learned
    coefficient reads as a person writes it (0.15, not 0.150000036); ``None`` when no
    number of up to 15 digits is taken (or none is in the range)."""
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        return None
    middle = (lo + hi) / 2
    top = math.floor(math.log10(max(abs(lo), abs(hi)) or 1.0)) + 1
    for p in range(top, top - 16, -1):
        nearest = float(f"{round(middle / 10.0**p)}e{p}")  # written in decimal: exact
        above = float(f"{math.ceil(lo / 10.0**p)}e{p}")
        for c in (nearest, above):
            if lo <= c <= hi and accept(c):
                return c
    return None


def _most_held(lo: Floats, hi: Floats) -> tuple[int, float, float]:
    """The coefficients the most pairs of messages allow, pair ``i`` allowing those
    from ``lo[i]`` to ``hi[i]`` (none where ``lo[i] > hi[i]``): how many pairs allow
    them, and the range ``(lo, hi)`` they all allow."""
    allowed = lo <= hi
    if not allowed.any():
        return 0, math.nan, math.nan
    starts, ends = np.sort(lo[allowed]), np.sort(hi[allowed])
    # The most ranges overlap at the start of one of them: count at each start the
    # ranges that start there or before, less those that end before it.
    held = np.searchsorted(starts, starts, side="right") - np.searchsorted(ends, starts)
    best = int(np.argmax(held))
    at = float(starts[best])
    return int(held[best]), at, float(hi[allowed & (lo <= at) & (hi >= at)].min())


def _divisor_ranges(steps: Floats, moves: Floats) -> tuple[Floats, Floats]:
    """For each step of an integer total, the divisors ``d > 0`` with ``round(move /
    d)`` that step: from ``lo`` to ``hi`` (none where ``lo > hi``)."""
    s = np.where(moves < 0, -steps, steps)  # as if each move were positive
    a = np.abs(moves)
    with np.errstate(divide="ignore"):
        lo = np.where(s >= 0, a / (s + 0.5), np.inf)
        hi = np.where(s >= 1, a / (s - 0.5), np.inf)
    # A step of another sign than its move, or a step from a move of 0, rounds from none.
    none = (s < 0) | ((a == 0) & (s != 0))
    return np.where(none, np.inf, lo), np.where(none, -np.inf, hi)


def _factor_ranges(steps: Floats, moves: Floats, tolerance: float) -> tuple[Floats, Floats]:
    """For each step of a total, the factors ``k`` with ``k * move`` that step within
    ``tolerance``: from ``lo`` to ``hi`` (none where ``lo > hi``; any for a move of 0
    with a step of 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = (steps - tolerance) / moves, (steps + tolerance) / moves
    still = moves == 0
    held = np.abs(steps) <= tolerance
    lo = np.where(still, np.where(held, -np.inf, np.inf), np.minimum(a, b))
    hi = np.where(still, np.where(held, np.inf, -np.inf), np.maximum(a, b))
    return lo, hi


def _ratio_estimate(a: Floats, b: Floats) -> float:
    """The median of ``a / b`` where ``b`` is not 0."""
    moved = b != 0
    return float(np.median(a[moved] / b[moved])) if moved.any() else math.nan


def _within(x: float, lo: float, hi: float) -> float:
    """``x`` where it lies from ``lo`` to ``hi``, else the middle of them (or ``lo``, for
    no ``hi``)."""
    if lo <= x <= hi:
        return x
    return (lo + hi) / 2 if math.isfinite(hi) else lo


# ----------------------------------------------------------------------------- strings


def fit_strings(values: Sequence[str], seqs: Sequence[int], *, room: int) -> Fit:
    """A constant, a uuid, a timestamp, a template on ``seq``, or a weighted choice
    where its values fit in ``room`` (as :func:`choice_fit`: a string nests 0)."""
    n = len(values)
    counts = Counter(values)
    if len(counts) == 1:
        return Fit("const", toml_value(values[0]), f"constant, n = {n}")
    if all(_UUID.fullmatch(v) for v in values[:200]):
        return Fit("uuid", '{ dist = "uuid" }', f"version-4 UUIDs, n = {n}")
    if all(_ISO.fullmatch(v) for v in values[:200]):
        return Fit("timestamp", '{ dist = "timestamp" }', f"ISO 8601 times, n = {n}")
    template = _template(values, seqs)
    if template is not None:
        return template
    if room < 0:
        return leave_out(f"its values would be {TOO_DEEP}")
    if len(counts) <= MAX_CHOICES:
        return _weighted_choice(values)
    # Many distinct strings with no pattern: a uniform choice of the most common ones.
    common = [v for v, _ in counts.most_common(MAX_CHOICES)]
    text = "{ choice = [" + ", ".join(toml_value(v) for v in common) + "] }"
    return Fit("choice", text, f"{len(counts)} distinct values: the {MAX_CHOICES} most common")


def choice_fit(values: Sequence[Any], *, room: int) -> Fit:
    """A weighted choice with the observed weights (JSON values, tables included) of
    the :data:`MAX_CHOICES` most common values. The caller says how many levels its
    values may nest in ``room`` (the depth left to the scenario's limit below the
    choice's values: -1 when even a scalar would be too deep). Values that are or
    hold a null, or nest deeper, are left out of it, integers beyond 64 bits are
    floats in it, and the quality says so (:func:`leave_out` when all are left out)."""
    if room < 0:
        return leave_out(f"its values would be {TOO_DEEP}")
    # Before anything walks them whole: a value may nest past Python's recursion limit.
    shallow = [v for v in values if not (isinstance(v, list | dict) and nested_deeper(v, room))]
    return _weighted_choice(shallow, deep=len(values) - len(shallow))


def _weighted_choice(shallow: Sequence[Any], deep: int = 0) -> Fit:
    """:func:`choice_fit` of the values ``shallow``, which nest no deeper than it may
    (``deep`` others did, and are said to be left out)."""
    n = len(shallow) + deep
    counts: Counter[str] = Counter()
    nulls = wide = 0
    for value, count in Counter(hashable(v) for v in shallow).items():
        seen = unhashable(value)
        sendable = floats_beyond_int64(seen)
        wide += count if sendable is not seen else 0
        try:
            counts[toml_value(sendable)] += count
        except ValueError:  # it is or holds a null (or a number TOML cannot write)
            nulls += count
    if not counts and not deep:
        return leave_out(f"every value is or holds a null, {NO_NULL}")
    if not counts:
        nulls_too = f"; the others hold a null, {NO_NULL}" if nulls else ""
        return leave_out(f"{deep} of {n} values would be {TOO_DEEP}{nulls_too}")
    sendable = len(shallow) - nulls
    items = counts.most_common(MAX_CHOICES)
    choices = ", ".join(v for v, _ in items)
    weights = ", ".join(str(c) for _, c in items)
    d = max(abs(c / sendable - 1 / len(items)) for _, c in items)
    kept = f"the {len(items)} most common of {len(counts)}" if len(counts) > len(items) else ""
    left = (
        f"{nulls} of {n} values hold a null, {NO_NULL}: left out of the choice; " if nulls else ""
    )
    if deep:
        left += f"{deep} of {n} values would be {TOO_DEEP}: left out of the choice; "
    if wide:
        left += f"{wide} of {n} values hold integers beyond 64 bits, {AS_FLOATS}; "
    return Fit(
        "choice",
        f"{{ choice = [{choices}], weights = [{weights}] }}",
        f"{left}{kept or len(items)} values, weights as observed"
        f" (largest departure from uniform {d:.3f})",
    )


def hashable(v: Any) -> Any:
    """A JSON value as something a Counter can count or a set hold (tables and arrays
    as tuples; each value with its type, so that 1 and true are two), which
    :func:`unhashable` makes the value again. The caller makes sure that the value
    nests no deeper than Python's recursion allows (:func:`nested_deeper`)."""
    if isinstance(v, dict):
        return ("{}", tuple((k, hashable(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("[]", tuple(hashable(x) for x in v))
    return (type(v).__name__, v)


def unhashable(v: Any) -> Any:
    tag, value = v
    if tag == "{}":
        return {k: unhashable(x) for k, x in value}
    if tag == "[]":
        return [unhashable(x) for x in value]
    return value


def _template(values: Sequence[str], seqs: Sequence[int]) -> Fit | None:
    first = _TEMPLATE.fullmatch(values[0])
    if first is None:
        return None
    prefix, _, suffix = first.groups()
    for v, seq in zip(values, seqs, strict=False):
        if v != f"{prefix}{seq}{suffix}":
            return None
    text = "{ template = " + toml_value(f"{_braces(prefix)}{{seq}}{_braces(suffix)}") + " }"
    return Fit("template", text, f"'{prefix}<seq>{suffix}' for every message, n = {len(values)}")


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")
