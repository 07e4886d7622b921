"""Field values: a field spec tree compiled into column generators.

:func:`compile_fields` turns an :class:`~simulator.core.model.Object` into a
:class:`Generator` that yields the ``data`` objects of ``n`` messages at a time. Each
leaf takes a fixed number of words per message (its ``width``) from the slice of the
stream's draws that belongs to it, so values are a pure function of the words, and
the words of message ``i`` are fixed by the seed. Stateful leaves (walks, counters)
carry their state from one chunk to the next: a compiled generator belongs to one
scope of one stream and must be fed its messages in order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import numpy.typing as npt

from simulator.core.bounds import fold, shape
from simulator.core.derived_values import DerivedFields
from simulator.core.draws import Floats, Words, standard_normal, unit
from simulator.core.live import placeholder
from simulator.core.model import (
    JSON,
    Bool,
    Bounds,
    Choice,
    Const,
    Counter,
    Cycle,
    Derived,
    Exponential,
    FieldSpec,
    ListOf,
    Live,
    LogNormal,
    Normal,
    Numeric,
    Object,
    RandInt,
    Spread,
    Template,
    TimeFormat,
    Timestamp,
    Uniform,
    Uuid,
    Walk,
)


@dataclass(frozen=True, slots=True)
class Context:
    """What every leaf may read about the messages of a chunk."""

    n: int
    seq: list[int]  # the envelope's seq of each message
    index: npt.NDArray[np.int64]  # message index, or the item's index inside a list
    wall_ns: npt.NDArray[np.int64]  # epoch + message time, Unix ns

    def with_index(self, index: int) -> Context:
        return Context(self.n, self.seq, np.full(self.n, index, dtype=np.int64), self.wall_ns)


class Generator(Protocol):
    width: int

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        """The values of ``ctx.n`` messages, given their ``(n, width)`` words."""
        ...


def compile_object(spec: Object) -> _Object:
    """A fresh generator for a message's ``data`` object (see :meth:`_Object.columns`)."""
    return _Object(spec)


def compile_fields(spec: FieldSpec) -> Generator:
    """A fresh generator for ``spec``; state (walks, counters) starts at the beginning."""
    if isinstance(spec, Object):
        return _Object(spec)
    if isinstance(spec, ListOf):
        return _List(spec)
    if isinstance(spec, Const):
        return _Const(spec.value)
    if isinstance(spec, Uniform | Normal | LogNormal | Exponential):
        return _Continuous(spec)
    if isinstance(spec, RandInt):
        return _RandInt(spec)
    if isinstance(spec, Choice):
        return _Choice(spec)
    if isinstance(spec, Cycle):
        return _Cycle(spec)
    if isinstance(spec, Bool):
        return _Bool(spec)
    if isinstance(spec, Walk):
        return _Walk(spec)
    if isinstance(spec, Counter):
        return _Counter(spec)
    if isinstance(spec, Uuid):
        return _Uuid()
    if isinstance(spec, Timestamp):
        return _Timestamp(spec.format)
    if isinstance(spec, Live):
        return _Const(placeholder(spec.kind))
    if isinstance(spec, Template):
        return _ItemTemplate(spec)
    raise TypeError(f"templates, derived and spread fields are evaluated by their object: {spec!r}")


class _Const:
    width = 0

    def __init__(self, value: JSON) -> None:
        self._value = value

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        return [self._value] * ctx.n


class _Continuous:
    def __init__(self, spec: Uniform | Normal | LogNormal | Exponential) -> None:
        self._spec = spec
        self.width = 2 if isinstance(spec, Normal | LogNormal) else 1
        # A uniform's range is its bounds: rounding must not step past them either.
        self._shape = (
            Numeric(spec.low, spec.high, spec.shape.round_to)
            if isinstance(spec, Uniform)
            else spec.shape
        )

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        s = self._spec
        if isinstance(s, Uniform):
            x = s.low + unit(words[:, 0]) * (s.high - s.low)
        elif isinstance(s, Normal):
            x = s.mean + s.std * standard_normal(words[:, 0], words[:, 1])
        elif isinstance(s, LogNormal):
            x = np.exp(s.mu + s.sigma * standard_normal(words[:, 0], words[:, 1]))
        else:
            x = -np.log1p(-unit(words[:, 0])) * s.mean
        return shape(x, self._shape)


