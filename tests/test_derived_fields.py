"""Derived fields (``expr``), ``spread = true`` and ``bounds``, from TOML to the values sent.

Scenarios are parsed from text and rendered through the real timeline; errors are
checked as the user reads them (``file:line: path = found: message``).
"""

from __future__ import annotations

import json
import textwrap
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.expr import ExprError, VType, check, parse, scalar, vectorised
from simulator.core.timeline import Timeline
from simulator.errors import ScenarioError
from simulator.scenario import parse_scenario

HEAD = '[scenario]\nname = "t"\nseed = 3\n[[stream]]\nname = "s"\nevery = "1s"\n[stream.fields]\n'


def scenario(body: str) -> str:
    """A one-stream scenario whose fields start on line 8."""
    return HEAD + textwrap.dedent(body).lstrip("\n")


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.toml")
    return str(info.value).splitlines()


def data(text: str, n: int, chunk: int | None = None) -> list[dict[str, object]]:
    """The ``data`` of the first ``n`` messages of the scenario's one stream."""
    timeline = Timeline(parse_scenario(text, "x.toml"), chunk=chunk)
    out: list[dict[str, object]] = []
    t = 0
    while len(out) < n:
        t += 60 * 10**9
        out.extend(json.loads(p)["data"] for p in timeline.take_until(t).payloads)
    return out[:n]


# ============================================================================ values


def test_a_difference_of_consecutive_values_matches_the_values_sent() -> None:
    rows = data(
        scenario("""
        price = { dist = "walk", start = 0.15, step = 0.006, min = 0.08, max = 0.25, round = 4 }
        change = { expr = "price - prev.price", round = 4 }
        """),
        500,
    )
    assert rows[0]["change"] == 0
    for a, b in pairwise(rows):
        assert b["change"] == pytest.approx(b["price"] - a["price"], abs=1e-9)  # type: ignore[operator]


def test_a_running_total_adds_each_message_to_the_last_total_sent() -> None:
    rows = data(
        scenario("""
        amount = { dist = "uniform", min = 10, max = 20, round = 2 }
        total = { expr = "prev.total + amount", initial = 1000.0, round = 2 }
        n = { expr = "prev.n + 1", initial = 0 }
        """),
        300,
    )
    assert rows[0]["total"] == pytest.approx(1000 + rows[0]["amount"])  # type: ignore[operator]
    assert [r["n"] for r in rows] == list(range(1, 301))
    for a, b in pairwise(rows):
        assert b["total"] == pytest.approx(a["total"] + b["amount"], abs=0.0051)  # type: ignore[operator]


RECURRENT = scenario("""
    x = { dist = "normal", mean = 0, std = 1 }
    a = { expr = "prev.b + x", initial = 0.0, min = -5, max = 5 }
    b = { expr = "if(a > 0, a / 2, prev.a - 1)", initial = 1.0 }
    tag = { expr = "if(a > b, 'up', 'down')" }
    total = { expr = "prev.total + abs(a)", initial = 0.0, max = 50, bounds = "reflect" }
    """)


@settings(max_examples=20, deadline=None)
@given(chunk=st.integers(1, 40))
def test_derived_values_do_not_depend_on_the_chunk_size(chunk: int) -> None:
    assert data(RECURRENT, 120, chunk=chunk) == data(RECURRENT, 120, chunk=4096)


def test_a_recurrence_is_computed_message_by_message_as_written() -> None:
    rows = data(RECURRENT, 200)
    prev_a, prev_b, prev_total = 0.0, 1.0, 0.0
    for r in rows:
        a = min(max(prev_b + r["x"], -5), 5)  # type: ignore[operator]
        b = a / 2 if a > 0 else prev_a - 1
        total = prev_total + abs(a)
        if total > 50:
            total = 100 - total
        expected = (pytest.approx(a), pytest.approx(b), "up" if a > b else "down")
        assert (r["a"], r["b"], r["tag"]) == expected
        assert r["total"] == pytest.approx(total)
        prev_a, prev_b, prev_total = a, b, total


def test_expressions_read_builtins_strings_and_booleans() -> None:
    rows = data(
        scenario("""
        kind = { cycle = ["buy", "sell"] }
        up = { dist = "bool", p = 0.5 }
        signed = { expr = "if(kind == 'buy', seq, -seq)" }
        flag = { expr = "up and not (index % 3 == 0)" }
        pct = { expr = "round(seq / 3 * 100, 1)" }
        """),
        6,
    )
    assert [r["signed"] for r in rows] == [1, -2, 3, -4, 5, -6]
    flags = [bool(r["up"]) and i % 3 != 0 for i, r in enumerate(rows)]
    assert [r["flag"] for r in rows] == flags
    assert rows[2]["pct"] == 100.0 and isinstance(rows[0]["signed"], int)


def test_division_by_zero_gives_zero_not_nan() -> None:
    rows = data(scenario('z = 0\nq = { expr = "seq / z + seq % z" }\n'), 3)
    assert [r["q"] for r in rows] == [0.0, 0.0, 0.0]


