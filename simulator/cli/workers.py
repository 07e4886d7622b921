"""`sim run --workers N`: N processes serving one scenario on one port.

Each worker is a spawned process running :func:`simulator.net.server.serve` with
``reuse_port`` (``SO_REUSEPORT``): the kernel spreads new connections among them. They
need no coordination: all have the same scenario, seed and epoch, and the same origin
(the wall time of scenario time 0, which the supervisor sends once every worker has
started), so a broadcast feed is the same bytes at the same moments on every worker;
worker ``w`` numbers its connections ``w, w+N, w+2N, ...``
(:class:`~simulator.core.numbering.Numbering`), so whatever depends on a connection's
index is the same whichever worker serves it.

This process (the supervisor) serves nothing. It takes the port (a free one for
``--port 0``; a port in use, even by another run's workers, is refused): it binds a
``SO_REUSEPORT`` socket first and keeps it bound, unlistened, so the port stays theirs;
it prints the URL once every worker listens, forwards SIGINT/SIGTERM and waits
for them, and shows the live status from what they report over a pipe: their
:class:`~simulator.net.stats.Stats` twice a second, summed (:func:`combine`). Each
worker logs its own events to stderr, naming itself (``worker=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Link
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import click
import orjson

from simulator.cli.options import EXIT_USAGE, claim_output, network_failure_text
from simulator.core.numbering import Numbering
from simulator.errors import SimError, UsageError
from simulator.net import event_loop

if TYPE_CHECKING:
    # Imported where used: `sim --help` and the other commands need none of them.
    from simulator.cli.tls import ServingTLS, TLSOptions
    from simulator.core.model import Mode, Scenario
    from simulator.core.redact import Redactor
    from simulator.net.stats import Stats

#: The signals that stop a run. Blocked while processes start, so that none dies of
#: one before its handler is in place (a spawned process inherits the mask).
STOP_SIGNALS: Final = {signal.SIGINT, signal.SIGTERM}
#: How often a worker reports its stats to the supervisor.
REPORT_EVERY_S: Final = 0.5
#: A worker told to stop that is still running after this long is killed.
STOP_TIMEOUT_S: Final = 60.0
#: A worker's exit code when its supervisor went away before it could tell it anything.
EXIT_STOPPED: Final = 1
#: Most workers ``--workers`` accepts.
MAX_WORKERS: Final = 256


class WorkersType(click.ParamType):  # type: ignore[type-arg]
    """``--workers``: a count from 1, or ``auto`` (one per CPU this process may use)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        if str(value).strip().lower() == "auto":
            return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))
        try:
            count = int(value)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_WORKERS:
            self.fail(f"{value!r}: give a count from 1 to {MAX_WORKERS}, or auto", param, ctx)
        return count


WORKERS = WorkersType()


class InstanceType(click.ParamType):  # type: ignore[type-arg]
    """``--instance I/M``: instance ``I`` (from 0) of ``M``, as a pair."""

    name = "I/M"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        index, _, count = str(value).partition("/")
        try:
            pair = int(index), int(count)
        except ValueError:
            pair = (-1, 0)
        if not 0 <= pair[0] < pair[1] <= MAX_WORKERS:
            self.fail(
                f"{value!r}: give I/M, instance I of M, with 0 <= I < M <= {MAX_WORKERS} "
                "(e.g. 0/3, 1/3, 2/3 on three hosts)",
                param,
                ctx,
            )
        return pair


INSTANCE = InstanceType()


