"""TOML → :class:`~simulator.core.model.Scenario`, with errors people can act on.

:func:`load_scenario` and :func:`parse_scenario` raise only :class:`ScenarioError`, which
holds every problem found (not just the first), one line each::

    scenarios/x.toml:14: stream[2].fields.cpu.std = -3: must be > 0
    scenarios/x.toml:3: stream[0].evry: unknown key; did you mean 'every'? (allowed: ...)

:func:`load_faults` and :func:`parse_faults` read the ``[[fault]]`` tables to apply to a
recording (``sim replay --faults``); :func:`add_faults` adds them to a scenario
(``sim run --faults``); :func:`load_scenario_or_faults` reads either kind of file
(``sim validate``). ``[scenario] extends`` builds a file on another one
(:mod:`.extends`). The language itself is documented in ``docs/scenario-reference.md``.

Import from here: the modules below are private and may change. A file goes through
them in this order, each depending only on the ones above it:

- :mod:`.text`      bytes → text → ``dict`` with tomllib (encoding and syntax errors);
- :mod:`.lines`     the line on which each key path is written;
- :mod:`.messages`  how paths and values are shown in a message;
- :mod:`.reader`    :class:`.reader.Context` collects problems, :class:`.reader.Table`
  checks one key at a time;
- :mod:`.fields`    ``[stream.fields]`` → field specs;
- :mod:`.streams`   ``[[stream]]``, its schedule and its envelope;
- :mod:`.server`    ``[server]`` and ``[protocol]``;
- :mod:`.faults`    ``[[fault]]`` → faults (kinds, targets, schedules);
- :mod:`.extends`   ``[scenario] extends``: a file joined with the one it builds on;
- :mod:`.document`  the whole file → :class:`~simulator.core.model.Scenario`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

from simulator.core.model import Scenario
from simulator.core.rates import mean_rate_per_s
from simulator.errors import Problem, ScenarioError
from simulator.scenario.document import FaultSet, build_fault_set, build_scenario
from simulator.scenario.extends import resolve_extends
from simulator.scenario.lines import LineIndex
from simulator.scenario.reader import Context
from simulator.scenario.streams import MAX_RATE_PER_S
from simulator.scenario.text import parse_toml

__all__ = [
    "MAX_RATE_PER_S",
    "FaultSet",
    "add_faults",
    "load_faults",
    "load_scenario",
    "load_scenario_or_faults",
    "mean_rate_per_s",
    "parse_faults",
    "parse_scenario",
    "scenario_from_dict",
]


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate the scenario file at ``path``.

    Raises :class:`ScenarioError` (and nothing else) when the file cannot be read or is not
    a valid scenario; print its ``str()`` to the user as it is.
    """
    return parse_scenario(_read(path), os.fsdecode(path))


def load_faults(
    path: str | os.PathLike[str],
    stream_names: Sequence[str],
    taken: Mapping[str, str] | None = None,
) -> FaultSet:
    """Read the faults to apply to a recording (or a scenario) whose streams are
    ``stream_names``.

    The file is a whole scenario (its ``[[fault]]`` tables are used) or a faults file:
    an optional ``[scenario]`` with a ``seed``, and ``[[fault]]`` tables. ``taken``
    maps fault names already in use to where (a file name): a fault of the file with
    one of them is an error. Raises :class:`ScenarioError` as :func:`load_scenario`
    does, including for a fault that names a stream the recording does not have.
    """
    return parse_faults(_read(path), stream_names, os.fsdecode(path), taken)


def add_faults(scenario: Scenario, path: str | os.PathLike[str]) -> Scenario:
    """``scenario`` with the faults of the file at ``path`` (as :func:`load_faults`
    reads it) added after its own: ``sim run --faults``.

    They are planned with the scenario's seed (a seed in the file is for
    ``sim replay``, which has no scenario); their names must differ from the
    scenario's (a name seeds a fault's draws). Raises :class:`ScenarioError`.
    """
    streams = [s.name for s in scenario.streams]
    taken = {f.name: scenario.source for f in scenario.faults}
    found = load_faults(path, streams, taken)
    return dataclasses.replace(scenario, faults=(*scenario.faults, *found.faults))


def load_scenario_or_faults(path: str | os.PathLike[str]) -> Scenario | FaultSet:
    """Read the file at ``path`` as what it is: a faults file (``[[fault]]`` tables, no
    ``[[stream]]`` and no ``extends``) as :func:`load_faults` reads it, any stream name
    allowed (it is checked against a recording or scenario only once it meets one),
    else a scenario.
    Raises :class:`ScenarioError` as :func:`load_scenario` does."""
    data, source = _read(path), os.fsdecode(path)
    doc, _ = parse_toml(data, source)
    header = doc.get("scenario")
    extends = isinstance(header, dict) and "extends" in header
    if "fault" in doc and "stream" not in doc and not extends:
        return parse_faults(data, _streams_named(doc["fault"]), source)
    return parse_scenario(data, source)


def _streams_named(faults: object) -> list[str]:
    """Every stream name the ``[[fault]]`` tables give in ``streams``: the streams a
    faults file read on its own may name."""
    tables = faults if isinstance(faults, list) else []
    return [
        name
        for table in tables
        if isinstance(table, dict) and isinstance(table.get("streams"), list)
        for name in table["streams"]
        if isinstance(name, str)
    ]


def parse_faults(
    text: str | bytes,
    stream_names: Sequence[str],
    source: str = "<faults>",
    taken: Mapping[str, str] | None = None,
) -> FaultSet:
    """:func:`load_faults` for text already read; ``source`` names it in errors."""
    doc, decoded = parse_toml(text, source)
    ctx = Context(source, LineIndex(decoded))
    joined = resolve_extends(ctx, doc)
    faults = None if joined is None else build_fault_set(ctx, joined, stream_names, taken or {})
    if ctx.problems:
        raise ScenarioError(ctx.problems)
    if faults is None:  # pragma: no cover - a builder gave up without saying why
        raise AssertionError("faults not built but no problem recorded")
    return faults


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = getattr(e, "strerror", None) or str(e)
        source = os.fsdecode(path)
        raise ScenarioError([Problem(source, None, "", f"cannot read: {reason}")]) from None


def parse_scenario(text: str | bytes, source: str = "<scenario>") -> Scenario:
    """Validate the scenario ``text``; ``source`` names it in error messages.

    Raises :class:`ScenarioError` (and nothing else) listing every problem found.
    """
    doc, decoded = parse_toml(text, source)
    return _built(Context(source, LineIndex(decoded)), doc)


def scenario_from_dict(doc: Mapping[str, object], source: str = "<dict>") -> Scenario:
    """Validate a scenario given as the tables a TOML file would hold
    (``{"scenario": {...}, "stream": [{...}]}``); problems name ``source`` and the key
    path, with no line.

    Raises :class:`ScenarioError` (and nothing else) listing every problem found.
    """
    return _built(Context(source, LineIndex("")), doc)


def _built(ctx: Context, doc: Mapping[str, object]) -> Scenario:
    joined = resolve_extends(ctx, dict(doc))
    scenario = None if joined is None else build_scenario(ctx, joined)
    if ctx.problems:
        raise ScenarioError(ctx.problems)
    if scenario is None:  # pragma: no cover - a builder gave up without saying why
        raise AssertionError("scenario not built but no problem recorded")
    return scenario
