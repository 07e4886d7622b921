"""``[scenario] extends = "base.toml"``: a scenario file built on another one.

The including file is read as if its tables were written over the base's:

- ``[scenario]``, ``[server]``, ``[protocol]``, ``[envelope]``: key by key, the
  including file's value wins (``extends`` itself is not inherited);
- ``[[stream]]``: the base's streams, in their order; an including stream whose
  ``name`` is a base stream's replaces it where it stands, any other is appended;
- ``[[fault]]``: the base's faults, then the including file's. A fault without a
  ``name`` is ``fault[<i>]`` counting the tables of its own file, so a file's faults
  decide the same whether it is extended or run alone; names must still be unique
  across both files.

A base may extend another one. The path is relative to the including file. A problem
anywhere is reported at the file and line it was written on (through
:attr:`.reader.Context.locate`), with its key path in that file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

from simulator.scenario.lines import KeyPath, LineIndex
from simulator.scenario.reader import Context, Located
from simulator.scenario.text import parse_toml

__all__ = ["MAX_DEPTH", "resolve_extends"]

#: How many files a chain of ``extends`` may hold (a longer one is surely a mistake).
MAX_DEPTH: Final = 16

_MERGED_TABLES: Final = ("scenario", "server", "protocol", "envelope")
_AT: Final = ("scenario", "extends")

_Place: TypeAlias = Callable[[KeyPath, KeyPath], None]


class _Origins:
    """Where each part of a joined document was written: a path prefix of the joined
    document → the file, its line index and the prefix there."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx  # the including file: what is not placed comes from it
        self._placed: dict[KeyPath, Located] = {}

    def place(self, prefix: KeyPath, origin: Located) -> None:
        self._placed[prefix] = origin

    def locate(self, path: KeyPath) -> Located:
        for n in range(len(path), 0, -1):
            found = self._placed.get(path[:n])
            if found is not None:
                source, index, local = found
                return source, index, (*local, *path[n:])
        return self._ctx.source, self._ctx.index, path


def resolve_extends(
    ctx: Context, doc: dict[str, object], chain: tuple[str, ...] = ()
) -> dict[str, object] | None:
    """``doc`` (the file of ``ctx``) joined with the file it extends, if it extends one,
    and ``ctx.locate`` set to find where each part was written; ``doc`` itself when it
    extends nothing. ``None`` with the problems in ``ctx`` when the base cannot be read
    or extends in a circle. ``chain`` holds the real paths of the files that extend
    this one (innermost last). A TOML syntax error in a base raises its
    :class:`ScenarioError` (naming the base file and line)."""
    meta = doc.get("scenario")
    if not isinstance(meta, dict) or "extends" not in meta:
        return doc
    raw = meta["extends"]
    if not isinstance(raw, str) or not raw.strip():
        ctx.bad(_AT, raw, "must be the path of a scenario file, relative to this one")
        return None
    base_path = os.path.join(os.path.dirname(ctx.source), raw)
    here = os.path.realpath(ctx.source)
    seen = (*chain, here)
    real = os.path.realpath(base_path)
    if real in seen:
        circle = [os.path.basename(p) for p in seen[seen.index(real) :]]
        circle.append(os.path.basename(real))
        ctx.bad(_AT, raw, f"extends itself: {' -> '.join(circle)}")
        return None
    if len(seen) >= MAX_DEPTH:
        ctx.bad(_AT, raw, f"too deep: a chain of extends holds at most {MAX_DEPTH} files")
        return None
    try:
        with open(base_path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = getattr(e, "strerror", None) or str(e)
        ctx.bad(_AT, raw, f"cannot read {base_path}: {reason}")
        return None
    base_doc, decoded = parse_toml(data, base_path)
    base_ctx = Context(base_path, LineIndex(decoded))
    resolved = resolve_extends(base_ctx, base_doc, seen)
    if resolved is None:
        ctx.problems.extend(base_ctx.problems)
        return None
    return _join(base_ctx, resolved, ctx, doc)


def _join(
    base_ctx: Context, base: Mapping[str, object], ctx: Context, doc: Mapping[str, object]
) -> dict[str, object]:
    """``doc`` written over ``base`` (see the module's rules); sets ``ctx.locate``."""
    origins = _Origins(ctx)

    def from_base(merged: KeyPath, there: KeyPath) -> None:
        origins.place(merged, base_ctx.where(there))

    def from_doc(merged: KeyPath, there: KeyPath) -> None:
        origins.place(merged, ctx.where(there))

    out: dict[str, object] = {}
    for key in dict.fromkeys([*base, *doc]):
        ours, theirs = doc.get(key), base.get(key)
        if key in _MERGED_TABLES and isinstance(ours, dict) and isinstance(theirs, dict):
            table: dict[str, object] = {}
            for k, v in theirs.items():
                table[k] = v
                from_base((key, k), (key, k))
            for k, v in ours.items():
                if (key, k) == _AT:
                    continue
                table[k] = v
                from_doc((key, k), (key, k))
            out[key] = table
        elif key == "stream" and isinstance(ours, list) and isinstance(theirs, list):
            out[key] = _streams(theirs, ours, from_base, from_doc)
        elif key == "fault" and isinstance(ours, list) and isinstance(theirs, list):
            out[key] = [*_named(theirs), *_named(ours)]
            for i in range(len(theirs)):
                from_base(("fault", i), ("fault", i))
            for j in range(len(ours)):
                from_doc(("fault", len(theirs) + j), ("fault", j))
        elif key in doc:
            out[key] = _without_extends(ours) if key == "scenario" else ours
            from_doc((key,), (key,))
        else:
            out[key] = theirs
            from_base((key,), (key,))
    ctx.locate = origins.locate
    return out


def _streams(
    base: list[object], ours: list[object], from_base: _Place, from_doc: _Place
) -> list[object]:
    streams = list(base)
    for i in range(len(base)):
        from_base(("stream", i), ("stream", i))
    names = [s.get("name") if isinstance(s, dict) else None for s in base]
    for j, stream in enumerate(ours):
        name = stream.get("name") if isinstance(stream, dict) else None
        if isinstance(name, str) and name in names:
            at = names.index(name)
            streams[at] = stream
        else:
            at = len(streams)
            streams.append(stream)
            names.append(name)
        from_doc(("stream", at), ("stream", j))
    return streams


def _named(faults: list[object]) -> list[object]:
    """Each fault table with its default name (``fault[<i>]`` in its own file) written
    in, so that joining files does not renumber it."""
    return [
        {"name": f"fault[{i}]", **f} if isinstance(f, dict) and "name" not in f else f
        for i, f in enumerate(faults)
    ]


def _without_extends(meta: object) -> object:
    if isinstance(meta, dict):
        return {k: v for k, v in meta.items() if k != "extends"}
    return meta