def test_a_recurrence_that_outgrows_its_type_saturates_instead_of_stopping_the_feed() -> None:
    """Integers stay within 64 bits and floats finite (JSON has no infinity): a running
    product ends on the largest value of its type rather than raising mid-feed."""
    rows = data(
        scenario(
            'a = { expr = "prev.a * 2", initial = 1 }\n'
            'b = { expr = "prev.b * 1e10", initial = 2.0 }\n'
        ),
        70,
    )
    assert rows[-1]["a"] == 2**63 - 1
    assert rows[-1]["b"] == 1.7976931348623157e308
    assert all(isinstance(r["a"], int) and r["a"] > 0 for r in rows)


# ============================================================================ spread


def test_a_spread_choice_of_objects_sends_its_keys_flat_in_place() -> None:
    rows = data(
        scenario("""
        id = { dist = "counter" }
        notice = { spread = true, choice = [
            { level = "info", message = "a" },
            { level = "warning", message = "b" },
        ], weights = [3, 1] }
        after = "x"
        """),
        400,
    )
    assert all(list(r) == ["id", "level", "message", "after"] for r in rows)
    assert {(r["level"], r["message"]) for r in rows} == {("info", "a"), ("warning", "b")}
    warnings = sum(r["level"] == "warning" for r in rows)
    assert 60 < warnings < 140  # a quarter of 400, within 4 standard errors


def test_a_spread_cycle_and_a_spread_object_merge_and_expressions_read_their_keys() -> None:
    rows = data(
        scenario("""
        c = { spread = true, cycle = [{ k = 1 }, { k = 2 }] }
        twice = { expr = "k * 2" }
        [stream.fields.meta]
        spread = true
        region = "eu"
        n = { dist = "counter", start = 5 }
        """),
        3,
    )
    assert rows == [
        {"k": 1, "twice": 2, "region": "eu", "n": 5},
        {"k": 2, "twice": 4, "region": "eu", "n": 6},
        {"k": 1, "twice": 2, "region": "eu", "n": 7},
    ]


# ============================================================================ bounds


def test_reflected_bounds_leave_nothing_on_the_bound_where_clipped_ones_pile_up() -> None:
    volume = 'dist = "lognormal", mu = 9.9, sigma = 0.5, min = 5000, max = 50000, round = 2'
    walk = 'dist = "walk", start = 1, step = 2, min = 0, max = 10, round = 2'
    text = scenario(f"""
        clipped = {{ {volume} }}
        reflected = {{ {volume}, bounds = "reflect" }}
        walk = {{ {walk} }}
        sticky = {{ {walk}, bounds = "clip" }}
        """)
    rows = data(text, 3000)
    on_bound = {k: sum(r[k] in (5000, 50000, 0, 10) for r in rows) for k in rows[0]}
    assert on_bound["clipped"] > 30 and on_bound["sticky"] > 100
    assert on_bound["reflected"] == 0 and on_bound["walk"] < 5
    assert all(5000 <= r["reflected"] <= 50000 for r in rows)  # type: ignore[operator]


# ============================================================================ load errors

ERRORS = [
    (
        "unknown_name",
        'price = 1.5\nchange = { expr = "prise - prev.price" }\n',
        "x.toml:9: stream[0].fields.change.expr = 'prise - prev.price': at column 1: unknown"
        " name 'prise'; did you mean 'price'? (allowed: seq, index, price, change)",
    ),
    (
        "syntax",
        'a = 1\nb = { expr = "a +* 2" }\n',
        "x.toml:9: stream[0].fields.b.expr = 'a +* 2': at column 4: expected a value, found '*'",
    ),
    (
        "cycle",
        'a = { expr = "b + 1" }\nb = { expr = "a - 1" }\n',
        "x.toml:8: stream[0].fields.a.expr = 'b + 1': fields read each other in the same"
        " message (a -> b -> a): one of them must read prev.<name> instead",
    ),
    (
        "type_mismatch",
        'k = { choice = ["a", "b"] }\nx = { expr = "k * 2" }\n',
        "x.toml:9: stream[0].fields.x.expr = 'k * 2': at column 3: '*' needs a number,"
        " got a string",
    ),
    (
        "prev_of_derived_needs_initial",
        'a = 1\nt = { expr = "prev.t + a" }\n',
        "x.toml:9: stream[0].fields.t.expr = 'prev.t + a': at column 6: prev.t reads a derived"
        " field in the first message too: give t an initial value (initial = ...)",
    ),
    (
        "initial_of_another_type",
        'a = 1\nt = { expr = "if(a > 0, 1, 0) + 0 * a", initial = "zero" }\n'
        'u = { expr = "prev.t" }\n',
        "x.toml:9: stream[0].fields.t.initial = 'zero': is a string but the expression gives"
        " an integer",
    ),
    (
        "object_is_not_a_value",
        'o = { a = 1 }\nx = { expr = "o + 1" }\n',
        "x.toml:9: stream[0].fields.x.expr = 'o + 1': at column 1: 'o' is an object, a list,"
        " null or of mixed types: not a value",
    ),
    (
        "template_is_not_read",
        'id = { template = "tx_{seq}" }\nx = { expr = "id == \'tx_1\'" }\n',
        "x.toml:9: stream[0].fields.x.expr = \"id == 'tx_1'\": at column 1: 'id' is a"
        " template, filled in after derived fields",
    ),
    (
        "spread_keys_differ",
        "n = { spread = true, choice = [{ a = 1 }, { b = 2 }] }\n",
        "x.toml:8: stream[0].fields.n.choice[1]: has keys b where the first has a: the objects"
        " of a spread field need the same keys in the same order (every message has them)",
    ),
    (
        "spread_of_plain_values",
        "n = { spread = true, choice = [1, 2] }\n",
        "x.toml:8: stream[0].fields.n.choice: spread = true needs every value to be an object"
        " ({ a = 1, ... })",
    ),
    (
        "spread_key_clash",
        "a = 1\nn = { spread = true, cycle = [{ a = 2 }] }\n",
        "x.toml:9: stream[0].fields.n: spreads key 'a', which the object already has: each"
        " key once",
    ),
    (
        "unknown_bounds",
        'x = { dist = "normal", mean = 0, std = 1, max = 3, bounds = "wrap" }\n',
        "x.toml:8: stream[0].fields.x.bounds = 'wrap': unknown bounds (allowed: clip, reflect)",
    ),
    (
        "round_of_a_string",
        "x = { expr = \"'a'\", round = 2 }\n",
        "x.toml:8: stream[0].fields.x.expr = \"'a'\": gives a string: min, max and round need"
        " a number",
    ),
]


