"""hypothesis strategies for property-testing a client against `sim`: fault plans,
schedules and whole scenarios, and the text to print when a plan makes a test fail.

::

    from hypothesis import given, note, settings
    from simulator.testing.strategies import fault_plans, plan_report

    @settings(max_examples=30, deadline=None)
    @given(plan=fault_plans(connections=3, horizon="30s", step="100ms"))
    def test_my_client_catches_up_after_any_plan(plan):
        note(plan_report(plan, seed=7))   # printed for the minimal failing plan
        ...  # serve a scenario whose faults are to_faults(plan), run the client, check

A failing plan shrinks to fewer faults, earlier, shorter and simpler ones: kinds are
drawn from the simplest (reset) to the most complex (reject), times and durations as
whole steps from 0, parameters from their defaults first.

This module imports hypothesis (a test dependency); nothing else in ``simulator``
imports it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from simulator.core.durations import parse_duration
from simulator.core.flat_plan import (
    FLAT_KINDS,
    FlatPlan,
    PlannedFault,
    duration_text,
    plan_table,
    to_toml,
)
from simulator.core.model import (
    At,
    Burst,
    Every,
    FaultKind,
    FaultLevel,
    Pattern,
    Poisson,
    Scenario,
    Schedule,
    UniformInterval,
)
from simulator.errors import ScenarioError
from simulator.scenario import parse_scenario

__all__ = ["fault_plans", "plan_report", "scenarios", "schedules"]

_MS: Final = 1_000_000

# Parameter values, the default (or the most usual) first: that is where they shrink to.
_CLOSE_CODES: Final = (1000, 1001, 1011, 1012, 1013, 4000)
_MASS_CLOSE_CODES: Final = (1001, 1000, 1012, 1013)
_REASONS: Final = ("", "bye", "service restart")
_BYTES_PER_S: Final = (1000.0, 10_000.0, 100.0, 100_000.0)
_STATUSES: Final = (503, 429, 401, 403)


# ============================================================================ fault plans


def fault_plans(
    *,
    kinds: Sequence[FaultKind] = FLAT_KINDS,
    connections: int = 3,
    max_faults: int = 5,
    min_faults: int = 0,
    horizon: int | str = "1m",
    step: int | str = "1ms",
) -> st.SearchStrategy[FlatPlan]:
    """Flat fault plans (:mod:`simulator.core.flat_plan`), sorted by time.

    - ``kinds``: which of :data:`~simulator.core.flat_plan.FLAT_KINDS` to draw (in that
      order of simplicity, whatever the order given);
    - ``connections``: connection and message faults hit connections ``0`` to
      ``connections - 1`` (connection indexes are handshake attempts, refused ones
      included);
    - ``min_faults``, ``max_faults``: how many faults;
    - ``horizon``: every fault starts before it (ns, or a duration like ``"30s"``);
      durations are at most ``horizon`` too;
    - ``step``: every time and duration is a whole number of steps (ns or a duration).

    Some faults last for good (a stall, a reject, ``duration_ns=None``); a plan shrinks
    towards finite ones. Some connection faults happen when their connection opens
    (``on_open``: a server that accepts and then drops, or never sends); a plan shrinks
    towards faults at a time.
    """
    horizon_ns = _ns("horizon", horizon)
    step_ns = _ns("step", step)
    if step_ns > horizon_ns:
        raise InvalidArgument(f"step={step!r} is longer than horizon={horizon!r}")
    if isinstance(kinds, FaultKind):
        raise InvalidArgument(f"kinds={kinds!r}: must be a sequence of kinds, like [{kinds!r}]")
    bad = [k for k in kinds if k not in FLAT_KINDS]
    if bad or not kinds:
        allowed = ", ".join(f"FaultKind.{k.name}" for k in FLAT_KINDS)
        raise InvalidArgument(f"kinds={list(kinds)!r}: must be a non-empty subset of {allowed}")
    if not _is_int(connections) or connections < 1:
        raise InvalidArgument(f"connections={connections!r}: must be an integer >= 1")
    if not _is_int(min_faults) or min_faults < 0:
        raise InvalidArgument(f"min_faults={min_faults!r}: must be an integer >= 0")
    if not _is_int(max_faults) or max_faults < min_faults:
        raise InvalidArgument(f"Cannot have max_faults={max_faults!r} < min_faults={min_faults!r}")
    ordered = tuple(k for k in FLAT_KINDS if k in kinds)
    times = (horizon_ns - 1) // step_ns  # the last step a fault may start at
    fault = _planned_faults(ordered, connections, times, horizon_ns // step_ns, step_ns)
    return st.lists(fault, min_size=min_faults, max_size=max_faults).map(
        lambda faults: tuple(sorted(faults, key=lambda p: p.at_ns))
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ns(name: str, value: int | str) -> int:
    """A duration argument (ns, or text like ``"30s"``) as ns > 0."""
    if isinstance(value, str):
        try:
            ns = parse_duration(value)
        except ValueError as e:
            raise InvalidArgument(f"{name}={value!r}: {e}") from None
    elif _is_int(value):
        ns = value
    else:
        raise InvalidArgument(f"{name}={value!r}: must be ns (an int) or a duration like '30s'")
    if ns <= 0:
        raise InvalidArgument(f"{name}={value!r}: must be > 0")
    return ns


_INSTANT: Final = (FaultKind.RESET, FaultKind.DISCONNECT, FaultKind.MASS_DISCONNECT)


def _planned_faults(
    kinds: tuple[FaultKind, ...], connections: int, last_start: int, longest: int, step_ns: int
) -> st.SearchStrategy[PlannedFault]:
    """One fault: starting at 0 .. ``last_start`` steps, lasting 1 .. ``longest`` steps.

    Shaped for hypothesis's shrinker, which deletes a list element only when it can
    delete all of its draws at once (five at most, with the list's own): a fault is four
    draws (kind, start, length, and one number for the rest), the same four whatever
    its kind, each shrinking towards the simpler fault."""
    variants = 4 * (longest + 2)  # parameter choices: enough for every kind
    low_bits = 8  # two for "for good" (a quarter), one for "on open" (a half of those)

    @st.composite
    def planned(draw: st.DrawFn) -> PlannedFault:
        kind = draw(st.sampled_from(kinds))
        at_ns = draw(st.integers(0, last_start)) * step_ns
        length = draw(st.integers(1, longest))
        # One number for the rest: a quarter of the faults that may last for good do
        # (the last two bits), half of the connection faults happen on open (the next
        # one), then the connection, then the parameters. It shrinks to a fault at a
        # time that ends, on connection 0, with the default parameters.
        rest, low = divmod(draw(st.integers(0, low_bits * connections * variants - 1)), low_bits)
        on_open, quarter = divmod(low, 4)
        variant, conn = divmod(rest, connections)
        duration: int | None = length * step_ns
        if kind in _INSTANT or (quarter == 3 and kind is not FaultKind.OUTAGE):
            duration = None
        opens = on_open == 1 and kind.level is FaultLevel.CONNECTION
        return PlannedFault(
            0 if opens else at_ns,
            kind,
            None if kind.level is FaultLevel.SERVER else conn,
            duration,
            _params(kind, variant, longest, step_ns),
            on_open=opens,
        )

    return planned()


def _params(kind: FaultKind, v: int, longest: int, step_ns: int) -> tuple[tuple[str, Any], ...]:
    """Parameter choice ``v`` of ``kind``: 0 is the defaults, higher is less usual."""

    def retry(r: int) -> tuple[tuple[str, Any], ...]:
        # 0: none (the default); then 0, 1, 2, ... steps.
        return () if r == 0 else (("retry_after_ns", (r - 1) % (longest + 1) * step_ns),)

    if kind is FaultKind.DISCONNECT:
        return (("code", _CLOSE_CODES[v % 6]), ("reason", _REASONS[v // 6 % 3]))
    if kind is FaultKind.MASS_DISCONNECT:
        return (("code", _MASS_CLOSE_CODES[v % 4]), ("reason", _REASONS[v // 4 % 3]))
    if kind is FaultKind.THROTTLE:
        return (("bytes_per_s", _BYTES_PER_S[v % 4]),)
    if kind is FaultKind.DUPLICATE:
        return (("copies", 1 + v % 3),)
    if kind is FaultKind.OUTAGE:
        return retry(v)
    if kind is FaultKind.REJECT:
        status = _STATUSES[v % 4]
        return (("status", status), *(retry(v // 4) if status in (429, 503) else ()))
    return ()


# ============================================================================ schedules


def schedules(*, max_interval: int | str = "10s") -> st.SearchStrategy[Schedule]:
    """Stream schedules the scenario loader accepts: ``every`` (fixed or ``{ min, max
    }``), ``burst``, ``at`` (with or without ``repeat``) and ``rate`` (Poisson), each
    inside an optional ``start``/``stop`` window, sometimes with a ``first``. Times are
    whole milliseconds; intervals at most ``max_interval``, so that a stream sends at
    most a few thousand messages a second and at least one every ``max_interval`` on
    average."""
    top = _ns("max_interval", max_interval) // _MS
    if top < 1:
        raise InvalidArgument(f"max_interval={max_interval!r}: must be at least 1ms")
    return _schedules(top)


def _ms(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi).map(lambda k: k * _MS)


def _schedules(top: int) -> st.SearchStrategy[Schedule]:
    @st.composite
    def uniform(draw: st.DrawFn) -> Pattern:
        lo = draw(_ms(0, top))
        return UniformInterval(lo, draw(_ms(max(1, lo // _MS), top)))

    @st.composite
    def burst(draw: st.DrawFn) -> Pattern:
        count = draw(st.integers(1, 5))
        spacing = draw(_ms(0, 100))
        return Burst(count, spacing, (count - 1) * spacing + draw(_ms(1, top)))

    @st.composite
    def at(draw: st.DrawFn) -> Pattern:
        offsets = sorted(draw(st.lists(_ms(0, top), min_size=1, max_size=5)))
        repeat = draw(st.none() | _ms(1, top).map(lambda d: offsets[-1] + d))
        return At(tuple(offsets), repeat)

    slowest = 1000 / top  # messages a second, one every `top` ms
    poisson = st.floats(min_value=slowest, max_value=max(100.0, slowest)).map(Poisson)
    patterns: st.SearchStrategy[Pattern] = st.one_of(
        _ms(1, top).map(Every), uniform(), burst(), at(), poisson
    )

    @st.composite
    def schedule(draw: st.DrawFn) -> Schedule:
        pattern = draw(patterns)
        start = draw(st.just(0) | _ms(0, top))
        stop = draw(st.none() | _ms(1, 10 * top).map(lambda d: start + d))
        first = None if isinstance(pattern, At) else draw(st.none() | _ms(0, top))
        return Schedule(pattern, start, stop, first)

    return schedule()


def _schedule_lines(schedule: Schedule) -> list[str]:
    """The keys of a ``[[stream]]`` table that give it ``schedule``."""
    p = schedule.pattern
    if isinstance(p, Every):
        lines = [f"every = {_text(duration_text(p.interval_ns))}"]
    elif isinstance(p, UniformInterval):
        lo, hi = duration_text(p.min_ns), duration_text(p.max_ns)
        lines = [f"every = {{ min = {_text(lo)}, max = {_text(hi)} }}"]
    elif isinstance(p, Poisson):
        lines = [f"rate = {p.rate_per_s!r}"]
    elif isinstance(p, Burst):
        spacing, every = duration_text(p.spacing_ns), duration_text(p.every_ns)
        lines = [
            f"burst = {{ count = {p.count}, spacing = {_text(spacing)}, every = {_text(every)} }}"
        ]
    else:
        offsets = ", ".join(_text(duration_text(o)) for o in p.offsets_ns)
        lines = [f"at = [{offsets}]"]
        if p.repeat_ns is not None:
            lines.append(f"repeat = {_text(duration_text(p.repeat_ns))}")
    if schedule.start_ns:
        lines.append(f"start = {_text(duration_text(schedule.start_ns))}")
    if schedule.stop_ns is not None:
        lines.append(f"stop = {_text(duration_text(schedule.stop_ns))}")
    if schedule.first_ns is not None:
        lines.append(f"first = {_text(duration_text(schedule.first_ns))}")
    return lines


def _text(value: str) -> str:
    return json.dumps(value)


# ============================================================================ scenarios


@st.composite
def _field(draw: st.DrawFn) -> str:
    """One field's value, as TOML: simplest (a constant) first."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return str(draw(st.integers(0, 100)))
    if kind == 1:
        return '{ dist = "counter" }'
    if kind in (2, 3):
        lo, span = draw(st.integers(-100, 100)), draw(st.integers(0, 100))
        dist = "randint" if kind == 2 else "uniform"
        return f'{{ dist = "{dist}", min = {lo}, max = {lo + span} }}'
    if kind == 4:
        values = ["a", "b", "c"][: draw(st.integers(1, 3))]
        return "{ choice = " + json.dumps(values) + " }"
    return '{ dist = "bool" }'


def scenarios(
    *, streams: int = 3, faults: st.SearchStrategy[FlatPlan] | None = None
) -> st.SearchStrategy[Scenario]:
    """Valid scenarios: 1 to ``streams`` streams (named ``s0``, ``s1``, ...) on
    :func:`schedules`, each with up to three small fields, a seed, a fixed epoch
    (2026-01-01), and the faults of a plan drawn from ``faults`` (e.g.
    ``fault_plans()``; none when ``None``).

    Each is written as TOML and read with :func:`~simulator.scenario.parse_scenario`,
    so it is exactly what a file could hold (``Scenario.source`` is
    ``"<hypothesis>"``)."""
    if not _is_int(streams) or streams < 1:
        raise InvalidArgument(f"streams={streams!r}: must be an integer >= 1")
    plans = st.just(()) if faults is None else faults

    @st.composite
    def scenario(draw: st.DrawFn) -> Scenario:
        seed = draw(st.integers(0, 2**32 - 1))
        lines = [
            "[scenario]",
            'name = "generated"',
            f"seed = {seed}",
            "epoch = 2026-01-01T00:00:00Z",
        ]
        for i in range(draw(st.integers(1, streams))):
            lines += ["", "[[stream]]", f'name = "s{i}"', *_schedule_lines(draw(schedules()))]
            fields = draw(st.lists(_field(), max_size=3))
            if fields:
                lines.append("[stream.fields]")
                lines += [f"f{j} = {value}" for j, value in enumerate(fields)]
        plan = draw(plans)
        text = "\n".join(lines) + "\n"
        if plan:
            text += "\n" + to_toml(plan)
        try:
            return parse_scenario(text, "<hypothesis>")
        except ScenarioError as e:  # pragma: no cover - a bug in these strategies
            raise AssertionError(f"scenarios() drew an invalid scenario:\n{e}\n{text}") from e

    return scenario()


# ============================================================================ report


def plan_report(plan: FlatPlan, seed: int) -> str:
    """What to print when ``plan`` (the minimal one hypothesis found) makes a test fail,
    with the scenario served at ``seed``: the plan as a table and as ``[[fault]]``
    tables, and how to run it again with ``sim plan`` and ``sim run``. Pass it to
    ``hypothesis.note`` in the test, which prints it for the failing example only."""
    count = f"{len(plan)} fault{'' if len(plan) == 1 else 's'}" if plan else "no faults"
    lines = [f"fault plan: {count}, scenario seed {seed}"]
    rerun = (
        (f"run_sim(check, SCENARIO, seed={seed})", "this run again (random.seed(0) first,"),
        ("", "as hypothesis does, if your client draws randoms)"),
    )
    commands: tuple[tuple[str, str], ...]
    if not plan:
        lines += ["(the test fails with no faults at all)", "", "To run it again:"]
        commands = (*rerun, (f"sim run SCENARIO --seed {seed}", "by hand"))
    else:
        lines += [f"  {line}" for line in plan_table(plan)]
        lines += [
            "",
            "As [[fault]] tables (times are scenario time since the server started;",
            "connections are handshake attempts, from 0; 'open', a table with no time:",
            "when that connection opens):",
            "",
            to_toml(plan).rstrip("\n"),
            "",
            "To run it again, append these tables to the scenario file (without its own",
            "[[fault]] tables), then:",
        ]
        commands = (
            *rerun,
            ("sim plan SCENARIO --flat", "this plan, as the server will run it"),
            (f"sim run SCENARIO --seed {seed}", "by hand: its clock starts when it starts,"),
            ("", "so move a fault at 0s to when your client is there"),
        )
    width = max(len(command) for command, _ in commands)
    lines += [f"  {command.ljust(width)}   # {why}" for command, why in commands]
    return "\n".join(lines) + "\n"