def numbering(instance: tuple[int, int], worker: int, workers: int) -> Numbering:
    """Worker ``worker`` of ``workers`` on instance ``I`` of ``M``: slot ``I*workers +
    worker`` of ``M*workers``, so no two workers of any instance share an index."""
    index, count = instance
    return Numbering(index * workers + worker, count * workers)


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What every worker serves, and how it talks (sent to each spawned process)."""

    scenario: Scenario
    host: str
    port: int
    seed: int | None
    speed: float
    duration_ns: int | None
    epoch_ns: int | None  # None: the origin the supervisor sends (see read)
    record: str | None  # the directory: worker w writes part_path(record, w)
    overwrite_record: bool  # --force: each worker replaces its part once it serves
    redactor: Redactor | None
    tls_files: tuple[str, str] | None  # certificate and key, PEM
    log_format: str
    quiet: bool
    status: bool  # the supervisor shows a live status: log warnings only
    notes: tuple[str, ...] = ()  # said on stderr once every worker listens
    #: What a previous --record DIR of more workers left, removed once every worker listens.
    stale_partitions: tuple[Path, ...] = ()


def part_path(record_dir: str | os.PathLike[str], worker: int) -> Path:
    """Where worker ``worker`` records: a Hive partition of ``record_dir``."""
    return Path(record_dir) / f"worker={worker}" / "part.parquet"


def claim_record_dir(
    record_dir: str, workers: list[int], force: bool, *, alone: bool
) -> tuple[Path, ...]:
    """Make sure ``--record DIR`` with workers overwrites nothing unless ``force``.
    Nothing is made or removed here: each worker makes its partition and replaces its
    own part once it serves (``overwrite_record``), and the partitions of other workers
    (all ``worker=*`` not among ``workers``, when ``alone``; instances share a
    directory) are returned, to remove once every worker listens, so that a run that
    cannot start (a port in use) writes nothing and loses nothing. Raises
    :class:`UsageError`."""
    root = Path(record_dir)
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"{record_dir}: with --workers, --record names a directory (one part per worker)"
        )
    mine = [part_path(root, w).parent for w in workers]
    old = sorted(root.glob("worker=*") if alone else (p for p in mine if p.exists()))
    if any(_holds_anything(p) for p in old) and not force:
        raise UsageError(f"{record_dir}: already holds a recording; pass --force to overwrite it")
    _check_writable(root)
    for worker in workers:
        claim_output(str(part_path(root, worker)), force, remove=False)
    return tuple(p for p in old if p not in mine)


def _holds_anything(partition: Path) -> bool:
    """Whether ``partition`` holds anything: an empty ``worker=W`` folder is no recording
    (one made by hand for a part, as docs/scale-out.md does)."""
    return not partition.is_dir() or any(partition.iterdir())


def _check_writable(root: Path) -> None:
    """Raise :class:`UsageError` when folders cannot be made in ``root`` (or in its
    nearest existing parent), before the workers start: each would fail alone."""
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{root}: cannot write there: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{root}: cannot write there: {existing} is not writable")


def remove_stale_partitions(partitions: tuple[Path, ...]) -> None:
    """Remove the partitions a previous run with more workers left (``--force``)."""
    for partition in partitions:
        shutil.rmtree(partition, ignore_errors=True)


def combine(stats: list[Stats], mode: Mode) -> Stats:
    """The workers' stats as one server's: counts summed; the feed's message counts
    taken once in broadcast mode (every worker makes the same messages), summed per
    connection; lateness the worst worker's; uptime the longest."""
    from simulator.core.model import Mode
    from simulator.net.stats import Stats

    if not stats:
        return Stats(0.0, 0.0, 0, 0, {}, 0, 0, 0, 0, 0, None, None)
    messages: dict[str, int] = {}
    faults: dict[str, int] = {}
    for s in stats:
        for name, n in s.messages_by_stream.items():
            messages[name] = (
                max(messages.get(name, 0), n)
                if mode is Mode.BROADCAST
                else messages.get(name, 0) + n
            )
        for kind, n in s.faults_by_kind.items():
            faults[kind] = faults.get(kind, 0) + n
    p50 = [s.lateness_p50_ms for s in stats if s.lateness_p50_ms is not None]
    p99 = [s.lateness_p99_ms for s in stats if s.lateness_p99_ms is not None]
    return Stats(
        uptime_s=max(s.uptime_s for s in stats),
        virtual_s=max(s.virtual_s for s in stats),
        connections_open=sum(s.connections_open for s in stats),
        connections_total=sum(s.connections_total for s in stats),
        messages_by_stream=messages,
        frames_sent=sum(s.frames_sent for s in stats),
        frames_dropped=sum(s.frames_dropped for s in stats),
        slow_closed=sum(s.slow_closed for s in stats),
        client_errors=sum(s.client_errors for s in stats),
        rejected=sum(s.rejected for s in stats),
        lateness_p50_ms=max(p50) if p50 else None,
        lateness_p99_ms=max(p99) if p99 else None,
        faults_by_kind=faults,
        late_dropped=sum(s.late_dropped for s in stats),
    )


