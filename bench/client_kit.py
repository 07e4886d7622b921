"""Full fault-plan examples per second of the client kit (issue #10, "Speed").

Target (from the issue): "At least 100 full fault-plan examples per second on this
machine, each covering at least two minutes of scenario time with at least 3 faults, in
virtual time; real-socket mode at least 5 examples per second at speed 100."

An example is what ``tests/client/test_properties.py`` runs for each hypothesis example,
stretched to two minutes: one ``run_sim`` of the scenario with a fault plan, the
reference ``ResilientClient`` (the test's config: heartbeat 1 s + 1 s, backoff 0.5 s to
4 s) started at 0 and subscribed to every stream, the server's view of its
subscriptions sampled every 100 ms (the test samples every 500 ms), run until max(120 s,
the comeback bound), closed, 6 s more, then the test's six properties (a)-(f) checked
on what happened. The samples are read as the virtual clock moves
(``VirtualClockLoop.watch``: no timer, no loop iteration of their own), or over real
sockets from a chain of timer callbacks. The checks
are the test's own functions, imported from it, except (c), which the test writes for
its one-stream subscription and is restated here for any set.

Plans are drawn from a seeded ``random.Random`` (the same plan for example ``i`` in
every row and rep): 3-5 faults of the test's kinds (6 when the last is a reset and a
reject), about 20 s apart from 10 s to 100 s, each aimed at the connection that
should be live then, so that each one is carried out. The table counts what the
server's fault log shows: "done" is the number of plan entries that acted.

Rows:

- **virtual**: ``run_sim`` on its virtual clock over in-memory transports, one example
  after another; ``scenarios/energy-dashboard.toml`` (5 streams, 5-30 s apart: the
  user-like case) and a busy feed (the property test's: 2 streams every 200 ms);
- **real x100**: ``run_sim(real_sockets=True, speed=100)`` over 127.0.0.1 on the wall
  clock, the client's times divided by 100 (its clock is the loop's, in real seconds),
  event times converted back to scenario time for the checks. Two minutes take 1.26 s
  of wall time, so one at a time cannot reach 5/s: the ``loop K`` rows run K examples
  at once on one event loop (``serve`` directly, K servers and clients under a
  semaphore), the ``threads K`` rows K threads each running ``run_sim`` (each its own
  loop). On one shared loop the "no task left" part of (f) is checked once after all
  examples, not per example. Over real sockets ``run_sim`` runs the check under
  ``asyncio.wait_for``, whose outer task is not counted as one the client left;
- **virtual, N processes**: the virtual dashboard row shared among N worker processes
  (what ``pytest -n N`` would do with separate tests), to show what the machine holds.

    .venv/bin/python bench/client_kit.py                        # every row, 3 reps
    .venv/bin/python bench/client_kit.py --modes virtual --examples 500
    .venv/bin/python bench/client_kit.py --modes real --concurrency 8,16
    .venv/bin/python bench/client_kit.py --profile dashboard    # cProfile of one example

Every run is bounded: ``timeout_real_s`` per example, and ``--max-row-s`` per rep (no
new example starts after it; the row says how many ran).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import io
import itertools
import json
import os
import pstats
import random
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.client.test_properties

import orjson  # noqa: E402

from simulator.client import (  # noqa: E402
    ClientConfig,
    ClientEvent,
    ResilientClient,
    Retry,
    StateChanged,
)
from simulator.core.backoff import BackoffPolicy  # noqa: E402
from simulator.core.flat_plan import FlatPlan, PlannedFault, to_faults  # noqa: E402
from simulator.core.model import FaultKind, Scenario  # noqa: E402
from simulator.net.server import serve  # noqa: E402
from simulator.testing.harness import RunningSim, load, run_sim  # noqa: E402
from simulator.testing.virtual_time import VirtualClockLoop  # noqa: E402
from tests.client import test_properties as props  # noqa: E402

S = 1_000_000_000
TARGET_VIRTUAL = 100.0  # examples/s
TARGET_REAL = 5.0  # examples/s at speed 100
MIN_SCENARIO_S = 120.0  # "at least two minutes of scenario time"
MIN_FAULTS = 3
SPEED = 100.0
SAMPLE_S = 0.1  # the property test samples the server's view every 100 ms
DASHBOARD = ROOT / "scenarios" / "energy-dashboard.toml"
#: The property test's feed: 2 streams every 200 ms.
BUSY: dict[str, Any] = {**props.FEED, "fault": []}

#: Kinds that end the live connection (the client comes back as the next index).
_ENDERS = (FaultKind.RESET, FaultKind.DISCONNECT, FaultKind.MASS_DISCONNECT, FaultKind.STALL)
_RETRYABLE_CODES = (1000, 1001, 1011, 1012, 1013)


# ----------------------------------------------------------------------------- plans


def make_plan(rng: random.Random) -> FlatPlan:
    """3-5 faults of the property test's kinds, one every ~20 s from 10 s on, each on the
    connection that should be live then; an outage or a reset-then-reject (handshakes
    refused while the client comes back) only last, where they do not shift the
    connection indexes of later faults. Every fault is finite and retryable."""
    n = rng.randint(MIN_FAULTS, 5)
    live = 0
    plan: list[PlannedFault] = []
    for i in range(n):
        # From 10 s on: over real sockets at x100, starting 16 servers and clients at
        # once takes tens of ms of wall time, seconds of scenario time, and a fault due
        # before the first connection opens would not act.
        at = (10 + 20 * i) * S + rng.randrange(8_000) * 1_000_000  # + 0-8 s, 1 ms steps
        last = i == n - 1
        kinds = [*_ENDERS, FaultKind.DROP, FaultKind.DUPLICATE]
        if last:
            kinds += [FaultKind.OUTAGE, FaultKind.REJECT]
        kind = rng.choice(kinds)
        if kind is FaultKind.RESET:
            plan.append(PlannedFault(at, kind, conn=live))
        elif kind is FaultKind.DISCONNECT:
            code = rng.choice(_RETRYABLE_CODES)
            plan.append(PlannedFault(at, kind, conn=live, params=(("code", code),)))
        elif kind is FaultKind.MASS_DISCONNECT:
            plan.append(PlannedFault(at, kind, params=(("code", rng.choice((1001, 1012))),)))
        elif kind is FaultKind.STALL:
            # Longer than heartbeat interval + timeout (2 s): always detected.
            plan.append(PlannedFault(at, kind, conn=live, duration_ns=rng.randint(3, 15) * S))
        elif kind is FaultKind.DROP:
            # >= 6 s: every window holds a message of a 5 s stream.
            plan.append(PlannedFault(at, kind, conn=live, duration_ns=rng.randint(6, 15) * S))
        elif kind is FaultKind.DUPLICATE:
            copies = rng.randint(1, 3)
            duration = rng.randint(6, 15) * S
            plan.append(
                PlannedFault(
                    at, kind, conn=live, duration_ns=duration, params=(("copies", copies),)
                )
            )
        elif kind is FaultKind.OUTAGE:
            plan.append(PlannedFault(at, kind, duration_ns=rng.randint(3, 15) * S))
        else:  # REJECT: the live connection is reset, its comeback refused for a while
            plan.append(PlannedFault(at, FaultKind.RESET, conn=live))
            status = rng.choice((503, 429))
            plan.append(
                PlannedFault(
                    at, kind, duration_ns=rng.randint(3, 15) * S, params=(("status", status),)
                )
            )
        if kind in _ENDERS:
            live += 1
    return tuple(sorted(plan, key=lambda p: p.at_ns))


def plans_for(n: int, seed: int) -> list[FlatPlan]:
    return [make_plan(random.Random(seed * 1_000_003 + i)) for i in range(n)]


# ----------------------------------------------------------------------------- one example


def scaled(config: ClientConfig, speed: float) -> ClientConfig:
    """``config`` with every time divided by ``speed``: the client's clock is the loop's,
    in real seconds, while the server's runs ``speed`` times faster."""
    if speed == 1.0:
        return config
    b = config.backoff
    backoff = BackoffPolicy(
        base_s=b.base_s / speed,
        factor=b.factor,
        cap_s=b.cap_s / speed,
        stable_s=b.stable_s / speed,
        retry_after_cap_s=b.retry_after_cap_s / speed,
    )
    interval = config.heartbeat_interval_s
    return dataclasses.replace(
        config,
        backoff=backoff,
        heartbeat_interval_s=None if interval is None else interval / speed,
        heartbeat_timeout_s=config.heartbeat_timeout_s / speed,
    )