class _RandInt:
    width = 1

    def __init__(self, spec: RandInt) -> None:
        self._spec = spec

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        span = self._spec.high - self._spec.low + 1
        # Multiply-shift keeps the full 64 bits for spans up to 2**32 and is exact in Python
        # ints above that; the bias is below 2**-32 either way.
        if span <= 1 << 32:
            picks = ((words[:, 0] >> np.uint64(32)) * np.uint64(span)) >> np.uint64(32)
            return (picks.astype(np.int64) + self._spec.low).tolist()  # type: ignore[no-any-return]
        return [self._spec.low + (w * span >> 64) for w in words[:, 0].tolist()]


class _Choice:
    width = 1

    def __init__(self, spec: Choice) -> None:
        self._values = spec.values
        weights = np.asarray(spec.weights or [1.0] * len(spec.values), dtype=np.float64)
        self._cumulative = np.cumsum(weights / weights.sum())
        # Guard against rounding leaving a gap at the top: the last value with a
        # positive weight (never a zero-weight one) takes everything up to 1.
        last = int(np.flatnonzero(weights > 0)[-1])
        self._cumulative[last:] = 1.0

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        picks = np.searchsorted(self._cumulative, unit(words[:, 0]), side="right")
        values = self._values
        return [values[i] for i in picks.tolist()]


class _Cycle:
    width = 0

    def __init__(self, spec: Cycle) -> None:
        self._values = spec.values

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        values = self._values
        return [values[i] for i in (ctx.index % len(values)).tolist()]


class _Bool:
    width = 1

    def __init__(self, spec: Bool) -> None:
        self._p = spec.p_true

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        return (unit(words[:, 0]) < self._p).tolist()  # type: ignore[no-any-return]


class _Walk:
    """Each message shows the current position, then takes one step.

    Without mean reversion the walk is vectorised: a walk reflected at its bounds is
    the free walk folded into the band (reflection commutes with adding steps), so we
    keep the free position and fold it on output. With reversion the pull depends on
    the position, and a clipped walk (``bounds = "clip"``) stays on the bound it
    stepped past, so those step one message at a time.
    """

    width = 2

    def __init__(self, spec: Walk) -> None:
        self._spec = spec
        self._x = spec.start  # the free (unfolded) position when revert == 0
        self._mean = spec.mean if spec.mean is not None else spec.start

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        s = self._spec
        steps = s.step * standard_normal(words[:, 0], words[:, 1])
        if s.revert == 0.0 and s.shape.bounds is not Bounds.CLIP:
            # Sum from the exact last position so chunk boundaries never regroup the
            # additions (float sums depend on grouping; output must not).
            path = np.cumsum(np.concatenate(([self._x], steps)))
            self._x = float(path[-1])
            return shape(fold(path[:-1], s.shape.min, s.shape.max), s.shape)
        return shape(self._stepwise(steps.tolist()), s.shape)

    def _stepwise(self, steps: list[float]) -> Floats:
        s = self._spec
        lo = s.shape.min if s.shape.min is not None else -np.inf
        hi = s.shape.max if s.shape.max is not None else np.inf
        revert, mean = s.revert, self._mean
        out = np.empty(len(steps), dtype=np.float64)
        x = self._x
        if s.shape.bounds is Bounds.CLIP:
            for i, step in enumerate(steps):
                out[i] = x
                x = min(max(x + revert * (mean - x) + step, lo), hi)
        else:
            for i, step in enumerate(steps):
                out[i] = x
                x = float(fold(np.asarray(x + revert * (mean - x) + step), lo, hi))
        self._x = x
        return out


class _Counter:
    width = 0

    def __init__(self, spec: Counter) -> None:
        self._next = spec.start
        self._step = spec.step

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        start, step = self._next, self._step
        self._next = start + step * ctx.n
        return list(range(start, self._next, step)) if step else [start] * ctx.n


class _Uuid:
    width = 2

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        raw = words.astype(">u8").tobytes()
        return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, len(raw), 16)]


def format_times(wall_ns: npt.NDArray[np.int64], fmt: TimeFormat) -> list[JSON]:
    """Unix ns as ISO 8601 strings with milliseconds and ``Z``, or epoch ms / s numbers."""
    if fmt is TimeFormat.ISO:
        millis = wall_ns.astype("datetime64[ns]").astype("datetime64[ms]")
        return np.datetime_as_string(millis, timezone="UTC").tolist()  # type: ignore[no-any-return]
    millis = wall_ns // 1_000_000
    if fmt is TimeFormat.EPOCH_MS:
        return millis.tolist()  # type: ignore[no-any-return]
    return (millis / 1000.0).tolist()  # type: ignore[no-any-return]


