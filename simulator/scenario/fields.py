"""``[stream.fields]`` → :class:`~simulator.core.model.Object`: what each message carries.

A field is a constant (any value that is not a table), a generator (a table with one of
the keys in ``GENERATOR_KEYS``), or an object of named fields (any other table). Template
references (``"tx_{seq}"``) are checked against the sibling fields once all are read.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from simulator.core.field_keys import GENERATOR_KEYS, close_generator_key
from simulator.core.live import LiveKind
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
from simulator.core.scenario_limits import MAX_LIST_LEN
from simulator.scenario.derived import EXPR_KEYS, check_object, derived_field, spread_field
from simulator.scenario.lines import KeyPath
from simulator.scenario.messages import names, plain, quote, show, unknown
from simulator.scenario.reader import ABSENT, Context, Table, json_value

__all__ = ["stream_fields"]

_MAX_ROUND: Final = 12


def stream_fields(t: Table) -> Object | None:
    """The ``fields`` of the stream table ``t``: empty when absent."""
    raw = t.get("fields")
    if raw is ABSENT:
        return Object(())
    if not isinstance(raw, dict):
        t.ctx.bad(t.at("fields"), raw, "must be a table of fields ([stream.fields])")
        return None
    top = _object(t.ctx, raw, t.at("fields"), 0, typo_guard=False)
    return top if isinstance(top, Object) else None


_DISTS: Final[dict[str, tuple[str, ...]]] = {
    "uniform": ("min", "max", "round"),
    "normal": ("mean", "std", "min", "max", "round", "bounds"),
    "lognormal": ("mu", "sigma", "min", "max", "round", "bounds"),
    "exponential": ("mean", "min", "max", "round", "bounds"),
    "randint": ("min", "max"),
    "bool": ("p",),
    "walk": ("start", "step", "min", "max", "revert", "mean", "round", "bounds"),
    "counter": ("start", "step"),
    "uuid": (),
    "timestamp": ("format",),
}
# A table holding one of these keys is a generator; any other table is an object of fields.
_GENERATOR_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "choice": ("choice", "weights", "spread"),
    "cycle": ("cycle", "spread"),
    "const": ("const",),
    "template": ("template",),
    "list": ("list", "item"),
    "expr": EXPR_KEYS,
    "live": ("live",),
}
_TEMPLATE_BUILTINS: Final = ("seq", "index")


def _field(ctx: Context, value: object, path: KeyPath, depth: int) -> FieldSpec | None:
    if ctx.too_deep(path, depth):
        return None
    if not isinstance(value, dict):
        return _const(ctx, path, value, depth)
    kinds = [k for k in GENERATOR_KEYS if k in value]
    if not kinds:
        return _object(ctx, value, path, depth, typo_guard=True)
    if len(kinds) > 1:
        ctx.report(
            (*path, kinds[1]),
            f"together with '{kinds[0]}': a field has one generator"
            f" (one of {', '.join(GENERATOR_KEYS)})",
        )
        return None
    t = Table(ctx, value, path)
    kind = kinds[0]
    if kind == "dist":
        return _distribution(t)
    if kind == "expr":
        return derived_field(t)
    t.only(_GENERATOR_KEYS[kind])
    if kind == "choice":
        return _spread(t, _choice(t, depth))
    if kind == "cycle":
        values = _values(t, "cycle", depth)
        return _spread(t, None if values is None else Cycle(values))
    if kind == "const":
        return _const(ctx, t.at("const"), value["const"], depth + 1)
    if kind == "template":
        return _template(t)
    if kind == "live":
        live = t.choose("live", LiveKind, "live value")
        return None if live is None else Live(live)
    return _list(t, depth)


def _spread(t: Table, spec: FieldSpec | None) -> FieldSpec | None:
    """The choice or cycle ``spec``, as a :class:`Spread` when ``spread = true``."""
    flag = t.boolean("spread", default=False)
    if spec is None or not flag:
        return spec
    return spread_field(t.ctx, t.path, spec)


def _const(ctx: Context, path: KeyPath, value: object, depth: int) -> Const | None:
    mark = ctx.mark()
    const = json_value(ctx, path, value, depth)
    return None if ctx.failed_since(mark) else Const(const)


def _object(
    ctx: Context, data: Mapping[str, object], path: KeyPath, depth: int, *, typo_guard: bool
) -> Object | Spread | None:
    """Each key a field, in order; then check template references and expressions
    against siblings. A nested object with ``spread = true`` becomes a :class:`Spread`."""
    mark = ctx.mark()
    fields: list[tuple[str, FieldSpec]] = []
    unknown_kind: list[str] = []  # siblings that failed: may be referenced without more noise
    spread = typo_guard and isinstance(data.get("spread"), bool)
    for name, value in data.items():
        at = (*path, name)
        if spread and name == "spread":
            continue
        if not name:
            ctx.report(at, "empty field name: a field needs a name")
            continue
        if typo_guard and _looks_like_generator_typo(ctx, at, name, value):
            unknown_kind.append(name)
            continue
        spec = _field(ctx, value, at, depth + 1)
        if spec is None:
            unknown_kind.append(name)
        else:
            fields.append((name, spec))
    # A live value is filled in as the message goes out, after templates are rendered.
    templates = {n for n, spec in fields if isinstance(spec, Template | Live)}
    siblings = [k for k in Object(tuple(fields)).keys if k not in templates]
    for name, spec in fields:
        if isinstance(spec, Template):
            _check_templatenames(ctx, (*path, name, "template"), spec, [*siblings, *unknown_kind])
    # Expressions are checked even when a sibling failed (every mistake in one run,
    # not one round per kind), their references to it taken on trust.
    check_object(ctx, path, fields, failed=unknown_kind, complete=not ctx.failed_since(mark))
    if ctx.failed_since(mark):
        return None
    obj = Object(tuple(fields))
    if spread and data["spread"]:
        return Spread(obj, obj.keys)
    return obj


def _looks_like_generator_typo(ctx: Context, at: KeyPath, name: str, value: object) -> bool:
    """In a table with no generator key, ``{ dsit = "normal" }`` is most likely a
    misspelt generator, not an object with a field called ``dsit``."""
    if not isinstance(value, str | list):
        return False
    close = close_generator_key(name)
    if close is not None and close != name:
        ctx.report(
            at,
            f"unknown key; did you mean {close!r}? (for a field called"
            f" {show(name)}, write {names([name])} = {{ const = ... }})",
        )
        return True
    if name == "weights" and isinstance(value, list):
        ctx.report(
            at,
            "'weights' without 'choice' (for a field called 'weights',"
            " write weights = { const = ... })",
        )
        return True
    return False


def _distribution(t: Table) -> FieldSpec | None:
    name = t.data["dist"]
    if not isinstance(name, str):
        t.ctx.bad(t.at("dist"), name, f"must be a string, one of {', '.join(_DISTS)}")
        return None
    if name not in _DISTS:
        t.ctx.bad(t.at("dist"), name, unknown("distribution", name, list(_DISTS)))
        return None
    t.only(("dist", *_DISTS[name]))
    return _DIST_BUILDERS[name](t)


def _shape(t: Table) -> Numeric | None:
    """Optional ``min``/``max`` (clipped or reflected: ``bounds``) and ``round``, shared
    by the numeric distributions."""
    mark = t.ctx.mark()
    lo, hi = t.number("min"), t.number("max")
    round_to = t.integer("round", lo=0, hi=_MAX_ROUND)
    t.ordered("min", lo, "max", hi)
    bounds = t.choose("bounds", Bounds, "bounds")
    return None if t.ctx.failed_since(mark) else Numeric(lo, hi, round_to, bounds)


def _uniform(t: Table) -> FieldSpec | None:
    mark = t.ctx.mark()
    lo, hi = t.number("min", required="a number"), t.number("max", required="a number")
    round_to = t.integer("round", lo=0, hi=_MAX_ROUND)
    t.ordered("min", lo, "max", hi)
    if t.ctx.failed_since(mark) or lo is None or hi is None:
        return None
    return Uniform(lo, hi, Numeric(round_to=round_to))


def _normal(t: Table) -> FieldSpec | None:
    mean = t.number("mean", required="a number")
    std = t.number("std", required="a number > 0", gt=0)
    shape = _shape(t)
    if mean is None or std is None or shape is None:
        return None
    return Normal(mean, std, shape)


def _lognormal(t: Table) -> FieldSpec | None:
    mu = t.number("mu", required="a number, the mean of the underlying normal")
    sigma = t.number("sigma", required="a number > 0", gt=0)
    shape = _shape(t)
    if mu is None or sigma is None or shape is None:
        return None
    return LogNormal(mu, sigma, shape)


def _exponential(t: Table) -> FieldSpec | None:
    mean = t.number("mean", required="a number > 0", gt=0)
    shape = _shape(t)
    if mean is None or shape is None:
        return None
    return Exponential(mean, shape)


def _randint(t: Table) -> FieldSpec | None:
    mark = t.ctx.mark()
    lo, hi = t.integer("min", required="an integer"), t.integer("max", required="an integer")
    t.ordered("min", lo, "max", hi)
    if t.ctx.failed_since(mark) or lo is None or hi is None:
        return None
    return RandInt(lo, hi)


def _bool(t: Table) -> FieldSpec | None:
    p = t.number("p", default=0.5, ge=0, le=1)
    return None if p is None else Bool(p)


def _walk(t: Table) -> FieldSpec | None:
    mark = t.ctx.mark()
    start = t.number("start", required="a number")
    step = t.number("step", required="a number > 0", gt=0)
    revert = t.number("revert", default=0.0, ge=0, le=1)
    mean = t.number("mean")
    shape = _shape(t)
    if shape is not None:
        for key, x in (("start", start), ("mean", mean)):
            if x is not None and not _within(x, shape):
                t.ctx.bad(t.at(key), t.data[key], f"must be {_bounds(t)}")
    if t.ctx.failed_since(mark) or start is None or step is None or revert is None:
        return None
    if shape is None:
        return None
    return Walk(start, step, revert, mean, shape)


def _within(x: float, shape: Numeric) -> bool:
    return (shape.min is None or x >= shape.min) and (shape.max is None or x <= shape.max)


def _bounds(t: Table) -> str:
    lo, hi = t.data.get("min"), t.data.get("max")
    if lo is not None and hi is not None:
        return f"between min ({show(lo)}) and max ({show(hi)})"
    return f">= min ({show(lo)})" if lo is not None else f"<= max ({show(hi)})"


def _counter(t: Table) -> FieldSpec | None:
    mark = t.ctx.mark()
    start = t.integer("start", default=1)
    step = t.integer("step", default=1)
    if t.ctx.failed_since(mark) or start is None or step is None:
        return None
    return Counter(start, step)


def _uuid(t: Table) -> FieldSpec | None:
    return Uuid()


def _timestamp(t: Table) -> FieldSpec | None:
    fmt = t.choose("format", TimeFormat, "format", default=TimeFormat.ISO)
    return None if fmt is None else Timestamp(fmt)


_DIST_BUILDERS: Final[dict[str, Callable[[Table], FieldSpec | None]]] = {
    "uniform": _uniform,
    "normal": _normal,
    "lognormal": _lognormal,
    "exponential": _exponential,
    "randint": _randint,
    "bool": _bool,
    "walk": _walk,
    "counter": _counter,
    "uuid": _uuid,
    "timestamp": _timestamp,
}


def _values(t: Table, key: str, depth: int) -> tuple[JSON, ...] | None:
    """A non-empty array of JSON values (for ``choice`` and ``cycle``)."""
    raw = t.data[key]
    if not isinstance(raw, list) or not raw:
        t.ctx.bad(t.at(key), raw, "must be a non-empty array of values")
        return None
    mark = t.ctx.mark()
    values = tuple(json_value(t.ctx, (*t.at(key), i), v, depth + 1) for i, v in enumerate(raw))
    return None if t.ctx.failed_since(mark) else values


def _choice(t: Table, depth: int) -> FieldSpec | None:
    mark = t.ctx.mark()
    values = _values(t, "choice", depth)
    raw = t.get("weights")
    weights: tuple[float, ...] | None = None
    if raw is not ABSENT:
        if not isinstance(raw, list) or not raw:
            t.ctx.bad(t.at("weights"), raw, "must be a non-empty array of numbers >= 0")
        else:
            checked = [t.ctx.number((*t.at("weights"), i), w, ge=0) for i, w in enumerate(raw)]
            weights = tuple(w for w in checked if w is not None)
            if values is not None and len(raw) != len(values):
                t.ctx.bad(
                    t.at("weights"),
                    raw,
                    f"{_count(len(raw), 'weight')} for {_count(len(values), 'choice')}:"
                    " needs one weight per choice",
                )
            elif len(weights) == len(raw) and not sum(weights) > 0:
                t.ctx.bad(t.at("weights"), raw, "must not all be 0")
    if t.ctx.failed_since(mark) or values is None:
        return None
    return Choice(values, weights)


def _template(t: Table) -> FieldSpec | None:
    """``"tx_{seq}"``: plain ``{name}`` references only; names are checked by the caller."""
    text = t.data["template"]
    at = t.at("template")
    if not isinstance(text, str):
        t.ctx.bad(at, text, "must be a string with {name} references, like 'tx_{seq}'")
        return None
    names: list[str] = []
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as e:
        t.ctx.bad(at, text, f"not a template ({e}); write {{{{ and }}}} for literal braces")
        return None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or name.isdigit():
            t.ctx.bad(at, text, f"positional {{{name}}}: name a field instead, like {{seq}}")
            return None
        if any(c in name for c in ".[]"):
            t.ctx.bad(at, text, "attribute and index lookups are not supported: write {name}")
            return None
        if spec or conversion:
            t.ctx.bad(at, text, "format specs and conversions are not supported: write {name}")
            return None
        if name not in names:
            names.append(name)
    return Template(text, tuple(names))


def _check_templatenames(
    ctx: Context, path: KeyPath, template: Template, siblings: Sequence[str]
) -> None:
    allowed = [*siblings, *(b for b in _TEMPLATE_BUILTINS if b not in siblings)]
    for name in template.names:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {_ref(close[0])}?" if close else ""
            refs = ", ".join(_ref(n) for n in allowed)
            ctx.bad(
                path, template.text, f"{_ref(name)} is not a sibling field{hint} (allowed: {refs})"
            )


def _ref(name: str) -> str:
    return "{" + name + "}" if plain(name) else "{" + quote(name) + "}"


def _list(t: Table, depth: int) -> FieldSpec | None:
    mark = t.ctx.mark()
    raw = t.data["list"]
    lo = hi = 0
    if isinstance(raw, dict):
        sizes = Table(t.ctx, raw, t.at("list"))
        sizes.only(("min", "max"))
        lo_ = sizes.integer("min", required="an integer >= 0", lo=0, hi=MAX_LIST_LEN)
        hi_ = sizes.integer("max", required="an integer >= 0", lo=0, hi=MAX_LIST_LEN)
        sizes.ordered("min", lo_, "max", hi_)
        lo, hi = lo_ or 0, hi_ or 0  # 0 stands in only where a problem is recorded
    elif isinstance(raw, int) and not isinstance(raw, bool):
        lo = hi = t.ctx.integer(t.at("list"), raw, 0, MAX_LIST_LEN) or 0
    else:
        allowed = f"must be a length from 0 to {MAX_LIST_LEN}, or {{ min = 1, max = 5 }}"
        t.ctx.bad(t.at("list"), raw, allowed)
    item_raw = t.get("item", "the field each list item is drawn from")
    item = None if item_raw is ABSENT else _field(t.ctx, item_raw, t.at("item"), depth + 1)
    if isinstance(item, Template):
        _check_templatenames(t.ctx, (*t.at("item"), "template"), item, [])
    if isinstance(item, Derived | Spread):
        what = "an expression" if isinstance(item, Derived) else "a spread field"
        t.ctx.report(
            t.at("item"),
            f"{what} needs sibling fields: make the item an object of fields"
            " ({ a = ..., b = { expr = ... } })",
        )
    if t.ctx.failed_since(mark) or item is None:
        return None
    return ListOf(item, lo, hi)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
