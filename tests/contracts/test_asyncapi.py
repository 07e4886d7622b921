"""`sim asyncapi`: the document is valid AsyncAPI 3.0 (the official schema), its
references resolve, and its payload schemas accept what the scenario sends and
nothing looser than the field definitions say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.contracts.asyncapi import asyncapi_document
from simulator.contracts.conformance import check_scenario, render_messages, schema_checker
from simulator.contracts.spec import Spec, dump_yaml, parse_spec
from simulator.scenario import load_scenario, parse_scenario
from tests.contracts.conftest import DASHBOARD, SCENARIOS, asyncapi_errors, sim


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_gives_a_valid_asyncapi_3_document(path: Path) -> None:
    doc = asyncapi_document(load_scenario(path))
    assert asyncapi_errors(doc) == []
    # The official schema does not follow $ref: every one must point at something.
    spec = Spec(doc, path.name)
    for ref in _refs(doc):
        spec.resolve({"$ref": ref}, "#")
    # Operations may only use messages of their channel (AsyncAPI 3.0, Operation Object).
    channel_messages = {
        f"#/channels/feed/messages/{k}" for k in doc["channels"]["feed"]["messages"]
    }
    for op in doc["operations"].values():
        used = [m["$ref"] for m in op["messages"]] + [
            m["$ref"] for m in op.get("reply", {}).get("messages", [])
        ]
        assert set(used) <= channel_messages


def test_the_document_survives_yaml_and_names_server_streams_and_schedules() -> None:
    doc = asyncapi_document(load_scenario(DASHBOARD))
    again = yaml.safe_load(dump_yaml(doc))
    assert again == doc
    assert doc["servers"]["sim"] == {
        **doc["servers"]["sim"],
        "host": "127.0.0.1:3002",
        "protocol": "ws",
    }
    ops = doc["operations"]
    assert ops["send_system_stats"]["x-sim-every"] == "5s"
    assert ops["send_notification"]["x-sim-every"] == {"min": "15s", "max": "30s"}
    assert {"receive_ping", "receive_subscribe", "receive_unsubscribe"} <= set(ops)
    assert ops["receive_ping"]["reply"]["messages"] == [{"$ref": "#/channels/feed/messages/pong"}]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**63 - 1))
def test_messages_of_the_dashboard_keep_its_own_contract_for_any_seed(seed: int) -> None:
    scenario = load_scenario(DASHBOARD)
    spec = Spec(asyncapi_document(scenario), "dashboard.yaml")
    checked, violations = check_scenario(spec, scenario, 60, seed=seed)
    assert checked == 60 * len(scenario.streams)
    assert violations == []


FEATURES = """\
[scenario]
name = "features"
[envelope]
event = "$type"
n = "$seq"
at_ms = "$timestamp_ms"
at_s = "$timestamp_s"
src = "$stream"
v = 2
body = "$data"
[[stream]]
name = "ev:1"
type = "event"
burst = { count = 3, spacing = "10ms", every = "1s" }
[stream.fields]
a = { dist = "exponential", mean = 2, round = 0 }
b = { dist = "lognormal", mu = 0, sigma = 1, max = 9 }
c = { dist = "walk", start = 5, step = 1, min = 0, max = 10, round = 1 }
d = { dist = "counter", start = 10, step = -2 }
e = { cycle = [1, "two", { three = 3 }] }
f = { dist = "timestamp", format = "s" }
g = { template = "{{x}} {seq}.{a}" }
h = { list = { min = 0, max = 3 }, item = { dist = "bool", p = 0.3 } }
i = { dist = "uuid" }
j = { const = { k = [1, 2] } }
[[protocol.rule]]
name = "balance"
match = { type = "get_balance" }
[protocol.rule.reply]
type = "balance"
account = "{request.account}"
at = "{now}"
label = "acct {request.account}"
list = [1, "x"]
"""


def test_every_kind_of_field_and_slot_gives_a_schema_its_messages_keep() -> None:
    scenario = parse_scenario(FEATURES)
    doc = asyncapi_document(scenario)
    assert asyncapi_errors(doc) == []
    assert "ev_1" in doc["components"]["messages"]  # ':' is not allowed in a component key
    checked, violations = check_scenario(Spec(doc, "f.yaml"), scenario, 200)
    assert (checked, violations) == (200, [])


def test_the_payload_schema_rejects_values_the_fields_cannot_produce() -> None:
    scenario = load_scenario(DASHBOARD)
    spec = Spec(asyncapi_document(scenario), "dashboard.yaml")
    validator = schema_checker(spec, "#/components/messages/system_stats/payload")
    good = orjson.loads(next(render_messages(scenario.streams[0], 1, seed=1))[1])
    assert list(validator.iter_errors(good)) == []
    for path, bad in [
        (("data", "cpu"), 100.5),  # above max
        (("data", "active_connections"), 3.5),  # randint: an integer
        (("type",), "dashboard_stats"),  # the stream's type is a const
        (("timestamp",), "yesterday"),  # date-time
        (("data", "extra"), 1),  # no other key
    ]:
        message = orjson.loads(orjson.dumps(good))
        target = message
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bad
        assert list(validator.iter_errors(message)), f"{path} = {bad!r} was accepted"


def test_sim_asyncapi_writes_yaml_or_json_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out" / "feed.yaml"  # its folder is made, as sim generate does
    result = sim("asyncapi", DASHBOARD, "-o", out)
    assert result.returncode == 0, result.stderr
    assert asyncapi_errors(yaml.safe_load(out.read_text())) == []
    again = sim("asyncapi", DASHBOARD, "-o", out)
    assert again.returncode == 2 and "already exists" in again.stderr
    printed = sim("asyncapi", DASHBOARD, "--format", "json")
    assert orjson.loads(printed.stdout) == yaml.safe_load(out.read_text())
    assert parse_spec(out.read_text()).doc["info"]["title"] == "energy-dashboard"
