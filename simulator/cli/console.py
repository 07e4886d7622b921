"""How `sim run`, `sim replay` and `sim record` talk to a person or a script: log lines
(plain or JSON) on stderr, or a live status table when stdout is a terminal. The first
line on stdout is always the server's URL, so scripts can wait for it. SIGINT and
SIGTERM stop them gracefully (:func:`stop_on_signals`).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Protocol, TextIO

import orjson

from simulator.core.model import Scenario
from simulator.net.log import Event, EventKind, EventLog
from simulator.net.stats import Stats


def say(line: str, stream: TextIO) -> None:
    """Write ``line`` and its newline in one write, and flush. ``print`` writes them in
    two (stderr writes through), so the workers of `sim run --workers`, which share
    stderr, cut into each other's lines: ``{...}{...}`` then two newlines, seen under
    load."""
    stream.write(line + "\n")
    stream.flush()


def log_printer(
    fmt: str, stream: TextIO = sys.stderr, worker: int | None = None
) -> Callable[[Event], None]:
    """A listener printing each event as one line, ``plain`` or ``json``; ``worker``
    (one of ``sim run --workers``) is named on every line."""
    prefix = "sim: " if worker is None else f"sim: worker={worker} "
    tag = {} if worker is None else {"worker": worker}

    def plain(event: Event) -> None:
        say(f"{prefix}{event.as_text()}", stream)

    def json(event: Event) -> None:
        say(orjson.dumps({**event.as_dict(), **tag}).decode(), stream)

    return json if fmt == "json" else plain


def follow_log(
    log: EventLog, log_format: str, only: EventKind | None = None, worker: int | None = None
) -> None:
    """Print the events logged so far and every later one (of kind ``only``, if given)."""
    printer = log_printer(log_format, worker=worker)

    def show(event: Event) -> None:
        if only is None or event.kind is only:
            printer(event)

    for event in log.records:
        show(event)
    log.listen(show)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (graceful stop: clients get 1001, exit 0).

    Call it from inside the running event loop.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


class StatusSource(Protocol):
    """What the live status shows: a :class:`SimServer`, or the workers of one run."""

    @property
    def scenario(self) -> Scenario: ...

    @property
    def url(self) -> str: ...

    @property
    def speed(self) -> float: ...

    def stats(self) -> Stats: ...


def status_table(server: StatusSource, stats: Stats) -> object:
    """A rich renderable of ``stats`` (imported lazily: rich is only needed on a TTY)."""
    from rich.table import Table

    table = Table(title=f"sim: {server.scenario.name} on {server.url}", title_justify="left")
    table.add_column("stream")
    table.add_column("messages", justify="right")
    table.add_column("msg/s", justify="right")
    for name in (s.name for s in server.scenario.streams):
        count = stats.messages_by_stream.get(name, 0)
        rate = count / stats.uptime_s if stats.uptime_s > 0 else 0.0
        table.add_row(name, f"{count:,}", f"{rate:.2f}")
    late = "-" if stats.lateness_p99_ms is None else f"{stats.lateness_p99_ms:.2f} ms"
    table.caption = (
        f"connections {stats.connections_open} open / {stats.connections_total} total  "
        f"frames sent {stats.frames_sent:,}  dropped {stats.frames_dropped:,}  "
        f"late dropped {stats.late_dropped:,}  slow closed {stats.slow_closed}  "
        f"client errors {stats.client_errors}  "
        f"rejected {stats.rejected}  send lateness p99 {late}  "
        f"virtual {stats.virtual_s:.1f}s (x{server.speed:g})"
    )
    if stats.faults_by_kind:
        table.caption += "\nfaults " + "  ".join(
            f"{kind} {count}" for kind, count in sorted(stats.faults_by_kind.items())
        )
    table.caption_justify = "left"
    return table


async def live_status(server: StatusSource, refresh_s: float = 0.5) -> None:
    """Redraw the status table until cancelled."""
    from rich.console import Console
    from rich.live import Live

    with Live(console=Console(), refresh_per_second=4, transient=False) as live:
        while True:
            live.update(status_table(server, server.stats()))  # type: ignore[arg-type]
            await asyncio.sleep(refresh_s)
