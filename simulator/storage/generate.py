"""Offline rendering: a scenario's timeline, in virtual time, as recording rows.

:func:`recording_frames` yields what a live server would send each connection, in
the recording format of :mod:`simulator.storage.schema`, as frames of a bounded size;
:func:`generate` streams them into one Parquet file. Nothing here reads the clock
(except ``created_at`` in the file metadata), so the rows are a pure function of
``(scenario, seed, connections, epoch, duration)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
from polars.io.plugins import register_io_source

from simulator.core.live import LiveState, fill
from simulator.core.model import Mode, Scenario
from simulator.core.rates import mean_rate_per_s
from simulator.core.schedules import Times
from simulator.core.timeline import DEFAULT_EPOCH_NS, Batch, Timeline
from simulator.errors import RecordingError, UsageError
from simulator.storage.generate_faults import DEFAULT_RECONNECT_AFTER_NS, Rows, render_faulted
from simulator.storage.schema import SCHEMA, Kind, Sender, encode_metadata, event_batch
from simulator.storage.schema import new_metadata as _new_metadata
from simulator.version import __version__

#: About this many events per frame: big enough to amortise per-frame work, small
#: enough that memory stays flat however long the run.
EVENTS_PER_FRAME = 16_384


@dataclass(frozen=True, slots=True)
class Plan:
    """What to render. ``epoch_ns`` is virtual time 0 as Unix ns."""

    scenario: Scenario
    seed: int
    duration_ns: int
    connections: int
    epoch_ns: int
    #: With ``[[fault]]``s: how long a client waits to connect again after its
    #: connection ended or its handshake was refused (see :mod:`.generate_faults`).
    reconnect_after_ns: int = DEFAULT_RECONNECT_AFTER_NS

    @classmethod
    def of(
        cls,
        scenario: Scenario,
        *,
        duration_ns: int | None = None,
        seed: int | None = None,
        connections: int = 1,
        epoch_ns: int | None = None,
        reconnect_after_ns: int | None = None,
    ) -> Plan:
        """Fill defaults from the scenario; raises :class:`UsageError` for impossible values."""
        duration = duration_ns if duration_ns is not None else scenario.duration_ns
        if duration is None or duration <= 0:
            raise UsageError("a duration is needed: pass --duration or set scenario.duration")
        if connections < 1:
            raise UsageError(f"connections={connections}: must be >= 1")
        reconnect = DEFAULT_RECONNECT_AFTER_NS if reconnect_after_ns is None else reconnect_after_ns
        if reconnect <= 0:
            raise UsageError(f"reconnect_after_ns={reconnect}: must be > 0")
        epoch = epoch_ns if epoch_ns is not None else scenario.epoch_ns
        return cls(
            scenario=scenario,
            seed=scenario.seed if seed is None else seed,
            duration_ns=duration,
            connections=connections,
            epoch_ns=DEFAULT_EPOCH_NS if epoch is None else epoch,
            reconnect_after_ns=reconnect,
        )

    @property
    def session(self) -> str:
        return f"generate:{self.scenario.name}:{self.seed}"

    def expected_events(self) -> float:
        """Mean number of messages the plan renders (for progress bars and sizing)."""
        per_timeline = sum(
            mean_rate_per_s(s.schedule, self.duration_ns) for s in self.scenario.streams
        )
        return per_timeline * self.duration_ns / 1e9 * self.connections


def recording_frames(
    plan: Plan, progress: Callable[[int], None] | None = None
) -> Iterator[pl.DataFrame]:
    """The plan's rows, in recording order: an ``open`` row per connection at time 0,
    then every message each connection receives, by time (ties: connection index).
    With ``[[fault]]``s, the rows a recording of `sim run` would hold for scripted
    clients (see :mod:`simulator.storage.generate_faults`).

    ``progress`` is called with the virtual time reached after each frame.
    """
    if plan.scenario.faults:
        yield from _faulted_frames(plan, progress)
        return
    n = plan.connections
    conns = np.arange(n, dtype=np.int32)
    yield event_batch(
        seq=np.arange(n, dtype=np.int64),
        t_ns=0,
        wall_ns=plan.epoch_ns,
        session=plan.session,
        conn=conns,
        sender=Sender.SERVER,
        kind=Kind.OPEN,
    )
    next_seq = n
    names = pl.Series([s.name for s in plan.scenario.streams], dtype=pl.String)
    events = max(plan.expected_events(), 1.0)
    window = max(1_000_000, int(plan.duration_ns * EVENTS_PER_FRAME / events))
    per_connection = plan.scenario.server.mode is Mode.PER_CONNECTION
    timelines = [
        Timeline(
            plan.scenario, plan.seed, scope=i if per_connection else None, epoch_ns=plan.epoch_ns
        )
        for i in (range(n) if per_connection else range(1))
    ]
    sent = [0] * n  # messages each connection was sent so far (for live values)
    t = 0
    while t < plan.duration_ns:
        t = min(t + window, plan.duration_ns)
        frame = _frame(
            [tl.take_until(t) for tl in timelines], plan, names, next_seq, per_connection, sent
        )
        next_seq += frame.height
        if frame.height:
            yield frame
        if progress is not None:
            progress(t)


def _faulted_frames(plan: Plan, progress: Callable[[int], None] | None) -> Iterator[pl.DataFrame]:
    next_seq = 0
    for rows, t in render_faulted(plan, plan.reconnect_after_ns, EVENTS_PER_FRAME):
        if len(rows):
            yield _rows_frame(rows, plan, next_seq)
            next_seq += len(rows)
        if progress is not None:
            progress(t)


def _rows_frame(rows: Rows, plan: Plan, first_seq: int) -> pl.DataFrame:
    t = np.asarray(rows.t_ns, dtype=np.int64)
    return event_batch(
        seq=np.arange(first_seq, first_seq + len(rows), dtype=np.int64),
        t_ns=t,
        wall_ns=t + plan.epoch_ns,
        session=plan.session,
        conn=np.asarray(rows.conn, dtype=np.int32),
        sender=Sender.SERVER,
        kind=rows.kind,
        stream=rows.stream,
        payload=rows.payload,
        close_code=rows.close_code,
        close_reason=rows.close_reason,
        fault=rows.fault,
    )


def _filled(
    payloads: list[bytes], conn: npt.NDArray[np.int32], t: Times, n: int, sent: list[int]
) -> list[bytes]:
    """Live values as `sim run` fills them for ``n`` clients connected from 0 s that send
    nothing: ``sent`` counts each connection's messages so far (updated)."""
    out: list[bytes] = []
    for payload, c, t_ns in zip(payloads, conn.tolist(), t.tolist(), strict=True):
        out.append(fill(payload, LiveState(c, n, sent[c], t_ns)))
        sent[c] += 1
    return out


