"""The order derived fields are computed in, and the type of every field they may read.

Derived fields (:class:`~simulator.core.model.Derived`) read their siblings in the same
message by name and in the previous message as ``prev.<name>``. Reading a sibling in the
same message makes it a *dependency*: dependencies must not form a cycle (the loader
reports one with :func:`current_cycle`). Reading ``prev.`` does not, but it ties the
fields into a recurrence when it closes a loop (``revenue = prev.revenue + amount``):
such a group is computed one message after the other, everything else one chunk at a
time with numpy. :func:`plan` says which is which, in an order where everything a step
reads is computed before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from simulator.core.expr import Binary, Expr, Ref, VType, refs
from simulator.core.model import (
    JSON,
    Bool,
    Choice,
    Const,
    Counter,
    Cycle,
    Derived,
    Exponential,
    FieldSpec,
    LogNormal,
    Normal,
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

BUILTINS: dict[str, VType] = {"seq": VType.INT, "index": VType.INT}
"""Names every expression may read besides the sibling fields."""


def json_type(value: JSON) -> VType | None:
    """The expression type of a JSON value; ``None`` for null, arrays and objects."""
    if isinstance(value, bool):
        return VType.BOOL
    if isinstance(value, int):
        return VType.INT
    if isinstance(value, float):
        return VType.FLOAT
    if isinstance(value, str):
        return VType.STR
    return None


def common_type(values: Sequence[JSON]) -> VType | None:
    """The one type all ``values`` share (integers and floats share "number")."""
    types = {json_type(v) for v in values}
    if None in types or not types:
        return None
    if types <= {VType.INT, VType.FLOAT}:
        return VType.FLOAT if VType.FLOAT in types else VType.INT
    return types.pop() if len(types) == 1 else None


def field_type(spec: FieldSpec) -> VType | None:
    """The type of the values ``spec`` gives, or ``None`` when an expression cannot
    read it (objects, lists, nulls, a choice of several types, a derived field)."""
    if isinstance(spec, Const):
        return json_type(spec.value)
    if isinstance(spec, Uniform | Normal | LogNormal | Exponential | Walk):
        return VType.INT if spec.shape.round_to == 0 else VType.FLOAT
    if isinstance(spec, RandInt | Counter):
        return VType.INT
    if isinstance(spec, Bool):
        return VType.BOOL
    if isinstance(spec, Choice | Cycle):
        return common_type(spec.values)
    if isinstance(spec, Uuid | Template):
        return VType.STR
    if isinstance(spec, Timestamp):
        return {
            TimeFormat.ISO: VType.STR,
            TimeFormat.EPOCH_MS: VType.INT,
            TimeFormat.EPOCH_S: VType.FLOAT,
        }[spec.format]
    return None


def spread_types(spec: Spread) -> dict[str, VType | None]:
    """The type of each key a spread field merges into its parent."""
    inner = spec.inner
    if isinstance(inner, Object):
        return {name: field_type(child) for name, child in inner.fields}
    objects = [v for v in inner.values if isinstance(v, dict)]
    return {key: common_type([o[key] for o in objects]) for key in spec.keys}


def sibling_types(obj: Object) -> dict[str, VType | None]:
    """Every name an expression in ``obj`` may read, with its type (derived fields
    excluded: their types come from their expressions)."""
    out: dict[str, VType | None] = {}
    for name, spec in obj.fields:
        if isinstance(spec, Spread):
            out.update(spread_types(spec))
        elif not isinstance(spec, Derived):
            out[name] = field_type(spec)
    return out


# ----------------------------------------------------------------------------- order


@dataclass(frozen=True, slots=True)
class Vector:
    """Compute ``name`` for a whole chunk at once."""

    name: str


@dataclass(frozen=True, slots=True)
class RunningSum:
    """``name = prev.name + increment`` (or ``- increment``): a cumulative sum."""

    name: str
    increment: Expr
    sign: int


@dataclass(frozen=True, slots=True)
class Loop:
    """Fields tied by ``prev.``: computed message by message, in this order."""

    names: tuple[str, ...]


Step = Vector | RunningSum | Loop


def _edges(derived: Mapping[str, Derived], *, prev: bool) -> dict[str, list[str]]:
    return {
        name: [r.name for r in refs(d.expr) if r.prev == prev and r.name in derived]
        for name, d in derived.items()
    }


def current_cycle(derived: Mapping[str, Derived]) -> list[str] | None:
    """A cycle of same-message reads (``a = b + 1``, ``b = a - 1``) as ``[a, b, a]``,
    or ``None``: such fields could never be computed."""
    edges = _edges(derived, prev=False)
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in edges[name]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[name] = 2
        return None

    for name in derived:
        if name not in state and (found := visit(name)):
            return found
    return None


def plan(derived: Mapping[str, Derived]) -> list[Step]:
    """The steps that compute ``derived`` (which must have no :func:`current_cycle`)."""
    current = _edges(derived, prev=False)
    every = {n: [*current[n], *_edges(derived, prev=True)[n]] for n in derived}
    steps: list[Step] = []
    for group in _components(every):
        if len(group) == 1 and group[0] not in every[group[0]]:
            steps.append(Vector(group[0]))
            continue
        if len(group) == 1 and (summed := _running_sum(group[0], derived[group[0]])):
            steps.append(summed)
            continue
        steps.append(Loop(tuple(_ordered(group, current))))
    return steps


def _running_sum(name: str, d: Derived) -> RunningSum | None:
    """``prev.x + e``, ``e + prev.x`` or ``prev.x - e`` where ``e`` does not read x,
    with no bounds (a clipped total is a recurrence, not a sum)."""
    tree = d.expr
    if d.shape.min is not None or d.shape.max is not None or not isinstance(tree, Binary):
        return None

    def is_own(e: Expr) -> bool:
        return isinstance(e, Ref) and e.prev and e.name == name

    rest: Expr | None = None
    sign = 1
    if tree.op == "+" and is_own(tree.left):
        rest = tree.right
    elif tree.op == "+" and is_own(tree.right):
        rest = tree.left
    elif tree.op == "-" and is_own(tree.left):
        rest, sign = tree.right, -1
    if rest is None or any(r.name == name for r in refs(rest)):
        return None
    return RunningSum(name, rest, sign)


def _ordered(group: Sequence[str], current: Mapping[str, list[str]]) -> list[str]:
    """``group`` with every field after the fields it reads in the same message."""
    members = set(group)
    out: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for dep in current[name]:
            if dep in members:
                visit(dep)
        out.append(name)

    for name in group:
        visit(name)
    return out


def _components(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), dependencies before their readers."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            out.append(sorted(group, key=list(edges).index))

    for v in edges:
        if v not in index:
            visit(v)
    return out