def _in_scenario_time(events: list[ClientEvent], origin: float, speed: float) -> list[ClientEvent]:
    """Loop times to scenario times (``(t - origin) * speed``), delays times ``speed``."""
    out: list[ClientEvent] = []
    for e in events:
        e = dataclasses.replace(e, at=(e.at - origin) * speed)
        if isinstance(e, Retry) or (isinstance(e, StateChanged) and e.delay_s is not None):
            e = dataclasses.replace(e, delay_s=e.delay_s * speed)
        out.append(e)
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """One example: what it cost, what it covered, whether the properties held."""

    wall_s: float  # run_sim and the checks
    check_s: float  # the property checks alone
    scenario_s: float
    faults_planned: int
    faults_done: int  # distinct plan entries in the server's fault log
    messages: int  # sent to the client's connections
    failed: str | None  # the first property that failed, and why


def make_check(
    plan: FlatPlan,
    seed: int,
    subscriptions: Sequence[str],
    speed: float,
    *,
    sample_s: float = SAMPLE_S,
    count_tasks: bool = True,
) -> Callable[[RunningSim], Awaitable[props.Run]]:
    """The property test's ``run_client`` check, run to at least two minutes, sampling
    the server's view of the subscriptions every ``sample_s`` of scenario time."""
    config = scaled(props.CONFIG, speed)

    async def check(sim: RunningSim) -> props.Run:
        loop = asyncio.get_running_loop()
        origin = loop.time() - sim.now() / speed  # loop time of scenario time 0
        client = ResilientClient(
            sim.url,
            config=config,
            subscriptions=sorted(subscriptions),
            seed=seed,
            open_transport=sim.open_transport,
        )
        events: list[ClientEvent] = []
        client.listen(events.append)
        subs: dict[int, list[frozenset[str] | None]] = {}

        def sample(times: int = 1) -> None:
            """``times`` samples of the state now (of as many instants)."""
            for index, served in sim.server.clients.items():
                subs.setdefault(index, []).extend([served.subscriptions] * times)

        await client.start()
        bound = props.comeback_bound_s(plan)
        end = max(MIN_SCENARIO_S, bound)
        stop_sampling = _sample_every(loop, sample_s / speed, sample)
        await sim.sleep_until(bound)
        state_at_bound = client.state
        await sim.sleep_until(end)
        stop_sampling()
        sample()
        final_conn = max(sim.server.clients, default=None)
        await client.close()
        await sim.sleep(max(props.POLICY.cap_s, props.POLICY.retry_after_cap_s) + 1)
        # run_sim over real sockets runs the check under asyncio.wait_for, whose outer
        # task is the harness's, not the client's: not counted.
        others = (
            [
                t
                for t in asyncio.all_tasks()
                if t is not asyncio.current_task() and _coro_name(t) != "wait_for"
            ]
            if count_tasks
            else []
        )
        sent = []
        for s in sim.server.sent or []:
            envelope = orjson.loads(s.payload)
            sent.append((s.conn, s.stream, envelope["seq"], s.t_ns))
        if speed != 1.0:
            events = _in_scenario_time(events, origin, speed)
        return props.Run(
            events,
            state_at_bound,
            bound,
            list(sim.injected),
            sent,
            final_conn,
            subs,
            len(others),
            len(sim.server.clients),
            client.state,
        )

    return check