def _frame(
    batches: list[Batch],
    plan: Plan,
    names: pl.Series,
    first_seq: int,
    per_connection: bool,
    sent: list[int],
) -> pl.DataFrame:
    n = plan.connections
    if per_connection:
        t = np.concatenate([b.t_ns for b in batches])
        stream = np.concatenate([b.stream for b in batches])
        conn = np.concatenate([np.full(len(b), i, np.int32) for i, b in enumerate(batches)])
        order = np.argsort(t, kind="stable")  # ties keep connection order
        payloads = [p for b in batches for p in b.payloads]
        payloads = [payloads[i] for i in order.tolist()]
        t, stream, conn = t[order], stream[order], conn[order]
    else:
        # One timeline, the same frame to every connection: repeat each event n times.
        (batch,) = batches
        t = np.repeat(batch.t_ns, n)
        stream = np.repeat(batch.stream, n)
        conn = np.tile(np.arange(n, dtype=np.int32), len(batch))
        payloads = batch.payloads if n == 1 else [p for p in batch.payloads for _ in range(n)]
    if plan.scenario.has_live:
        payloads = _filled(payloads, conn, t, n, sent)
    rows = len(t)
    return event_batch(
        seq=np.arange(first_seq, first_seq + rows, dtype=np.int64),
        t_ns=t,
        wall_ns=t + plan.epoch_ns,
        session=plan.session,
        conn=conn,
        sender=Sender.SERVER,
        kind=Kind.TEXT,
        stream=names.gather(pl.Series(stream, dtype=pl.UInt32)),
        payload=payloads,
    )


@dataclass(frozen=True, slots=True)
class Written:
    path: Path
    rows: int


def generate(plan: Plan, out: str | Path, progress: Callable[[int], None] | None = None) -> Written:
    """Render ``plan`` into the Parquet file ``out`` (replaced atomically).

    Frames stream to disk as they are rendered: memory stays flat whatever the
    duration. Rendering (Python) and compressing (polars' threads) overlap.
    """
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    meta = _new_metadata(
        sim_version=__version__,
        scenario=plan.scenario.name,
        seed=plan.seed,
        extra={
            "generated": True,
            "connections": plan.connections,
            "duration_ns": plan.duration_ns,
            "epoch_ns": plan.epoch_ns,
            "mode": plan.scenario.server.mode.value,
            **({"reconnect_after_ns": plan.reconnect_after_ns} if plan.scenario.faults else {}),
        },
    )

    def source(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        yield from recording_frames(plan, progress)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lazy = register_io_source(source, schema=SCHEMA)
        lazy.sink_parquet(tmp, compression="zstd", metadata=encode_metadata(meta))
        tmp.replace(path)
    except (OSError, pl.exceptions.PolarsError) as e:
        tmp.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise RecordingError(str(path), f"cannot write: {reason}") from e
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    return Written(path, int(rows))
