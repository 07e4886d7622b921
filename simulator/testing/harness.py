"""Run a client against a live `sim` server, in virtual time (in-memory transports, the
default) or over real loopback sockets (time compressed by ``speed``).

::

    from simulator.testing import run_sim

    async def check(sim: RunningSim) -> None:
        client = ResilientClient(sim.url, open_transport=sim.open_transport, seed=0)
        await client.start()
        await sim.sleep(120)          # two minutes of scenario time
        await client.close()
        assert sim.sent_to(0)          # what connection 0 was sent

    run_sim(check, "scenarios/outage.toml", seed=7)

Under hypothesis the fault plan and seed of every example are noted, so a failure
prints the minimal plan as ``[[fault]]`` TOML and the seed that reproduce it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from simulator.core.model import Fault, Scenario
from simulator.errors import ConnectError, SimError, UsageError
from simulator.net.fanout import Sent
from simulator.net.faulting import Injected
from simulator.net.server import SimServer, serve
from simulator.net.wire_client import OpenTransport
from simulator.testing.virtual_time import RealTimeExceeded, run

T = TypeVar("T")

#: Added to what a check raised when no handshake reached an in-memory server: most
#: likely a client that connected on its own (to ``ws://memory.invalid/``, which no
#: client can reach), and timed out.
NO_HANDSHAKE_HINT = (
    "sim: no handshake reached the server. In memory (run_sim's default) a client must "
    "connect through sim.open_transport; one that cannot needs run_sim(..., "
    "real_sockets=True, virtual_time=True) (docs/testing-your-client.md)"
)
#: Handshakes at one instant of virtual time past which a run stops: a client that
#: reconnects with no delay at all keeps the loop busy, and the virtual clock never
#: moves on (far more than any number of clients a test connects at once).
STORM_HANDSHAKES = 10_000


class ReconnectStorm(SimError, AssertionError):
    """A client made :data:`STORM_HANDSHAKES` handshakes at one instant of virtual time:
    it reconnects in a loop with no delay (no backoff), which keeps the virtual clock
    still. An assertion failure: the client's bug, found (and shrunk, under hypothesis)."""

    def __init__(self, handshakes: int, at_s: float) -> None:
        self.handshakes = handshakes
        self.at_s = at_s
        super().__init__(
            f"{handshakes:,} handshakes at scenario time {at_s:g} s with no time passing "
            "between them: a client reconnects in a loop with no delay (no backoff), so "
            "virtual time cannot move on; against a real server, a reconnect storm"
        )


#: What a scenario may be given as: a loaded one, a TOML file, or a dict of the tables
#: a TOML file would hold.
ScenarioLike = Scenario | str | Path | Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class RunningSim:
    """The server a check runs against. Connect to ``url``, passing ``open_transport``
    to the client when it is not ``None`` (in-memory transports: there is no socket,
    and ``url`` is ``ws://memory.invalid/``, which no client can open by itself: a
    client that cannot take ``open_transport`` needs ``run_sim(..., real_sockets=True,
    virtual_time=True)``)."""

    server: SimServer
    url: str
    open_transport: OpenTransport | None
    speed: float

    @property
    def injected(self) -> list[Injected]:
        """Every fault carried out so far, in order: the fault log (the scenario's
        faults and those triggered on demand, through the control endpoint)."""
        both = [*self.server.injected, *self.server.on_demand.injected]
        return sorted(both, key=lambda i: i.t_ns)  # stable: each log's order kept

    def sent_to(self, conn: int) -> list[Sent]:
        """Every message the timeline handed connection ``conn`` so far, before its
        message faults: a dropped one is there (and in :attr:`injected` as a ``drop``),
        a duplicated one is there once (its copies are ``duplicate`` records)."""
        sent = self.server.sent or []
        return [s for s in sent if s.conn == conn]

    def handshakes(self) -> list[float]:
        """The scenario time at which every handshake attempt so far arrived, ascending:
        accepted, refused (by a fault, the control endpoint or ``max_connections``) or
        delayed (whether or not the client waited for the answer). What properties such
        as "never a tight reconnect loop" are checked on, from the server's side: they
        hold for any client, in any language."""
        return [t / 1e9 for t in self.server.attempts_ns or []]

    def now(self) -> float:
        """Scenario time now, in seconds since the server started."""
        return self.server.virtual_ns() / 1e9

    async def sleep(self, scenario_s: float) -> None:
        """Wait ``scenario_s`` seconds of scenario time."""
        await asyncio.sleep(scenario_s / self.speed)

    async def sleep_until(self, scenario_s: float) -> None:
        """Wait until scenario time ``scenario_s``."""
        await asyncio.sleep(max(0.0, scenario_s - self.now()) / self.speed)


def load(scenario: ScenarioLike) -> Scenario:
    """``scenario`` as a :class:`Scenario`: loaded, read from a TOML file, or built from
    a dict of TOML tables."""
    from simulator.scenario import load_scenario, scenario_from_dict

    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, Mapping):
        return scenario_from_dict(scenario)
    return load_scenario(scenario)


