"""What the commands share: parameter types, the ``--redact`` options, loading a
SCENARIO argument, the address to listen on (``--listen HOST:PORT`` or ``--host`` and
``--port``), claiming an output file (``--force``), and :func:`fail`, the one way a
user's mistake ends.

Every mistake in a user's file or arguments ends in :func:`fail`: one line per problem
on stderr and exit code 2; nothing a user can type produces a traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

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
    """Load a scenario or exit 2 with its problems (:func:`not_loaded`)."""
    from simulator.scenario import load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as e:
        fail(not_loaded(e, path))


def not_loaded(error: ScenarioError, path: str) -> SimError:
    """What to say when ``path`` could not be read as a scenario (or faults file):
    for a recording, one line saying so and what reads it (the reader's "not a text
    file" says only what it is not); else ``error``'s problems, with a hint for a file
    that does not exist (:func:`scenario_hint`)."""
    recording = recording_given(path)
    if recording is not None:
        return UsageError(recording)
    return with_hint(error, scenario_hint(path))


def with_faults(scenario: Scenario, faults_file: str) -> Scenario:
    """``scenario`` with the faults of ``faults_file`` added (``run --faults``, ``plan
    --faults``), or exit 2 with the file's problems."""
    from simulator.scenario import add_faults

    try:
        return add_faults(scenario, faults_file)
    except ScenarioError as e:
        fail(not_loaded(e, faults_file))


def faults_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--faults FILE`` of the commands that take a SCENARIO: its faults added."""
    return click.option(
        "--faults",
        type=click.Path(dir_okay=False),
        help="Add the [[fault]]s of this scenario or faults file to SCENARIO's own"
        " (default: none).",
    )(command)


def with_hint(error: SimError, hint: str | None) -> SimError:
    """``error`` with one more line, ``hint``, when there is one."""
    return UsageError(f"{error}\n{hint}") if hint else error


def recording_hint(path: str) -> str | None:
    """What to tell someone who gave a scenario where a recording belongs."""
    if Path(path).suffix == ".toml":
        return f"{path} looks like a scenario, not a recording: `sim run {path}` serves it"
    return None


PARQUET_MAGIC = b"PAR1"


def recording_given(path: str) -> str | None:
    """The line for a recording given where a scenario belongs (Parquet's magic bytes,
    or a ``.parquet`` name), else ``None``."""
    file = Path(path)
    if not file.is_file():
        return None
    with file.open("rb") as f:
        is_parquet = f.read(4) == PARQUET_MAGIC
    if not is_parquet and file.suffix != ".parquet":
        return None
    return (
        f"{path} is a recording, not a scenario: `sim replay {path}` serves it, "
        f"`sim inspect {path}` summarises it"
    )


def scenario_hint(path: str) -> str | None:
    """What to tell someone whose SCENARIO argument does not exist: which scenarios
    there are (in its directory, else in ``scenarios/``), the closest name first."""
    file = Path(path)
    if file.exists():
        return None
    candidates = [file.parent, Path("scenarios")] if file.parent != Path() else [Path("scenarios")]
    for folder in candidates:
        found = sorted(folder.glob("*.toml")) if folder.is_dir() else []
        if found:
            close = closest_name(file, found)
            mean = f"did you mean {close}? " if close else ""
            return f"{mean}scenarios in {folder}/: {', '.join(f.name for f in found)}"
    return None


def closest_name(missing: Path, files: list[Path]) -> Path | None:
    """The one of ``files`` whose name is close to ``missing``'s (a slip of a letter or
    two), else the only one whose name holds it whole (``flaky`` for
    ``flaky-network``), if any. Names are compared without their folder and ``.toml``:
    whole paths share so much (``/tmp/``, ``.toml``) that unrelated names looked close."""
    import difflib

    by_stem = {f.stem: f for f in files}
    close = difflib.get_close_matches(missing.stem, list(by_stem), n=1, cutoff=0.6)
    if not close and len(missing.stem) >= 3:
        holding = [stem for stem in by_stem if missing.stem in stem]
        close = holding if len(holding) == 1 else []
    return by_stem[close[0]] if close else None


HostT = TypeVar("HostT", bound=str | None)
PortT = TypeVar("PortT", bound=int | None)


def listen_address(listen: str | None, host: HostT, port: PortT) -> tuple[HostT, PortT]:
    """The address to serve on: ``--listen HOST:PORT``, else ``--host`` and ``--port``
    (either may be ``None``: the command's default). Raises :class:`UsageError` for
    both spellings at once or a malformed ``--listen``."""
    if listen is None:
        return host, port
    ctx = click.get_current_context()
    given = [
        f"--{name}"
        for name in ("host", "port")
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    ]
    if given:
        raise UsageError(f"--listen and {' and '.join(given)}: give the address one way")
    name, sep, number = listen.rpartition(":")
    if not sep or not number.isdigit() or not 0 <= int(number) <= 65535:
        raise UsageError(f"--listen {listen!r}: must be HOST:PORT, like 127.0.0.1:3003")
    # A concrete address fits wherever a default (or None) would have.
    return cast(HostT, name.strip("[]") or "127.0.0.1"), cast(PortT, int(number))


def listen_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--listen HOST:PORT``, the other spelling of ``--host`` and ``--port``."""
    return click.option(
        "--listen",
        metavar="HOST:PORT",
        help=f"The same as --host HOST --port PORT (default: {default}).",
    )


def claim_output(path: str, force: bool, *, segments: bool = True, remove: bool = True) -> None:
    """Make sure writing the recording ``path`` overwrites nothing unless ``force``;
    with ``force`` and ``remove``, remove the previous file (and, for ``segments``, the
    segments a killed recorder left) now. Pass ``remove=False`` when the writer replaces
    it once the work has succeeded: a failed run then loses nothing. Raises
    :class:`UsageError` otherwise."""
    import shutil

    from simulator.storage.writer import segment_dir

    out = Path(path)
    leftovers = segment_dir(out) if segments else None
    if out.is_dir():
        raise UsageError(f"{path}: is a directory")
    if not force:
        if out.exists():
            raise UsageError(f"{path}: already exists; pass --force to overwrite it")
        if leftovers is not None and leftovers.exists():
            raise UsageError(
                f"{path}: a killed recorder left segments in {leftovers}; "
                f"`sim recover {path}` rebuilds the file, --force discards them"
            )
        return
    if not remove:
        return
    try:
        out.unlink(missing_ok=True)
        if leftovers is not None and leftovers.exists():
            shutil.rmtree(leftovers)
    except OSError as e:
        raise UsageError(f"{path}: cannot remove the previous one: {e.strerror or e}") from None


def force_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--force``: overwrite an existing output file."""
    return click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")(
        command
    )


def network_failure(error: OSError, doing: str) -> NoReturn:
    """Exit 2 with one line for an OSError of the network (``doing``: ``serve``,
    ``record``, ...); an address in use gets the way out."""
    click.echo(network_failure_text(error, doing), err=True)
    sys.exit(EXIT_USAGE)


def network_failure_text(error: OSError, doing: str) -> str:
    """The line :func:`network_failure` prints."""
    reason = error.strerror or str(error)
    if error.errno == errno.EADDRINUSE:
        reason = (
            f"{reason}; stop what is using it, or pick another port (--port 0 picks a free one)"
        )
    return f"sim: cannot {doing}: {reason}"


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
        ("--tls-key", "FILE", "Private key (PEM, unencrypted) of --tls-cert (default: none)."),
        ("--tls-cert", "FILE", "Serve wss:// with this certificate chain (PEM) (default: ws://)."),
    ):
        kind = {"is_flag": True} if metavar is None else {"metavar": metavar}
        with_tls = click.option(name, help=text, **kind)(with_tls)
    return with_tls