def _sample_every(
    loop: asyncio.AbstractEventLoop, interval: float, sample: Callable[[int], None]
) -> Callable[[], None]:
    """Sample now and every ``interval`` of loop time (``sample(n)`` takes ``n`` samples
    of the state now); return what stops it.

    On a virtual clock the samples are taken as the clock moves (``watch``): nothing runs
    between two moves, so the state then is the state at every instant the move skips
    over, and it costs no loop iteration. Otherwise a chain of timer callbacks (not a
    task that sleeps: one loop iteration a sample instead of two, and no task step)."""
    start = loop.time()
    if isinstance(loop, VirtualClockLoop):
        taken = 0

        def catch_up(_from: float, to: float) -> None:
            nonlocal taken
            due = taken
            while start + due * interval < to:
                due += 1
            if due > taken:
                sample(due - taken)
                taken = due

        sample(1)
        taken = 1
        return loop.watch(catch_up)

    timer: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal timer
        sample(1)
        timer = loop.call_later(interval, tick)

    tick()
    return lambda: timer.cancel() if timer is not None else None


def _coro_name(task: asyncio.Task[Any]) -> str:
    return getattr(task.get_coro(), "__qualname__", "")


def subscriptions_restored(run: props.Run, wanted: frozenset[str]) -> None:
    """(c), as the test states it, for the set ``wanted``."""
    assert run.final_conn is not None, "never connected"
    for conn, samples in run.server_subscriptions.items():
        known = [s for s in samples if s is not None]
        assert all(s == wanted for s in known), f"connection {conn} had {set(known)}"
    assert run.server_subscriptions[run.final_conn][-1] == wanted, (
        f"the surviving connection {run.final_conn} has "
        f"{run.server_subscriptions[run.final_conn][-1]}"
    )


