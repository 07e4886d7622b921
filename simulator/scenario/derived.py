"""``{ expr = "..." }`` fields and ``spread = true``: read one, then check an object's.

:func:`derived_field` reads one derived field's table (its expression must parse);
:func:`spread_field` checks that a spread choice/cycle gives objects with one key set.
Everything that needs the siblings is checked by :func:`check_object` once the whole
object is read: every name an expression reads exists and has a type, no two fields read
each other in the same message, a field read as ``prev.`` that is itself derived has an
``initial``, and every expression's type is consistent. Problems name the ``expr`` key
and the column in the expression.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Sequence
from typing import Final

from simulator.core.derived import BUILTINS, current_cycle, json_type, sibling_types
from simulator.core.expr import ExprError, VType, check, parse, refs
from simulator.core.model import (
    JSON,
    Bounds,
    Choice,
    Cycle,
    Derived,
    FieldSpec,
    Live,
    Numeric,
    Object,
    Spread,
    Template,
)
from simulator.scenario.lines import KeyPath
from simulator.scenario.messages import names
from simulator.scenario.reader import ABSENT, Context, Table

__all__ = ["EXPR_KEYS", "check_object", "derived_field", "spread_field"]

EXPR_KEYS: Final = ("expr", "initial", "min", "max", "round", "bounds")
_MAX_ROUND: Final = 12
_PLACEHOLDER: Final = VType.FLOAT  # the type until check_object works it out


def derived_field(t: Table) -> Derived | None:
    """``{ expr = "...", initial = ..., min, max, round, bounds }``, its names unchecked."""
    mark = t.ctx.mark()
    t.only(EXPR_KEYS)
    text = t.data["expr"]
    tree = None
    if not isinstance(text, str):
        t.ctx.bad(t.at("expr"), text, "must be a string, an expression like 'a - prev.a'")
    else:
        try:
            tree = parse(text)
        except ExprError as e:
            t.ctx.bad(t.at("expr"), text, str(e))
    initial = t.get("initial")
    if initial is not ABSENT and json_type(initial) is None:  # type: ignore[arg-type]
        t.ctx.bad(t.at("initial"), initial, "must be a number, a string or a boolean")
    lo, hi = t.number("min"), t.number("max")
    round_to = t.integer("round", lo=0, hi=_MAX_ROUND)
    t.ordered("min", lo, "max", hi)
    bounds = t.choose("bounds", Bounds, "bounds", default=Bounds.CLIP)
    if t.ctx.failed_since(mark) or tree is None or not isinstance(text, str):
        return None
    value = None if initial is ABSENT else initial
    return Derived(text, tree, _PLACEHOLDER, value, Numeric(lo, hi, round_to, bounds))  # type: ignore[arg-type]


def spread_field(ctx: Context, path: KeyPath, inner: FieldSpec) -> Spread | None:
    """``spread = true`` on a choice or cycle of objects that all have the same keys."""
    if isinstance(inner, Object):
        return Spread(inner, inner.keys)
    if not isinstance(inner, Choice | Cycle):
        ctx.report((*path, "spread"), "only a choice or cycle of objects can be spread")
        return None
    key = "choice" if isinstance(inner, Choice) else "cycle"
    objects = [v for v in inner.values if isinstance(v, dict)]
    if len(objects) != len(inner.values):
        ctx.report((*path, key), "spread = true needs every value to be an object ({ a = 1, ... })")
        return None
    keys = tuple(objects[0])
    for i, v in enumerate(objects):
        if tuple(v) != keys:
            ctx.report(
                (*path, key, i),
                f"has keys {names(v)} where the first has {names(keys)}: the objects of a"
                " spread field need the same keys in the same order (every message has them)",
            )
            return None
    return Spread(inner, keys)


def check_object(
    ctx: Context,
    path: KeyPath,
    fields: list[tuple[str, FieldSpec]],
    *,
    failed: Collection[str] = (),
    complete: bool = True,
) -> None:
    """Check the derived and spread fields of one object in place (types filled in).
    ``failed`` names the siblings that could not be read (an error was reported): a
    reference to one is not an unknown name. Cycles and types are worked out only when
    the object is ``complete`` (nothing in it failed): they need every sibling."""
    mark = ctx.mark()
    _check_keys(ctx, path, fields)
    derived = {n: d for n, d in fields if isinstance(d, Derived)}
    if not derived or ctx.failed_since(mark):
        return
    known: dict[str, VType | None] = {**BUILTINS, **sibling_types(Object(tuple(fields)))}
    live = {n for n, spec in fields if isinstance(spec, Live)}
    templates = {n for n, spec in fields if isinstance(spec, Template)}
    for name, d in derived.items():
        at = (*path, name, "expr")
        for ref in refs(d.expr):
            if ref.name in templates:
                message = f"{ref.name!r} is a template, filled in after derived fields"
                ctx.bad(at, d.text, f"at column {ref.at}: {message}")
                continue
            if ref.name in derived or known.get(ref.name) is not None or ref.name in failed:
                continue
            allowed = [*known, *derived]
            if ref.name in live:
                message = f"{ref.name!r} is a live value, known only as the message is sent"
            elif ref.name in known:
                message = f"{ref.name!r} is an object, a list, null or of mixed types: not a value"
            else:
                close = difflib.get_close_matches(ref.name, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                message = f"unknown name {ref.name!r}{hint} (allowed: {names(allowed)})"
            ctx.bad(at, d.text, f"at column {ref.at}: {message}")
            continue
        for ref in refs(d.expr):
            if ref.prev and ref.name in derived and derived[ref.name].initial is None:
                ctx.bad(
                    at,
                    d.text,
                    f"at column {ref.at}: prev.{ref.name} reads a derived field in the first"
                    f" message too: give {ref.name} an initial value (initial = ...)",
                )
                break
    if ctx.failed_since(mark) or not complete:
        return
    cycle = current_cycle(derived)
    if cycle:
        ctx.bad(
            (*path, cycle[0], "expr"),
            derived[cycle[0]].text,
            f"fields read each other in the same message ({' -> '.join(cycle)}):"
            " one of them must read prev.<name> instead",
        )
        return
    types = _infer(ctx, path, derived, known)
    if types is None:
        return
    for i, (name, spec) in enumerate(fields):
        if isinstance(spec, Derived):
            fields[i] = (name, dataclasses.replace(spec, type=types[name]))


def _check_keys(ctx: Context, path: KeyPath, fields: Sequence[tuple[str, FieldSpec]]) -> None:
    """A spread key must not clash with another key of the parent."""
    seen: dict[str, str] = {}
    for name, spec in fields:
        for key in spec.keys if isinstance(spec, Spread) else (name,):
            if key in seen:
                clash = name if isinstance(spec, Spread) else seen[key]
                ctx.report(
                    (*path, clash),
                    f"spreads key {key!r}, which the object already has: each key once",
                )
            seen[key] = name


def _infer(
    ctx: Context, path: KeyPath, derived: dict[str, Derived], known: dict[str, VType | None]
) -> dict[str, VType] | None:
    """Each derived field's type. A recurrence starts from its ``initial``'s type; an
    integer that meets a float becomes a float, and the pass repeats until it settles."""
    types: dict[str, VType] = {k: v for k, v in known.items() if v is not None}
    guess: dict[str, VType | None] = {n: _initial_type(d.initial) for n, d in derived.items()}
    mark = ctx.mark()
    for _ in range(len(derived) + 2):
        changed = False
        for name, d in derived.items():
            reads = {r.name for r in refs(d.expr)}
            env = {**types, **{n: t for n, t in guess.items() if t is not None}}
            if not reads <= env.keys():
                continue
            try:
                t = check(d.expr, env)
            except ExprError as e:
                ctx.bad((*path, name, "expr"), d.text, str(e))
                return None
            before = guess[name]
            if before is not None and before != t:
                if before.numeric and t.numeric:
                    t = VType.FLOAT
                else:
                    ctx.bad(
                        (*path, name, "initial"),
                        d.initial,
                        f"is {before.article} but the expression gives {t.article}",
                    )
                    return None
            if before != t:
                guess[name] = t
                changed = True
        if not changed:
            break
    out: dict[str, VType] = {}
    for name, d in derived.items():
        found = guess[name]
        if found is None:  # pragma: no cover - every read is typed once cycles are excluded
            ctx.bad((*path, name, "expr"), d.text, "cannot tell the type of this expression")
            continue
        t = found
        if not t.numeric and (
            d.shape.min is not None or d.shape.max is not None or d.shape.round_to is not None
        ):
            ctx.bad(
                (*path, name, "expr"),
                d.text,
                f"gives {t.article}: min, max and round need a number",
            )
        out[name] = t
    return None if ctx.failed_since(mark) else out


def _initial_type(value: JSON) -> VType | None:
    return None if value is None else json_type(value)
