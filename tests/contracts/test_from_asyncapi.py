"""`sim new --from-asyncapi`: the skeleton is a valid scenario, it serves, every guess
carries a comment, and every message it sends keeps the contract's payload schemas —
for any seed (hypothesis), rendered offline in virtual time."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.contracts.asyncapi import asyncapi_document
from simulator.contracts.conformance import check_scenario, match_message, schema_checker
from simulator.contracts.from_asyncapi import skeleton_toml
from simulator.contracts.spec import Spec, dump_yaml, load_spec, parse_spec
from simulator.errors import ContractError
from simulator.net.server import serve
from simulator.scenario import load_scenario, parse_scenario
from tests.contracts.conftest import DASHBOARD, SCENARIOS, THIRD_PARTY, sim


def _round_trip(path: Path) -> tuple[Spec, str]:
    spec = parse_spec(dump_yaml(asyncapi_document(load_scenario(path))), f"{path.stem}.yaml")
    return spec, skeleton_toml(spec, source_name=f"{path.stem}.yaml")


SPECS = {p.stem: p for p in SCENARIOS}


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(SPECS)), seed=st.integers(0, 2**63 - 1))
def test_round_trip_skeleton_messages_keep_the_exported_contract(name: str, seed: int) -> None:
    spec, text = _round_trip(SPECS[name])
    scenario = parse_scenario(text, "new.toml")
    checked, violations = check_scenario(spec, scenario, 40, seed=seed)
    assert checked == 40 * len(scenario.streams)
    assert violations == []


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**63 - 1))
def test_skeleton_of_a_third_party_contract_keeps_it_for_any_seed(seed: int) -> None:
    spec = load_spec(THIRD_PARTY)
    scenario = parse_scenario(skeleton_toml(spec, source_name="third-party.yaml"), "new.toml")
    assert [s.name for s in scenario.streams] == ["price", "order", "heartbeat"]
    checked, violations = check_scenario(spec, scenario, 60, seed=seed)
    assert (checked, violations) == (180, [])


def test_round_trip_keeps_streams_types_and_schedules() -> None:
    original = load_scenario(DASHBOARD)
    _, text = _round_trip(DASHBOARD)
    again = parse_scenario(text)
    assert [(s.name, s.type, s.schedule) for s in again.streams] == [
        (s.name, s.type, s.schedule) for s in original.streams
    ]
    assert (again.seed, again.server.port, again.server.mode) == (
        original.seed,
        original.server.port,
        original.server.mode,
    )


def test_every_field_line_says_what_was_guessed() -> None:
    text = skeleton_toml(load_spec(THIRD_PARTY), source_name="third-party.yaml")
    doc = tomllib.loads(text)
    lines = text.splitlines()
    for stream in doc["stream"]:
        for key, value in stream.get("fields", {}).items():
            line = next(x for x in lines if x.startswith(f"{key} = "))
            constant = not isinstance(value, dict)
            assert constant or "# guess:" in line, line
    assert 'every = "1s"  # guess: the contract gives no schedule' in lines
    assert any(x.startswith("seed = 1  # guess") for x in lines)


def test_a_payload_without_a_data_object_becomes_envelope_constants() -> None:
    text = skeleton_toml(load_spec(THIRD_PARTY), source_name="third-party.yaml")
    order = next(s for s in tomllib.loads(text)["stream"] if s["name"] == "order")
    assert order["envelope"] == {
        "type": "$type",
        "version": 2,
        "source": "venue-a",
        "sequence": "$seq",
        "sent": "$timestamp",
        "payload": "$data",
    }


def test_the_skeleton_serves_and_its_live_messages_keep_the_contract() -> None:
    """A real server on 127.0.0.1 serving the skeleton: what a client receives validates."""
    spec = load_spec(THIRD_PARTY)
    scenario = parse_scenario(skeleton_toml(spec, source_name="third-party.yaml"))
    messages = spec.messages()

    async def main() -> list[dict[str, object]]:
        async with (
            serve(scenario, port=0, speed=50) as server,
            websockets.connect(server.url) as ws,
        ):
            return [json.loads(await ws.recv()) for _ in range(12)]

    received = asyncio.run(asyncio.wait_for(main(), 30))
    by_type = {s.type: s for s in scenario.streams}
    for message in received:
        stream = by_type[str(message["type"])]
        found = match_message(stream, messages)
        assert found is not None
        assert list(schema_checker(spec, found.payload_pointer).iter_errors(message)) == []


def test_sim_new_writes_a_scenario_that_sim_validate_accepts(tmp_path: Path) -> None:
    spec_file, out = tmp_path / "feed.yaml", tmp_path / "new.toml"
    assert sim("asyncapi", DASHBOARD, "-o", spec_file).returncode == 0
    made = sim("new", "--from-asyncapi", spec_file, "-o", out)
    assert made.returncode == 0, made.stderr
    assert sim("validate", out).returncode == 0
    checked = sim("validate", "--against", spec_file, out, "--messages", "50")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "250 messages of 5 streams checked" in checked.stdout


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "asyncapi: 2.6.0\ninfo: {title: x, version: '1'}\n",
            "asyncapi: '2.6.0': only AsyncAPI 3.x",
        ),
        ("info: {title: x}\n", "asyncapi: missing"),
        ("asyncapi: 3.0.0\nchannels: [\n", "invalid YAML"),
        ("- 1\n", "not an AsyncAPI document"),
        (
            "asyncapi: 3.0.0\nchannels:\n  c:\n    messages:\n      m: {$ref: 'other.yaml#/x'}\n",
            "only local references",
        ),
        (
            "asyncapi: 3.0.0\nchannels:\n  c:\n    messages:\n"
            "      m: {$ref: '#/components/messages/nope'}\n",
            "points at nothing",
        ),
        ("asyncapi: 3.0.0\ninfo: {title: x, version: '1'}\n", "no messages"),
    ],
)
def test_a_contract_sim_cannot_use_is_one_line_naming_file_and_place(
    tmp_path: Path, text: str, needle: str
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(text)
    with pytest.raises(ContractError) as caught:
        skeleton_toml(load_spec(spec_file), source_name="spec.yaml")
    assert needle in str(caught.value)
    result = sim("new", "--from-asyncapi", spec_file)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(str(spec_file)) and needle in result.stderr
