"""The one exception tree of `sim`.

Every error this package raises on purpose derives from :class:`SimError`::

    SimError
    ├── ScenarioError          a scenario file is wrong (file, line, key path, what is allowed)
    ├── RecordingError         a recording file is missing, truncated or not ours
    ├── UsageError             a command-line or library argument is out of range
    ├── ContractError          an AsyncAPI document cannot be read or used (file, JSON path)
    ├── ConnectError           a WebSocket connection could not be opened (refused with an
    │                          HTTP status, unreachable, timed out, TLS)
    ├── CaptureError           `sim record --connect` could not capture the feed
    │                          (simulator.net.capture)
    ├── RealTimeExceeded       a virtual-time run took longer than its real-time limit
    │                          (simulator.testing.virtual_time)
    └── ReconnectStorm         a client reconnected with no delay, virtual time stood
                               still (simulator.testing.harness; an AssertionError too)

Callers that present errors to people (the CLI) catch :class:`SimError` and print its
``str()``, which is always one line per problem and never a traceback. Anything else
that escapes is a bug in `sim`.
"""

from __future__ import annotations

from dataclasses import dataclass


class SimError(Exception):
    """Root of every error raised on purpose by `sim`."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a scenario: where it is, what was found, what is allowed.

    ``path`` is the key path inside the document (``stream[2].fields.cpu.std``);
    ``line`` is 1-based, or ``None`` where the source gives none; ``found`` is the
    offending value, shortened, as the file writes it (``-3``), or ``None`` when the
    mistake is a key rather than a value (unknown, missing). Its ``str()`` is one line::

        scenarios/x.toml:14: stream[2].fields.cpu.std = -3: must be > 0
        scenarios/x.toml:3: stream[0].evry: unknown key; did you mean 'every'? (...)
    """

    file: str
    line: int | None
    path: str
    message: str
    found: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        what = self.path
        if self.found is not None:
            what = f"{what} = {self.found}" if what else self.found
        return f"{where}: {what}: {self.message}" if what else f"{where}: {self.message}"


class ScenarioError(SimError):
    """A scenario file cannot be used. Holds every :class:`Problem` found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ScenarioError needs at least one problem")
        self.problems = sorted(problems, key=lambda p: (p.file, p.line or 0))
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class RecordingError(SimError):
    """A recording cannot be read or written: names the file and what is wrong with it."""

    def __init__(self, file: str, message: str) -> None:
        self.file = file
        self.message = message
        super().__init__(f"{file}: {message}")


class UsageError(SimError):
    """An argument given to a command or to the library API is not allowed."""


class ContractError(SimError):
    """An AsyncAPI document cannot be read or used: ``file``, where in it (``where``: a
    line, or a JSON path like ``components.messages.x.payload``) and what is wrong."""

    def __init__(self, file: str, where: str | None, message: str) -> None:
        self.file = file
        self.where = where
        self.message = message
        super().__init__(f"{file}:{where}: {message}" if where else f"{file}: {message}")


class ConnectError(SimError):
    """A WebSocket connection could not be opened. ``status`` is the HTTP status of a
    refusal (``None`` when no response came), ``phrase``, ``headers`` (pairs) and
    ``body`` the rest of it; ``timed_out`` says the opening handshake ran out of time."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        phrase: str = "",
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        timed_out: bool = False,
    ) -> None:
        self.reason = reason
        self.status = status
        self.phrase = phrase
        self.headers = headers
        self.body = body
        self.timed_out = timed_out
        super().__init__(reason)