# --------------------------------------------------------------------------- a worker


def _work(spec: WorkerSpec, numbering: Numbering, link: Link) -> None:
    """A worker process: serve until stopped, telling the supervisor over ``link``."""
    try:
        event_loop.run(_serve_then_ignore_signals(spec, numbering, link))
    except (BrokenPipeError, EOFError):
        sys.exit(EXIT_STOPPED)  # the supervisor is gone (killed): nobody to tell
    except OSError as e:
        _tell(link, {"error": network_failure_text(e, "serve")})
        sys.exit(EXIT_USAGE)
    except SimError as e:
        _tell(link, {"error": str(e)})
        sys.exit(EXIT_USAGE)


async def _serve_then_ignore_signals(spec: WorkerSpec, numbering: Numbering, link: Link) -> None:
    """:func:`_serve_one`, then ignore SIGINT and SIGTERM for the rest of the process's
    life. A terminal's Ctrl-C reaches the workers as well as the supervisor, which
    sends each worker it has not seen exit a SIGTERM: one that came once the loop had
    closed (restoring the default handlers) killed a worker that was stopping cleanly
    (exit -15, reported as a failure)."""
    try:
        await _serve_one(spec, numbering, link)
    finally:
        loop = asyncio.get_running_loop()
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)  # so that closing the loop leaves them be
            signal.signal(number, signal.SIG_IGN)