def judge(
    run: props.Run, wanted: frozenset[str], scenario_s: float, start: float, plan: FlatPlan
) -> Outcome:
    """Check the six properties on ``run`` (all of them, so that every example costs
    the same work); ``start`` is when the example began, on ``time.perf_counter``."""
    checks: list[tuple[str, Callable[[props.Run], None]]] = [
        ("comes_back", props.comes_back),
        ("exactly_once_and_gaps_explained", props.exactly_once_and_gaps_explained),
        ("subscriptions_restored", lambda r: subscriptions_restored(r, wanted)),
        ("stalls_detected", props.stalls_detected),
        ("delays_within_bounds", props.delays_within_bounds),
        ("nothing_left", props.nothing_left),
    ]
    failed = None
    checked = time.perf_counter()
    for name, prop in checks:
        try:
            prop(run)
        except AssertionError as e:
            failed = failed or f"{name}: {e}"
    end = time.perf_counter()
    done = len({i.fault for i in run.injected})
    return Outcome(end - start, end - checked, scenario_s, len(plan), done, len(run.sent), failed)


# ----------------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True, slots=True)
class Feed:
    label: str
    scenario: Scenario
    subscriptions: frozenset[str]


def feed(label: str, source: Any) -> Feed:
    scenario = load(source)
    return Feed(label, scenario, frozenset(s.name for s in scenario.streams))


