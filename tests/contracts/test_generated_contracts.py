"""`sim new --from-asyncapi` on contracts hypothesis makes up: whatever the payload
schemas (types, enums, bounds exclusive or not, formats, patterns, examples, arrays,
nested objects, odd property names, `$ref`/`allOf`/`oneOf`, envelope constants), the
skeleton is a valid scenario and every message it renders keeps its contract."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.contracts.conformance import check_scenario
from simulator.contracts.from_asyncapi import skeleton_toml
from simulator.contracts.spec import Spec
from simulator.scenario import parse_scenario

NAMES = st.one_of(
    st.text(string.ascii_lowercase + "_", min_size=1, max_size=8),
    st.sampled_from(
        ["cpu load", "dist", "choice", "list", "item", "weights", "dsit", "ünï", "a.b"]
    ),
)
SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.text(string.ascii_letters + " -$", max_size=6),
    st.booleans(),
)


@st.composite
def integer_schema(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    lo = draw(st.none() | st.integers(-1000, 1000))
    if lo is not None:
        key = draw(st.sampled_from(["minimum", "exclusiveMinimum"]))
        schema[key] = lo
    if draw(st.booleans()):
        base = lo if lo is not None else draw(st.integers(-1000, 1000))
        schema[draw(st.sampled_from(["maximum", "exclusiveMaximum"]))] = base + draw(
            st.integers(2, 5000)
        )
    return schema


@st.composite
def number_schema(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    lo = draw(st.none() | st.floats(-1e6, 1e6))
    if lo is not None:
        schema[draw(st.sampled_from(["minimum", "exclusiveMinimum"]))] = lo
    if draw(st.booleans()):
        base = lo if lo is not None else draw(st.floats(-1e6, 1e6))
        schema[draw(st.sampled_from(["maximum", "exclusiveMaximum"]))] = base + draw(
            st.floats(1, 1e4)
        )
    return schema


def string_schema() -> st.SearchStrategy[dict[str, Any]]:
    literal = st.text(string.ascii_letters + "-_ ", max_size=4)
    return st.one_of(
        st.just({"type": "string"}),
        st.sampled_from(["date-time", "uuid", "email", "date", "ipv4"]).map(
            lambda f: {"type": "string", "format": f}
        ),
        st.tuples(literal, literal).map(
            lambda p: {"type": "string", "pattern": f"^{p[0]}.*{p[1]}$"}
        ),
        st.lists(st.text(max_size=5), min_size=1, max_size=3).map(
            lambda ex: {"type": "string", "examples": ex}
        ),
    )


LEAVES = st.one_of(
    SCALARS.map(lambda v: {"const": v}),
    st.lists(SCALARS, min_size=1, max_size=4, unique=True).map(lambda vs: {"enum": vs}),
    st.just({"type": "boolean"}),
    integer_schema(),
    number_schema(),
    string_schema(),
    st.just({"$ref": "#/components/schemas/Price"}),
)


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    arrays = st.tuples(children, st.integers(0, 3), st.integers(0, 3)).map(
        lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + t[2]}
    )
    objects = st.dictionaries(NAMES, children, max_size=4).map(
        lambda props: {
            "type": "object",
            "properties": props,
            "required": sorted(props),
            "additionalProperties": False,
        }
    )
    nullable = children.map(lambda c: {"oneOf": [{"type": "null"}, c]})
    merged = st.tuples(children, children).map(
        lambda t: {
            "allOf": [
                {"type": "object", "properties": {"first": t[0]}},
                {"type": "object", "properties": {"second": t[1]}},
            ]
        }
    )
    return st.one_of(arrays, objects, nullable, merged)


FIELDS = st.recursive(LEAVES, _extend, max_leaves=12)


@st.composite
def contracts(draw: st.DrawFn) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 3))):
        data = draw(st.dictionaries(NAMES, FIELDS, min_size=1, max_size=5))
        envelope: dict[str, Any] = {
            "type": {"type": "string", "const": f"m{i}"},
            "seq": {"type": "integer", "minimum": 1},
            "timestamp": {"type": "string", "format": "date-time"},
        }
        for key, value in draw(
            st.dictionaries(st.sampled_from(["v", "src"]), LEAVES, max_size=2)
        ).items():
            envelope[key] = value
        envelope["data"] = {
            "type": "object",
            "properties": data,
            "required": sorted(data),
            "additionalProperties": False,
        }
        messages[f"m{i}"] = {
            "name": f"m{i}",
            "payload": {
                "type": "object",
                "properties": envelope,
                "required": sorted(envelope),
                "additionalProperties": False,
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "made-up", "version": "1"},
        "channels": {"c": {"address": "/", "messages": messages}},
        "components": {
            "schemas": {"Price": {"type": "number", "exclusiveMinimum": 0, "maximum": 10}}
        },
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=contracts(), seed=st.integers(0, 2**63 - 1))
def test_any_contract_gives_a_valid_scenario_whose_messages_keep_it(
    doc: dict[str, Any], seed: int
) -> None:
    spec = Spec(doc, "made-up.yaml")
    text = skeleton_toml(spec, source_name="made-up.yaml")
    scenario = parse_scenario(text, "new.toml")
    checked, violations = check_scenario(spec, scenario, 8, seed=seed)
    assert checked == 8 * len(doc["channels"]["c"]["messages"])
    assert [str(v) for v in violations] == [], text
