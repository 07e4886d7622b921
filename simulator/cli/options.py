"""What the commands share: parameter types, the ``--redact`` options, loading a
SCENARIO argument, and :func:`fail`, the one way a user's mistake ends.

Every mistake in a user's file or arguments ends in :func:`fail`: one line per problem
on stderr and exit code 2; nothing a user can type produces a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from simulator.core.durations import parse_duration
from simulator.errors import ScenarioError, SimError, UsageError

if TYPE_CHECKING:
    import ssl

    from simulator.core.model import Scenario
    from simulator.core.redact import Redactor

EXIT_USAGE = 2


def fail(error: SimError) -> NoReturn:
    """Print ``error`` one line at a time on stderr and exit 2."""
    for line in str(error).splitlines():
        click.echo(line, err=True)
    sys.exit(EXIT_USAGE)


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """``250ms``, ``5s``, ``1h30m`` as integer nanoseconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            ns = parse_duration(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)
        if ns <= 0:
            self.fail(f"{value!r}: must be > 0", param, ctx)
        return ns


class EpochType(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 time with a UTC offset, as Unix nanoseconds."""

    name = "iso-time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time like 2026-01-01T00:00:00Z", param, ctx)
        if when.tzinfo is None:
            self.fail(f"{value!r} needs a UTC offset, like 2026-01-01T00:00:00Z", param, ctx)
        return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1_000


class SpeedType(click.ParamType):  # type: ignore[type-arg]
    """A positive speed factor, or ``max`` (as fast as possible)."""

    name = "speed"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None or value == "max":
            return None
        try:
            speed = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r}: a number > 0 or 'max'", param, ctx)
        if not speed > 0 or speed == float("inf"):
            self.fail(f"{value!r}: a number > 0 or 'max'", param, ctx)
        return speed


DURATION = DurationType()
SEED = click.IntRange(0, 2**63 - 1)
EPOCH = EpochType()


def redact_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--redact`` and ``--redact-key-file``, for the commands that record."""
    command = click.option(
        "--redact-key-file",
        type=click.Path(dir_okay=False, exists=True),
        help="Key of --redact hashes (default: $SIM_REDACT_KEY, else random).",
    )(command)
    return click.option(
        "--redact",
        multiple=True,
        metavar="JSONPATH[=hash|remove]",
        help="Hash (or remove) this field in every recorded message (repeatable).",
    )(command)


def redact_key(key_file: str | None) -> bytes | None:
    """The redaction key: --redact-key-file, else $SIM_REDACT_KEY, else none."""
    import os

    if key_file is not None:
        key = Path(key_file).read_bytes().strip()
        if not key:
            raise UsageError(f"--redact-key-file {key_file}: the file is empty")
        return key
    env = os.environ.get("SIM_REDACT_KEY")
    return env.encode() if env else None


def redaction(specs: tuple[str, ...], key_file: str | None) -> Redactor | None:
    """The redactor for ``--redact`` specs (None without any), keyed by :func:`redact_key`
    or else a random key (hashes then match within this one file only)."""
    import secrets

    from simulator.core.redact import Redactor

    if not specs:
        return None
    key = redact_key(key_file) or secrets.token_bytes(32)
    return Redactor.from_specs(specs, key)


def load(path: str) -> Scenario:
    """Load a scenario or exit 2 with its problems."""
    from simulator.scenario import load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as e:
        fail(e)


def header_pair(value: str) -> tuple[str, str]:
    """A ``--header 'Name: value'`` as a pair; raises :class:`UsageError` otherwise."""
    name, sep, content = value.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"--header {value!r}: must be 'Name: value'")
    return name.strip(), content.strip()


def trust(ca_file: str | None) -> ssl.SSLContext | None:
    """The TLS context trusting ``--ca FILE`` (``None``: the system's CAs)."""
    import ssl

    return None if ca_file is None else ssl.create_default_context(cafile=ca_file)


def tls_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--tls-cert``/``--tls-key``, ``--tls-self-signed`` and ``--tls-dir``, for the
    commands that serve: given to ``command`` as one ``tls`` argument, a
    :class:`simulator.cli.tls.TLSOptions` (resolve it with ``serving_tls``)."""
    import functools

    from simulator.cli.tls import TLSOptions

    @functools.wraps(command)
    def with_tls(
        *args: Any,
        tls_cert: str | None,
        tls_key: str | None,
        tls_self_signed: bool,
        tls_dir: str | None,
        **kwargs: Any,
    ) -> Any:
        tls = TLSOptions(tls_cert, tls_key, tls_self_signed, tls_dir)
        return command(*args, tls=tls, **kwargs)

    # Paths unchecked by click: serving_tls says what is wrong with them in one line.
    for name, metavar, text in (  # bottom up: --help lists them in the reverse order
        ("--tls-dir", "DIR", "Where --tls-self-signed writes (default: a temp dir)."),
        ("--tls-self-signed", None, "Serve wss:// with a throwaway localhost certificate."),
        ("--tls-key", "FILE", "Private key (PEM, unencrypted) of --tls-cert."),
        ("--tls-cert", "FILE", "Serve wss:// with this certificate chain (PEM)."),
    ):
        kind = {"is_flag": True} if metavar is None else {"metavar": metavar}
        with_tls = click.option(name, help=text, **kind)(with_tls)
    return with_tls
