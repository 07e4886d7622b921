"""Computing an object's derived fields, chunk after chunk of one stream's messages.

:class:`DerivedFields` belongs to one object of one stream in one scope, like every
stateful generator: it remembers the last value of each field read as ``prev.<name>``
so that the first message of a chunk sees the last of the chunk before, and the output
does not depend on how the messages were chunked. Fields are computed in the order of
:func:`~simulator.core.derived.plan`: independent ones with numpy over the whole chunk,
running sums with a cumulative sum, other recurrences message by message with the
same arithmetic (:func:`~simulator.core.expr.scalar`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from simulator.core.bounds import fold, shape
from simulator.core.derived import Loop, RunningSum, Step, Vector, plan
from simulator.core.expr import VType, refs, scalar, vectorised
from simulator.core.model import JSON, Bounds, Derived, Numeric

Column = npt.NDArray[Any]


class DerivedFields:
    """Call :meth:`columns` with each chunk's other columns, chunks in message order."""

    def __init__(self, derived: Mapping[str, Derived]) -> None:
        self._derived = dict(derived)
        self._steps: list[Step] = plan(derived)
        self._vector = {n: vectorised(d.expr) for n, d in derived.items()}
        self._scalar = {n: scalar(d.expr) for n, d in derived.items()}
        self._increment = {
            s.name: vectorised(s.increment) for s in self._steps if isinstance(s, RunningSum)
        }
        self._read = sorted({r.name for d in derived.values() for r in refs(d.expr)})
        self._read_prev = sorted({r.name for d in derived.values() for r in refs(d.expr) if r.prev})
        # The last value of each name read as prev., from the chunk before.
        self._carry: dict[str, Any] = {
            n: d.initial for n, d in derived.items() if d.initial is not None
        }

    def columns(
        self, columns: Mapping[str, list[JSON]], seq: Sequence[int], index: Column
    ) -> dict[str, list[JSON]]:
        """The derived columns for a chunk, given the other columns of the object."""
        n = len(seq)
        if n == 0:
            return {name: [] for name in self._derived}
        cur: dict[str, Column] = {}
        for name in self._read:
            if name in self._derived:
                continue
            if name in columns:
                cur[name] = np.asarray(columns[name])
            elif name == "seq":
                cur[name] = np.asarray(seq, dtype=np.int64)
            else:
                cur[name] = np.asarray(index, dtype=np.int64)
        prev = _Shifted(cur, self._carry)
        for step in self._steps:
            if isinstance(step, Vector):
                d = self._derived[step.name]
                raw = np.broadcast_to(self._vector[step.name](cur, prev), (n,))
                cur[step.name] = _bounded(raw, d)
            elif isinstance(step, RunningSum):
                increment = np.broadcast_to(self._increment[step.name](cur, prev), (n,))
                if step.sign < 0:
                    increment = np.negative(increment)
                path = np.cumsum(np.concatenate(([self._carry[step.name]], increment)))
                cur[step.name] = path[1:]
            else:
                self._loop(step, cur, prev, n)
        for name in self._read_prev:
            self._carry[name] = cur[name][-1].item()
        return {name: _output(cur[name], d) for name, d in self._derived.items()}

    def _loop(self, step: Loop, cur: dict[str, Column], prev: _Shifted, n: int) -> None:
        members = step.names
        reads = {r for m in members for r in refs(self._derived[m].expr)}
        outside_cur = {
            r.name: cur[r.name].tolist() for r in reads if not r.prev and r.name not in members
        }
        outside_prev = {
            r.name: prev[r.name].tolist() for r in reads if r.prev and r.name not in members
        }
        row_cur: dict[str, Any] = {}
        row_prev: dict[str, Any] = {m: self._carry.get(m) for m in members}
        results: dict[str, list[Any]] = {m: [] for m in members}
        functions = [(m, self._scalar[m], self._derived[m].shape) for m in members]
        for i in range(n):
            for name, values in outside_cur.items():
                row_cur[name] = values[i]
            for name, values in outside_prev.items():
                row_prev[name] = values[i]
            for m, f, numeric in functions:
                v = _bounded_value(_finite(f(row_cur, row_prev)), numeric)
                row_cur[m] = v
                results[m].append(v)
            for m in members:
                row_prev[m] = row_cur[m]
        for m in members:
            dtype = np.int64 if self._derived[m].type is VType.INT else None
            cur[m] = np.asarray(results[m], dtype=dtype)


class _Shifted(Mapping[str, Column]):
    """``prev[name]``: the column of ``name`` one message later, the carried value first
    (or, in a stream's first message, the field's own value: a difference starts at 0)."""

    def __init__(self, cur: Mapping[str, Column], carry: Mapping[str, Any]) -> None:
        self._cur = cur
        self._carry = carry
        self._cache: dict[str, Column] = {}

    def __getitem__(self, name: str) -> Column:
        if name not in self._cache:
            column = self._cur[name]
            first = self._carry.get(name, column[0])
            self._cache[name] = np.concatenate(([first], column[:-1]))
        return self._cache[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._cur)

    def __len__(self) -> int:
        return len(self._cur)


def _bounded(raw: Column, d: Derived) -> Column:
    """A derived column inside its ``min``/``max``, still unrounded."""
    lo, hi = d.shape.min, d.shape.max
    if (lo is None and hi is None) or not d.type.numeric:
        return raw
    if d.shape.bounds is Bounds.REFLECT:
        out = fold(raw.astype(np.float64), lo, hi)
    else:
        out = np.clip(raw, lo, hi)
    return np.rint(out).astype(np.int64) if d.type is VType.INT else out


_INT64_MAX: Final = 2**63 - 1


def _finite(v: Any) -> Any:
    """``v`` as a feed may carry it: an integer within 64 bits, a float finite (NaN as 0,
    an overflow as the largest float of its sign). A running product saturates rather
    than stopping the feed."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return max(-_INT64_MAX - 1, min(_INT64_MAX, v))
    if isinstance(v, float) and not math.isfinite(v):
        return 0.0 if math.isnan(v) else math.copysign(sys.float_info.max, v)
    return v


def _bounded_value(v: Any, numeric: Numeric) -> Any:
    lo, hi = numeric.min, numeric.max
    if (lo is None and hi is None) or isinstance(v, bool | str):
        return v
    if numeric.bounds is Bounds.REFLECT:
        out = float(fold(np.asarray([float(v)]), lo, hi)[0])
    else:
        out = min(max(v, -math.inf if lo is None else lo), math.inf if hi is None else hi)
    return round(out) if isinstance(v, int) else out


def _output(column: Column, d: Derived) -> list[JSON]:
    """What is sent: rounded as asked, integers as integers."""
    if d.type is VType.FLOAT:
        # NaN as 0, an overflow as the largest float of its sign: JSON has no infinity.
        finite = np.nan_to_num(column.astype(np.float64), nan=0.0)
        return shape(finite, Numeric(d.shape.min, d.shape.max, d.shape.round_to))
    if d.type is VType.INT:
        return column.astype(np.int64).tolist()  # type: ignore[no-any-return]
    return column.tolist()  # type: ignore[no-any-return]