_UNIX_EPOCH = datetime(1970, 1, 1)


def format_time_iso(wall_ns: int) -> str:
    """One Unix ns time as :func:`format_times` writes it in ISO (the same string, for
    any int64), without numpy: about 3x quicker for a single value (a pong's)."""
    seconds, millis = divmod(wall_ns // 1_000_000, 1000)  # floor, as numpy's cast
    # Whole seconds: isoformat() writes no fraction; int64 ns are 4-digit years.
    return (_UNIX_EPOCH + timedelta(seconds=seconds)).isoformat() + f".{millis:03d}Z"


class _Timestamp:
    width = 0

    def __init__(self, fmt: TimeFormat) -> None:
        self._format = fmt

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        return format_times(ctx.wall_ns, self._format)


class _Object:
    """An object's fields: generators first, then spread keys split out, then derived
    fields (which read them), then templates (which may read any of them)."""

    def __init__(self, spec: Object) -> None:
        self._keys = list(spec.keys)
        self._parts: list[tuple[str, Generator, int]] = []
        self._spreads: list[tuple[str, tuple[str, ...]]] = []
        self._templates: list[tuple[str, Template]] = []
        derived: dict[str, Derived] = {}
        offset = 0
        for name, child in spec.fields:
            if isinstance(child, Template):
                self._templates.append((name, child))
                continue
            if isinstance(child, Derived):
                derived[name] = child
                continue
            if isinstance(child, Spread):
                self._spreads.append((name, child.keys))
                child = child.inner
            gen = compile_fields(child)
            self._parts.append((name, gen, offset))
            offset += gen.width
        self._derived = DerivedFields(derived) if derived else None
        self.width = offset

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def columns(self, words: Words, ctx: Context) -> list[list[JSON]]:
        """The value columns of the keys, in order."""
        columns: dict[str, list[JSON]] = {
            name: gen.column(words[:, off : off + gen.width], ctx) for name, gen, off in self._parts
        }
        for name, keys in self._spreads:
            objects: list[dict[str, JSON]] = columns.pop(name)  # type: ignore[assignment]
            for key in keys:
                columns[key] = [o[key] for o in objects]
        if self._derived is not None:
            columns.update(self._derived.columns(columns, ctx.seq, ctx.index))
        for name, template in self._templates:
            columns[name] = self._render(template, columns, ctx)
        return [columns[k] for k in self._keys]

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        keys = self._keys
        if not keys:  # {}: zip would make no rows at all, not one empty object a message
            return [{} for _ in range(ctx.n)]
        return [
            dict(zip(keys, row, strict=True)) for row in zip(*self.columns(words, ctx), strict=True)
        ]

    @staticmethod
    def _render(template: Template, columns: dict[str, list[JSON]], ctx: Context) -> list[JSON]:
        sources: dict[str, list[JSON]] = {"seq": list(ctx.seq), "index": ctx.index.tolist()}
        sources.update(columns)
        names = template.names
        picked = [sources[name] for name in names]
        text = template.text
        return (
            [
                text.format_map(dict(zip(names, row, strict=True)))
                for row in zip(*picked, strict=True)
            ]
            if names
            else [text] * ctx.n
        )


class _ItemTemplate:
    """A template that is a list's item, not an object's field: it has no siblings, so it
    reads only ``seq`` and ``index`` (the item's place in the list)."""

    width = 0

    def __init__(self, spec: Template) -> None:
        self._template = spec

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        return _Object._render(self._template, {}, ctx)


class _List:
    def __init__(self, spec: ListOf) -> None:
        self._min, self._max = spec.min_len, spec.max_len
        self._slots = [compile_fields(spec.item) for _ in range(spec.max_len)]
        self._item_width = self._slots[0].width if self._slots else 0
        self._count_width = 1 if spec.min_len < spec.max_len else 0
        self.width = self._count_width + self._item_width * spec.max_len

    def column(self, words: Words, ctx: Context) -> list[JSON]:
        w = self._item_width
        base = self._count_width
        slots = [
            slot.column(words[:, base + j * w : base + (j + 1) * w], ctx.with_index(j))
            for j, slot in enumerate(self._slots)
        ]
        rows = [list(items) for items in zip(*slots, strict=True)] if slots else [[]] * ctx.n
        if not self._count_width:
            return rows  # type: ignore[return-value]
        span = self._max - self._min + 1
        counts = (self._min + np.floor(unit(words[:, 0]) * span)).astype(np.int64).tolist()
        return [row[:c] for row, c in zip(rows, counts, strict=True)]