@pytest.mark.parametrize(("body", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_a_bad_derived_or_spread_field_gives_one_exact_message(body: str, expected: str) -> None:
    assert problems_of(scenario(body)) == [expected]


def test_every_mistake_of_an_object_is_reported_in_one_run_none_for_what_failed() -> None:
    """A syntax error or a bad sibling no longer hides the unknown names of the other
    expressions until it is fixed; a reference to a sibling that failed is not one."""
    body = (
        'x = { expr = "y + 1" }\n'
        'z = { expr = "x +* 2" }\n'
        'w = { expr = "prev.nope + 1" }\n'
        'v = { dist = "normal", mean = 1 }\n'
        'u = { expr = "v * 2 + z" }\n'
    )
    allowed = "(allowed: seq, index, x, w, u)"
    assert problems_of(scenario(body)) == [
        f"x.toml:8: stream[0].fields.x.expr = 'y + 1': at column 1: unknown name 'y' {allowed}",
        "x.toml:9: stream[0].fields.z.expr = 'x +* 2': at column 4: expected a value, found '*'",
        "x.toml:10: stream[0].fields.w.expr = 'prev.nope + 1': at column 6: unknown name"
        f" 'nope' {allowed}",
        "x.toml:11: stream[0].fields.v.std: missing: required (a number > 0)",
    ]


# ============================================================================ the language


NAMES = {"i": VType.INT, "f": VType.FLOAT, "b": VType.BOOL, "s": VType.STR}


def _numeric(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(["i", "f", "prev.i", "prev.f", "2", "0.5", "0", "-3"])
    if depth == 0:
        return leaf
    sub = _numeric(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from("+-*/%"), sub),
        st.builds(lambda a: f"abs({a})", sub),
        st.builds(lambda a, b: f"min({a}, {b})", sub, sub),
        st.builds(lambda a, b, c: f"clamp({a}, {b}, {c})", sub, sub, sub),
        st.builds(lambda a: f"round({a}, 2)", sub),
        st.builds(lambda c, a, b: f"if({c} > {a} or b, {a}, {b})", sub, sub, sub),
        st.builds(lambda a, b: f"if(s == 'x', {a}, -{b})", sub, sub),
    )


@settings(max_examples=200, deadline=None)
@given(text=_numeric(3), seed=st.integers(0, 2**32 - 1))
def test_one_message_at_a_time_gives_what_a_whole_chunk_gives(text: str, seed: int) -> None:
    tree = parse(text)
    check(tree, NAMES)
    rng = np.random.default_rng(seed)
    n = 16
    cur = {
        "i": rng.integers(-5, 5, n),
        "f": np.round(rng.normal(0, 3, n), 2),
        "b": rng.random(n) < 0.5,
        "s": np.asarray(rng.choice(["x", "y"], n)),
    }
    prev = {k: np.roll(v, 1) for k, v in cur.items()}
    whole = np.broadcast_to(vectorised(tree)(cur, prev), (n,)).tolist()
    one = scalar(tree)
    for k in range(n):
        row = {name: v[k].item() for name, v in cur.items()}
        prow = {name: v[k].item() for name, v in prev.items()}
        assert one(row, prow) == pytest.approx(whole[k], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("", 1),
        ("a +", 4),
        ("max(a)", 1),
        ("foo(a)", 1),
        ("a < b < c", 3),
        ("prev.", 6),
        ("a $ b", 3),
    ],
)
def test_a_malformed_expression_names_the_column(text: str, column: int) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert info.value.column == column