def _tell(link: Link, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        link.send(message)


async def _serve_one(spec: WorkerSpec, numbering: Numbering, link: Link) -> None:
    from simulator.cli.console import follow_log, stop_on_signals
    from simulator.net.heap import freeze_what_is_loaded
    from simulator.net.log import EventKind
    from simulator.net.server import serve
    from simulator.net.tls import server_context

    stop = stop_on_signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # Started (the slow part: the interpreter and its imports); the supervisor answers
    # with the origin once every worker is, so that none starts its clock late.
    link.send({"ready": numbering.worker})
    loop = asyncio.get_running_loop()
    told: asyncio.Future[Any] = loop.create_future()

    def hear() -> None:
        try:
            message = link.recv()
        except (EOFError, OSError):  # the supervisor is gone: so are we
            message = None
            stop.set()
        if not told.done():
            told.set_result(message)

    loop.add_reader(link.fileno(), hear)
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait([told, stopped], return_when=asyncio.FIRST_COMPLETED)
    if stopped.done() or not told.done():
        loop.remove_reader(link.fileno())
        return
    async with serve(
        spec.scenario,
        host=spec.host,
        port=spec.port,
        seed=spec.seed,
        speed=spec.speed,
        duration_ns=spec.duration_ns,
        epoch_ns=spec.epoch_ns,
        record=None if spec.record is None else part_path(spec.record, numbering.worker),
        overwrite_record=spec.overwrite_record,
        redact=spec.redactor,
        tls=None if spec.tls_files is None else server_context(*spec.tls_files),
        numbering=numbering,
        origin_wall_ns=told.result(),
        reuse_port=True,
    ) as server:
        freeze_what_is_loaded()
        # From now on the link is readable only when the supervisor has gone (killed):
        # hear() stops this worker then, rather than leave it serving on its own.
        link.send({"listening": server.url})
        if not spec.quiet:
            only = EventKind.WARNING if spec.status else None
            follow_log(server.log, spec.log_format, only=only, worker=numbering.worker)

        async def report() -> None:
            while True:
                try:
                    link.send({"stats": dataclasses.asdict(server.stats())})
                except OSError:  # the supervisor is gone
                    stop.set()
                    return
                await asyncio.sleep(REPORT_EVERY_S)

        tasks = [asyncio.ensure_future(server.wait()), stopped, asyncio.ensure_future(report())]
        await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
    with contextlib.suppress(OSError):
        link.send({"stats": dataclasses.asdict(server.stats())})  # the final count


# --------------------------------------------------------------------------- the supervisor


@dataclass(eq=False)
class _Child:
    worker: int
    process: BaseProcess
    link: Link
    ready: bool = False
    url: str | None = None
    stats: Stats | None = None
    error: str | None = None
    exited: asyncio.Future[int] | None = None


@dataclass(eq=False)
class _Board:
    """The workers as the supervisor sees them (a status source for the console)."""

    spec: WorkerSpec
    children: list[_Child]
    url: str = ""
    listening: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def scenario(self) -> Scenario:
        return self.spec.scenario

    @property
    def speed(self) -> float:
        return self.spec.speed

    def stats(self) -> Stats:
        return combine([c.stats for c in self.children if c.stats is not None], self.mode)

    @property
    def mode(self) -> Mode:
        return self.spec.scenario.server.mode

    def read(self, child: _Child) -> None:
        """Take what ``child`` reported (called when its link is readable)."""
        from simulator.net.common import on_whole_ms
        from simulator.net.stats import Stats

        try:
            while child.link.poll():
                message: dict[str, Any] = child.link.recv()
                if "ready" in message:
                    child.ready = True
                    if all(c.ready for c in self.children):
                        # Scenario time 0 for all, on a whole millisecond (see
                        # on_whole_ms), and their epoch unless one was given.
                        origin = on_whole_ms(time.time_ns())
                        for c in self.children:
                            with contextlib.suppress(OSError):  # it has gone: seen at exit
                                c.link.send(origin)
                elif "listening" in message:
                    child.url = message["listening"]
                    if all(c.url is not None for c in self.children):
                        self.url = str(child.url)
                        self.listening.set()
                elif "stats" in message:
                    child.stats = Stats(**message["stats"])
                elif "error" in message:
                    child.error = str(message["error"])
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(child.link.fileno())


def run_workers(
    scenario: Scenario,
    workers: int,
    *,
    instance: tuple[int, int],
    host: str | None,
    port: int | None,
    seed: int | None,
    speed: float,
    duration_ns: int | None,
    epoch_ns: int | None,
    log_format: str,
    quiet: bool,
    record: str | None,
    force: bool,
    redactor: Redactor | None,
    tls_options: TLSOptions,
    tls: ServingTLS | None,
    notes: tuple[str, ...] = (),
) -> NoReturn:
    """``sim run --workers N`` (N > 1), after the options were checked: fix what the
    workers must share (epoch, port), then :func:`serve_workers`. ``notes`` are said on
    stderr once every worker listens."""
    slots = [numbering(instance, w, workers) for w in range(workers)]
    stale: tuple[Path, ...] = ()
    if record is not None:
        stale = claim_record_dir(record, [n.worker for n in slots], force, alone=instance[1] == 1)
    tls_files = None
    if tls_options.cert and tls_options.key:
        tls_files = (tls_options.cert, tls_options.key)
    elif tls is not None and tls.made is not None:
        tls_files = (str(tls.made.cert_file), str(tls.made.key_file))
    spec = WorkerSpec(
        scenario=scenario,
        host=host if host is not None else scenario.server.host,
        port=port if port is not None else scenario.server.port,
        seed=seed,
        speed=speed,
        duration_ns=duration_ns,
        epoch_ns=epoch_ns if epoch_ns is not None else scenario.epoch_ns,
        record=record,
        overwrite_record=force,
        stale_partitions=stale,
        redactor=redactor,
        tls_files=tls_files,
        log_format=log_format,
        quiet=quiet,
        status=not quiet and sys.stdout.isatty() and log_format == "plain",
        notes=notes,
    )
    serve_workers(spec, slots, tls)


def serve_workers(spec: WorkerSpec, slots: list[Numbering], tls: ServingTLS | None) -> NoReturn:
    """Run a worker process for each of ``slots`` serving ``spec`` until they stop; print the URL
    first; exit 0 when they stopped on a signal or at the end of the duration, 2 when
    one could not start (its error printed), 1 when one failed while serving.

    ``tls`` is the :class:`~simulator.cli.tls.ServingTLS` to announce (the workers load
    ``spec.tls_files``). Call it outside any event loop."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise UsageError("--workers needs SO_REUSEPORT (Linux, BSD), which this system lacks")
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    reserved = _reserve_port(spec.host, spec.port)
    try:
        claim = _claim_port(int(reserved.getsockname()[1]))
    except OSError:
        reserved.close()
        raise
    spec = dataclasses.replace(spec, port=int(reserved.getsockname()[1]))
    sys.stdout.flush()
    context = multiprocessing.get_context("spawn")  # no fork: polars' threads do not survive one
    children: list[_Child] = []
    try:
        for slot in slots:
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_work, args=(spec, slot, theirs), name=f"sim-{slot.worker}"
            )
            process.start()
            theirs.close()
            children.append(_Child(slot.worker, process, ours))
        code = asyncio.run(_supervise(spec, children, tls))
    finally:
        for child in children:
            if child.process.is_alive():
                child.process.kill()
            child.process.join()
        reserved.close()
        if claim is not None:
            os.close(claim)
    sys.exit(code)


def _reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``port`` of ``host`` (0: a free one) with ``SO_REUSEPORT``,
    not listening: while it stays bound, only sockets with that flag (the workers) can
    take the port. A port in use raises ``OSError`` (EADDRINUSE), as for a lone server,
    even when its holder has ``SO_REUSEPORT`` too (another ``sim run --workers``), which
    the kernel would otherwise let the workers share, splitting clients between two
    unrelated runs. (One still starting, whose workers do not listen yet, is told by
    its lock: :func:`_claim_port`.)"""
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if port:
        for family, kind, proto, _, address in addresses:  # every one the workers bind
            try:
                probe = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this system cannot open: asyncio skips it too
            with probe:
                _bind_like_asyncio(probe, address, reuse_port=False)
    family, kind, proto, _, address = addresses[0]
    sock = socket.socket(family, kind, proto)
    try:
        _bind_like_asyncio(sock, address, reuse_port=True)
    except BaseException:
        sock.close()
        raise
    return sock


def _claim_port(port: int) -> int | None:
    """Lock a file for ``port`` in the temporary folder, for as long as this process
    holds the returned descriptor: the port check sees only listening sockets, so a
    second run of workers started while the first one's were still starting would share
    the port (``SO_REUSEPORT``). Raises ``OSError`` (EADDRINUSE) when another run holds
    the lock; ``None`` when there is no lock to take (a file another user made)."""
    path = Path(tempfile.gettempdir()) / f"sim-workers-port-{port}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)) from None
    return fd


def _bind_like_asyncio(sock: socket.socket, address: Any, *, reuse_port: bool) -> None:
    """Bind ``sock`` to ``address`` with the options asyncio's servers set (so that it
    clashes with what theirs would, no more): ``SO_REUSEADDR``, IPv6 only for IPv6."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(address)


async def _supervise(spec: WorkerSpec, children: list[_Child], tls: ServingTLS | None) -> int:
    from simulator.cli.console import live_status, stop_on_signals
    from simulator.cli.tls import announce

    loop = asyncio.get_running_loop()
    stop = stop_on_signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    board = _Board(spec, children)
    for child in children:
        child.exited = loop.create_future()
        loop.add_reader(child.link.fileno(), board.read, child)
        loop.add_reader(child.process.sentinel, _on_exit, loop, board, child)
    exits: list[asyncio.Future[Any]] = [c.exited for c in children if c.exited is not None]
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    listening: asyncio.Future[Any] = asyncio.ensure_future(board.listening.wait())
    await asyncio.wait([stopped, listening, *exits], return_when=asyncio.FIRST_COMPLETED)
    status = None
    if board.listening.is_set() and not stopped.done() and not any(f.done() for f in exits):
        remove_stale_partitions(spec.stale_partitions)
        print(board.url, flush=True)
        if not spec.quiet:
            announce(tls, board.url, spec.log_format, health=True)
            if spec.log_format == "plain":  # else stderr holds JSON lines only
                for note in spec.notes:
                    click.echo(f"note: {note}", err=True)
        if spec.status:
            status = asyncio.ensure_future(live_status(board))
        await asyncio.wait([stopped, *exits], return_when=asyncio.FIRST_COMPLETED)
        # At the end of --duration every worker stops by itself: wait for the others.
        if not stopped.done() and all(f.result() == 0 for f in exits if f.done()):
            everyone: asyncio.Future[Any] = asyncio.gather(*exits)
            await asyncio.wait([stopped, everyone], return_when=asyncio.FIRST_COMPLETED)
    for task in (stopped, listening, status):
        if task is not None:
            task.cancel()
    for child in children:
        if not child.exited or not child.exited.done():
            child.process.terminate()  # SIGTERM, by pid: the worker closes its clients
    done, _ = await asyncio.wait(exits, timeout=STOP_TIMEOUT_S)
    for child in children:
        board.read(child)  # what it said last
    return _outcome(spec, board, done == set(exits))


def _on_exit(loop: asyncio.AbstractEventLoop, board: _Board, child: _Child) -> None:
    loop.remove_reader(child.process.sentinel)
    board.read(child)
    child.process.join()
    assert child.exited is not None
    if not child.exited.done():
        child.exited.set_result(child.process.exitcode or 0)


def _outcome(spec: WorkerSpec, board: _Board, all_exited: bool) -> int:
    """Print what went wrong (each message once) and the final counts; the exit code."""
    errors = list(dict.fromkeys(c.error for c in board.children if c.error is not None))
    for error in errors:
        click.echo(error if error.startswith("sim:") else f"sim: {error}", err=True)
    if errors:
        return EXIT_USAGE
    failed = [
        c
        for c in board.children
        if c.exited is not None and c.exited.done() and c.exited.result() != 0
    ]
    for child in failed:
        code = child.exited.result() if child.exited is not None else None
        click.echo(f"sim: worker {child.worker} failed (exit code {code})", err=True)
    if not all_exited:
        click.echo(f"sim: workers still running after {STOP_TIMEOUT_S:g} s: killed", err=True)
    if not spec.quiet:
        _print_totals(spec, board.stats(), len(board.children))
    return 1 if failed or not all_exited else 0


def _print_totals(spec: WorkerSpec, stats: Stats, workers: int) -> None:
    totals = {
        "workers": workers,
        "connections_total": stats.connections_total,
        "frames_sent": stats.frames_sent,
        "frames_dropped": stats.frames_dropped,
        "late_dropped": stats.late_dropped,
        "rejected": stats.rejected,
    }
    if spec.log_format == "json":
        line = {"event": "workers_stopped", "time": time.time(), "conn": None, **totals}
        click.echo(orjson.dumps(line).decode(), err=True)
    else:
        click.echo(
            "sim: workers_stopped " + " ".join(f"{k}={v}" for k, v in totals.items()), err=True
        )
