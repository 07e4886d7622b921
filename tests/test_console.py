"""Log lines reach stderr whole: each line is one write, so the workers of
`sim run --workers`, which share stderr, cannot cut into each other's lines (seen under
load with ``print``, which writes a line and its newline apart: ``{...}{...}`` followed by
two newlines, and a test waiting for lines that never parsed)."""

from __future__ import annotations

import pytest

from simulator.cli.console import log_printer
from simulator.net.log import Event, EventKind


class Writes:
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_each_log_line_is_one_write_with_its_newline(fmt: str) -> None:
    stream = Writes()
    printer = log_printer(fmt, stream, worker=1)  # type: ignore[arg-type]
    for conn in range(3):
        printer(Event(EventKind.CONNECTED, 1.0, conn, {"remote": "127.0.0.1:5000"}))
    assert len(stream.writes) == 3
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes)