def one_example(f: Feed, plan: FlatPlan, seed: int, *, real: bool, sample_s: float) -> Outcome:
    """One example through ``run_sim``: virtual (in memory) or real sockets at x100."""
    speed = SPEED if real else 1.0
    check = make_check(plan, seed, sorted(f.subscriptions), speed, sample_s=sample_s)
    holder: dict[str, float] = {}

    async def timed(sim: RunningSim) -> props.Run:
        run = await check(sim)
        holder["scenario_s"] = sim.now()
        return run

    start = time.perf_counter()
    faults = to_faults(plan)
    if real:
        timeout = MIN_SCENARIO_S * 2 / SPEED + 30.0
        run = run_sim(
            timed,
            f.scenario,
            seed=seed,
            faults=faults,
            real_sockets=True,
            speed=SPEED,
            timeout_real_s=timeout,
        )
    else:
        run = run_sim(timed, f.scenario, seed=seed, faults=faults, timeout_real_s=30.0)
    return judge(run, f.subscriptions, holder["scenario_s"], start, plan)


@dataclasses.dataclass(frozen=True, slots=True)
class Rep:
    wanted: int
    wall_s: float
    cpu_s: float  # user + system of every process that ran examples
    outcomes: list[Outcome]

    @property
    def examples(self) -> int:
        return len(self.outcomes)

    @property
    def rate(self) -> float:
        return self.examples / self.wall_s if self.wall_s else 0.0


Runner = Callable[[Feed, list[FlatPlan], argparse.Namespace], Rep]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def sequential(real: bool) -> Runner:
    """One example after another, in this process."""

    def go(f: Feed, plans: list[FlatPlan], args: argparse.Namespace) -> Rep:
        out = []
        start, cpu = time.perf_counter(), _cpu()
        for i, plan in enumerate(plans):
            if time.perf_counter() - start > args.max_row_s:
                break
            out.append(one_example(f, plan, i, real=real, sample_s=args.sample_s))
        return Rep(len(plans), time.perf_counter() - start, _cpu() - cpu, out)

    return go


def threaded(k: int) -> Runner:
    """``k`` threads, each running ``run_sim`` over real sockets (its own loop) on the
    next plan."""

    def go(f: Feed, plans: list[FlatPlan], args: argparse.Namespace) -> Rep:
        out: list[Outcome] = []
        errors: list[str] = []
        lock = threading.Lock()
        counter = itertools.count()
        start, cpu = time.perf_counter(), _cpu()

        def worker() -> None:
            while time.perf_counter() - start <= args.max_row_s:
                with lock:
                    i = next(counter)
                if i >= len(plans):
                    return
                try:
                    result = one_example(f, plans[i], i, real=True, sample_s=args.sample_s)
                except Exception:  # that example is lost and said so, the row goes on
                    with lock:
                        errors.append(traceback.format_exc(limit=3))
                    continue
                with lock:
                    out.append(result)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.max_row_s + 60)
        wall = time.perf_counter() - start
        for e in errors[:1]:
            print(f"# threads {k}: {len(errors)} examples raised; first:\n{e}", file=sys.stderr)
        return Rep(len(plans), wall, _cpu() - cpu, out)

    return go


def shared_loop(k: int) -> Runner:
    """Up to ``k`` examples at once on one event loop over real sockets: a server
    (``serve``, as ``run_sim`` starts it) and a client each."""

    def go(f: Feed, plans: list[FlatPlan], args: argparse.Namespace) -> Rep:
        async def example(
            i: int, plan: FlatPlan, gate: asyncio.Semaphore, t0: float
        ) -> Outcome | None:
            async with gate:
                if time.perf_counter() - t0 > args.max_row_s:
                    return None
                check = make_check(
                    plan,
                    i,
                    sorted(f.subscriptions),
                    SPEED,
                    sample_s=args.sample_s,
                    count_tasks=False,
                )
                scenario = dataclasses.replace(f.scenario, faults=to_faults(plan))
                start = time.perf_counter()
                async with serve(
                    scenario,
                    host="127.0.0.1",
                    port=0,
                    seed=i,
                    speed=SPEED,
                    epoch_ns=0,
                    log_sends=True,
                ) as server:
                    sim = RunningSim(server, server.url, None, SPEED)
                    run = await asyncio.wait_for(check(sim), MIN_SCENARIO_S * 2 / SPEED + 30)
                    scenario_s = sim.now()
                return judge(run, f.subscriptions, scenario_s, start, plan)

        async def main() -> list[Outcome]:
            gate = asyncio.Semaphore(k)
            t0 = time.perf_counter()
            results = await asyncio.gather(*(example(i, p, gate, t0) for i, p in enumerate(plans)))
            # (f)'s "no task left", for all the examples at once (main's own task and
            # asyncio.run's wait_for are the only ones that may be).
            left = [
                t
                for t in asyncio.all_tasks()
                if t is not asyncio.current_task() and _coro_name(t) != "wait_for"
            ]
            if left:
                print(f"# loop {k}: {len(left)} tasks left after every example", file=sys.stderr)
            return [r for r in results if r is not None]

        start, cpu = time.perf_counter(), _cpu()
        out = asyncio.run(asyncio.wait_for(main(), args.max_row_s + 60))
        return Rep(len(plans), time.perf_counter() - start, _cpu() - cpu, out)

    return go