def run_sim(
    check: Callable[[RunningSim], Awaitable[T]],
    scenario: ScenarioLike,
    *,
    seed: int | None = None,
    faults: Sequence[Fault] | None = None,
    real_sockets: bool = False,
    virtual_time: bool | None = None,
    speed: float = 1.0,
    epoch_ns: int | None = None,
    timeout_real_s: float = 60.0,
) -> T:
    """Serve ``scenario`` (its ``[[fault]]``s replaced by ``faults`` when given) with
    ``seed``, run ``check`` against it, stop the server, and return what ``check``
    returned.

    By default everything runs on a virtual clock over in-memory transports: minutes
    of scenario time take milliseconds, and the run is exactly reproducible. With
    ``real_sockets`` the server listens on 127.0.0.1 (clients connect to ``url`` for
    real, with any library) and time is the wall clock, compressed by ``speed``; add
    ``virtual_time=True`` to keep the virtual clock over those sockets (loopback
    delivers at once, so a client on the same loop runs its timers in virtual time:
    its backoff and timeouts too). ``timeout_real_s`` bounds the run in real time.
    Timestamps count from ``epoch_ns`` (Unix ns), else from the scenario's ``epoch``,
    else from 0 (1970-01-01): the same in every run, unlike ``sim run``'s wall clock.
    """
    if speed <= 0:
        raise UsageError(f"speed={speed!r}: must be > 0")
    virtual = not real_sockets if virtual_time is None else virtual_time
    if virtual and speed != 1.0:
        raise UsageError(f"speed={speed!r}: virtual time needs no speed-up (leave it at 1)")
    loaded = load(scenario)
    if faults is not None:
        loaded = dataclasses.replace(loaded, faults=tuple(faults))
    _note(loaded, seed)

    async def main() -> T:
        async with (
            asyncio.timeout(None if virtual else timeout_real_s),
            serve(
                loaded,
                host="127.0.0.1",
                port=0,
                seed=seed,
                speed=speed,
                epoch_ns=next(e for e in (epoch_ns, loaded.epoch_ns, 0) if e is not None),
                log_sends=True,
                in_memory=not real_sockets,
            ) as server,
        ):
            sim = RunningSim(
                server,
                server.url,
                None if real_sockets else server.open_transport,
                speed,
            )
            served.append(server)
            if not virtual:
                return await check(sim)
            watch = _StormWatch(server)
            watches.append(watch)
            return await watch.run(check(sim))

    served: list[SimServer] = []
    watches: list[_StormWatch] = []
    try:
        if not virtual:
            return asyncio.run(main())
        try:
            return run(main(), timeout_real_s=timeout_real_s)
        except RealTimeExceeded as e:
            stuck = watches[0].stuck_at(e.virtual_s) if watches else None
            if stuck is not None:  # most likely the cause: say so
                raise ReconnectStorm(*stuck) from e
            raise
    except (TimeoutError, OSError, ConnectError) as e:
        # The ways a client fails to connect: with no handshake in, most likely it
        # dialled sim.url by itself.
        if not real_sockets and served and not served[0].attempts_ns:
            e.add_note(NO_HANDSHAKE_HINT)
        raise


class _StormWatch:
    """Watches a server's handshakes while a check runs on the virtual clock: once
    :data:`STORM_HANDSHAKES` have come at one instant, the check is stopped with
    :class:`ReconnectStorm`, however it ends then. The task running the check is the
    one cancelled (a task of its own would be one more, which a check counting the
    tasks left behind would see)."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.flagged: int | None = None  # virtual ns of the storm, once seen
        self._task: asyncio.Task[Any] | None = None
        self._instant_loop_s = -1.0  # loop time of the latest handshake instant
        self._seen = 0  # handshakes the server had then

    async def run(self, check: Awaitable[T]) -> T:
        self._task = asyncio.current_task()
        stop = self.server.log.listen(self._look)
        try:
            result = await check
        except BaseException as e:
            self._raise_if_flagged(None if isinstance(e, asyncio.CancelledError) else e)
            raise
        finally:
            stop()
        self._raise_if_flagged(None)  # a check that swallowed the cancellation
        return result

    def stuck_at(self, loop_s: float) -> tuple[int, float] | None:
        """``(handshakes, scenario s)`` when the run stopped at the instant of the
        latest handshakes and 100 or more came then: the storm that held the clock."""
        if self._instant_loop_s != loop_s:
            return None
        attempts = self.server.attempts_ns or []
        last = attempts[-1]
        count = sum(1 for t in attempts[-STORM_HANDSHAKES:] if t == last)
        return (count, last / 1e9) if count >= 100 else None

    def _look(self, _: object) -> None:
        attempts = self.server.attempts_ns or []
        if len(attempts) == self._seen:
            return
        self._seen = len(attempts)
        self._instant_loop_s = asyncio.get_running_loop().time()
        limit = STORM_HANDSHAKES
        if self.flagged is None and len(attempts) >= limit and attempts[-limit] == attempts[-1]:
            self.flagged = attempts[-1]
        if self.flagged is not None:
            # Again at each handshake after it: a check that swallowed one cancellation
            # (and waits on) meets the next.
            assert self._task is not None
            self._task.cancel()

    def _raise_if_flagged(self, cause: BaseException | None) -> None:
        if self.flagged is None:
            return
        assert self._task is not None
        while self._task.cancelling():  # ours: the server's stop must not see them
            self._task.uncancel()
        storm = ReconnectStorm(STORM_HANDSHAKES, self.flagged / 1e9)
        raise storm from cause  # what the check raised meanwhile, if not our cancel


def _note(scenario: Scenario, seed: int | None) -> None:
    """Under hypothesis, note the faults and seed of this example (printed for the
    minimal failing one)."""
    from hypothesis import note
    from hypothesis.control import currently_in_test_context

    if not currently_in_test_context():
        return
    from simulator.core.flat_plan import from_faults
    from simulator.testing.strategies import plan_report

    used = scenario.seed if seed is None else seed
    try:
        text = plan_report(from_faults(scenario.faults), used)
    except ValueError:  # faults that are not a flat plan: shown as they are
        text = f"scenario seed {used}; faults:\n" + "\n".join(repr(f) for f in scenario.faults)
    note(f"scenario {scenario.name!r}: {text}")
