"""How a server numbers its connections when it is one of several serving one feed.

Worker ``w`` of ``n`` (``sim run --workers n``) gives its ``k``-th handshake attempt the
connection index ``w + k*n``: indices are unique across the workers without any
coordination, and everything decided by a connection's index (its per-connection feed,
the connection faults that target it) is the same whichever worker serves it. One
server alone is worker 0 of 1: ``0, 1, 2, ...``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Numbering:
    """Worker ``worker`` of ``workers``: which connection indices it hands out. Raises
    ``ValueError`` unless ``0 <= worker < workers`` (the CLI checks its options first)."""

    worker: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1 or not 0 <= self.worker < self.workers:
            raise ValueError(
                f"worker {self.worker} of {self.workers}: need workers >= 1 and "
                "0 <= worker < workers"
            )

    def index(self, attempt: int) -> int:
        """The connection index of this worker's ``attempt``-th handshake (from 0)."""
        return self.worker + attempt * self.workers

    def worker_of(self, index: int) -> int:
        """Which worker hands out connection index ``index``."""
        return index % self.workers