_WORKER: dict[str, Any] = {}


def _worker_init(label: str, source: Any) -> None:
    _WORKER["feed"] = feed(label, source)


def _worker_run(job: tuple[list[int], int, float]) -> tuple[list[Outcome], float]:
    indexes, seed, sample_s = job
    f: Feed = _WORKER["feed"]
    plans = plans_for(max(indexes) + 1, seed)
    cpu = _cpu()
    out = [one_example(f, plans[i], i, real=False, sample_s=sample_s) for i in indexes]
    return out, _cpu() - cpu


def processes(n: int, source: Any) -> Runner:
    """Virtual examples shared among ``n`` worker processes (each a whole interpreter,
    as ``pytest -n`` would run separate tests), started and warmed up before the clock
    starts."""
    import multiprocessing

    def go(f: Feed, plans: list[FlatPlan], args: argparse.Namespace) -> Rep:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(n, _worker_init, (f.label, source)) as pool:
            # Warm-up: one example in each worker (imports, caches), not timed.
            pool.map(_worker_run, [([0], args.seed, args.sample_s)] * n, chunksize=1)
            jobs = [(list(range(w, len(plans), n)), args.seed, args.sample_s) for w in range(n)]
            start = time.perf_counter()
            results = pool.map_async(_worker_run, jobs, chunksize=1).get(args.max_row_s + 60)
            wall = time.perf_counter() - start
        out = [o for part, _ in results for o in part]
        return Rep(len(plans), wall, sum(c for _, c in results), out)

    return go


# ----------------------------------------------------------------------------- profile


def profile(f: Feed, plans: list[FlatPlan], examples: int, sample_s: float) -> None:
    """cProfile ``examples`` virtual examples (after one warm-up) and print the top 25
    by cumulative time, then the top 20 by own time."""
    one_example(f, plans[0], 0, real=False, sample_s=sample_s)  # warm-up: imports, caches
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    for i in range(examples):
        one_example(f, plans[i % len(plans)], i, real=False, sample_s=sample_s)
    prof.disable()
    wall = time.perf_counter() - start
    print(
        f"# profile: {examples} virtual example(s) of {f.label}, "
        f"{wall * 1000 / examples:.1f} ms each under cProfile"
    )
    for key, n in (("cumulative", 25), ("tottime", 20)):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(n)
        print(buf.getvalue())


# ----------------------------------------------------------------------------- main


def _list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _json_row(mode: str, f: Feed, rep: int, r: Rep, info: dict[str, Any]) -> dict[str, Any]:
    o = r.outcomes
    return {
        "bench": "client_kit",
        "mode": mode,
        "scenario": f.label,
        "rep": rep,
        "examples": r.examples,
        "wanted": r.wanted,
        "wall_s": r.wall_s,
        "cpu_s": r.cpu_s,
        "examples_per_s": r.rate,
        "check_s_mean": statistics.fmean(x.check_s for x in o),
        "scenario_s_mean": statistics.fmean(x.scenario_s for x in o),
        "faults_done_min": min(x.faults_done for x in o),
        "messages_mean": statistics.fmean(x.messages for x in o),
        "failures": sum(x.failed is not None for x in o),
        "machine_info": {**info, "load_avg_now": round(os.getloadavg()[0], 2)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200, help="examples per virtual rep")
    ap.add_argument("--real-examples", type=int, default=20, help="examples per real rep")
    ap.add_argument("--reps", type=int, default=3, help="reps per row (median shown)")
    ap.add_argument("--modes", default="virtual,real", help="virtual, real, or both")
    ap.add_argument(
        "--processes",
        type=int,
        default=2,
        help="also run the virtual energy-dashboard row in this many worker processes (0: not)",
    )
    ap.add_argument(
        "--concurrency",
        default="8,16",
        help="K for the real rows that run K examples at once (comma-separated)",
    )
    ap.add_argument(
        "--ways",
        default="loop,threads",
        help="how those rows run K at once: loop, threads, or both",
    )
    ap.add_argument(
        "--sample-s",
        type=float,
        default=SAMPLE_S,
        help="scenario seconds between samples of the server's subscriptions "
        "(the property test: 0.1)",
    )
    ap.add_argument("--seed", type=int, default=1, help="seeds the plans")
    ap.add_argument(
        "--max-row-s",
        type=float,
        default=300.0,
        help="no new example starts after this many seconds of a rep",
    )
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")
    ap.add_argument(
        "--profile",
        choices=("dashboard", "busy"),
        default=None,
        help="cProfile virtual examples of this feed instead of the table",
    )
    ap.add_argument("--profile-examples", type=int, default=1)
    args = ap.parse_args(argv)
    if min(args.examples, args.real_examples, args.reps, args.profile_examples) < 1:
        ap.error("--examples, --real-examples, --reps and --profile-examples must be >= 1")
    if not args.sample_s > 0:
        ap.error(f"--sample-s={args.sample_s!r}: must be > 0")
    modes = set(_list(args.modes))
    if not modes or not modes <= {"virtual", "real"}:
        ap.error(f"--modes={args.modes!r}: must be virtual, real, or both")
    ways = set(_list(args.ways))
    if not ways <= {"loop", "threads"}:
        ap.error(f"--ways={args.ways!r}: must be loop, threads, or both")
    try:
        concurrency = sorted({int(k) for k in _list(args.concurrency)} - {1})
    except ValueError:
        ap.error(f"--concurrency={args.concurrency!r}: must be integers")
    if any(k < 1 for k in concurrency):
        ap.error(f"--concurrency={args.concurrency!r}: must be >= 1")

    dashboard = feed("energy-dashboard", DASHBOARD)
    busy = feed("busy (2 x 200 ms)", BUSY)
    if args.profile:
        f = dashboard if args.profile == "dashboard" else busy
        plans = plans_for(args.profile_examples, args.seed)
        profile(f, plans, args.profile_examples, args.sample_s)
        return 0

    info = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_avg": round(os.getloadavg()[0], 2),
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "sample_s": args.sample_s,
    }
    print(f"# client kit: {json.dumps(info)}", file=sys.stderr)
    rows: list[tuple[str, Feed, Runner, int]] = []
    if "virtual" in modes:
        rows.append(("virtual", dashboard, sequential(False), args.examples))
        if args.processes > 1:
            rows.append(
                (
                    f"virtual, {args.processes} processes",
                    dashboard,
                    processes(args.processes, DASHBOARD),
                    args.examples,
                )
            )
        rows.append(("virtual", busy, sequential(False), args.examples))
    if "real" in modes:
        rows.append(("real x100, 1 at a time", dashboard, sequential(True), args.real_examples))
        for k in concurrency:
            if "loop" in ways:
                rows.append(
                    (f"real x100, {k} on one loop", dashboard, shared_loop(k), args.real_examples)
                )
            if "threads" in ways:
                rows.append((f"real x100, {k} threads", dashboard, threaded(k), args.real_examples))

    print(
        f"{os.cpu_count()} CPUs, Python {info['python']}, median of {args.reps} reps, "
        f"load average {info['load_avg']:.2f} at the start, {info['utc']} UTC\n"
    )
    print(
        "| mode | scenario | examples/s median | min | max | ms per example | "
        "CPU ms per example | of which checks ms | scenario s per example | "
        "faults per example (planned / done, fewest done) | messages per example | "
        "property failures |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    summary: dict[str, float] = {}
    for mode, f, runner, wanted in rows:
        plans = plans_for(wanted, args.seed)
        reps: list[Rep] = []
        for rep in range(args.reps):
            r = runner(f, plans, args)
            reps.append(r)
            if args.out is not None and r.outcomes:
                with args.out.open("a") as fh:
                    fh.write(json.dumps(_json_row(mode, f, rep + 1, r, info)) + "\n")
        every = [o for r in reps for o in r.outcomes]
        if not every:
            print(f"| {mode} | {f.label} | no example finished | | | | | | | | | |")
            continue
        rates = [r.rate for r in reps]
        med = statistics.median(rates)
        summary[f"{mode} / {f.label}"] = med
        fewest = min(r.examples for r in reps)
        cut = f" (cut at {fewest}/{wanted})" if fewest < wanted else ""
        failures = [o.failed for o in every if o.failed is not None]
        cpu_ms = 1000 * statistics.median(r.cpu_s / r.examples for r in reps if r.examples)
        print(
            f"| {mode} | {f.label} | {med:,.1f}{cut} | {min(rates):,.1f} | {max(rates):,.1f} | "
            f"{1000 / med:,.1f} | {cpu_ms:,.1f} | "
            f"{1000 * statistics.fmean(o.check_s for o in every):,.1f} | "
            f"{statistics.fmean(o.scenario_s for o in every):.1f} | "
            f"{statistics.fmean(o.faults_planned for o in every):.1f} / "
            f"{statistics.fmean(o.faults_done for o in every):.1f}, "
            f"{min(o.faults_done for o in every)} | "
            f"{statistics.fmean(o.messages for o in every):,.0f} | "
            f"{len(failures)} of {len(every)} |",
            flush=True,
        )
        for msg in sorted(set(failures))[:3]:
            print(f"# {mode} {f.label}: {msg[:300]}", file=sys.stderr)
    print()
    if "virtual" in modes:
        # The issue asks it "on this machine": its two cores are what pytest -n 2 uses.
        # Both figures are said, each with its verdict.
        for label, key in (
            ("one process", f"virtual / {dashboard.label}"),
            (
                f"{args.processes} processes (the machine's cores)",
                f"virtual, {args.processes} processes / {dashboard.label}",
            ),
        ):
            if key not in summary:
                continue
            v = summary[key]
            verdict = "met" if v >= TARGET_VIRTUAL else "not met"
            print(
                f"Target >= {TARGET_VIRTUAL:.0f} examples/s in virtual time, {label} "
                f"(energy-dashboard): **{verdict}** ({v:,.1f}, {v / TARGET_VIRTUAL:.2f}x)"
            )
    real_rows = {k: v for k, v in summary.items() if k.startswith("real")}
    if real_rows:
        best = max(real_rows, key=real_rows.__getitem__)
        verdict = "met" if real_rows[best] >= TARGET_REAL else "not met"
        print(
            f"Target >= {TARGET_REAL:.0f} examples/s over real sockets at x100: **{verdict}** "
            f"(best: {best}, {real_rows[best]:,.2f})"
        )
    # Other processes on the machine slow every figure down: check this is near 0.
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
