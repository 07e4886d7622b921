"""`sim validate --against`: N rendered messages per stream, each break reported with
its stream, seq and JSON path; exit 1 on any, 0 on none, 2 on a file it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.contracts.asyncapi import asyncapi_document
from simulator.contracts.conformance import check_scenario, json_path, render_messages
from simulator.contracts.spec import Spec
from simulator.scenario import load_scenario, parse_scenario
from tests.contracts.conftest import DASHBOARD, sim

# The dashboard with a wider cpu walk (beyond the contract's max of 100) and another id.
BROKEN = (
    DASHBOARD.read_text()
    .replace(
        "step = 4.0, revert = 0.15, min = 0, max = 100",
        "step = 40.0, revert = 0.15, min = 0, max = 300",
    )
    .replace('id = { template = "tx_{seq}" }', 'id = { template = "t{seq}" }')
)


def test_each_break_names_stream_seq_and_json_path() -> None:
    spec = Spec(asyncapi_document(load_scenario(DASHBOARD)), "feed.yaml")
    checked, violations = check_scenario(spec, parse_scenario(BROKEN), 50)
    assert checked == 250
    assert {v.stream for v in violations} == {"system_stats", "transaction"}
    cpu = [v for v in violations if v.stream == "system_stats"]
    assert cpu and all(v.path == "$.data.cpu" and "maximum of 100" in v.message for v in cpu)
    ids = [v for v in violations if v.stream == "transaction"]
    assert [v.seq for v in ids] == list(range(1, 51))
    assert str(ids[0]) == "transaction seq 1: $.data.id: 't1' does not match '^tx_.*$'"


def test_a_stream_the_contract_lacks_is_a_violation() -> None:
    spec = Spec(asyncapi_document(load_scenario(DASHBOARD)), "feed.yaml")
    extra = parse_scenario('[scenario]\nname = "x"\n[[stream]]\nname = "other"\nevery = "1s"\n')
    checked, violations = check_scenario(spec, extra, 5)
    assert checked == 0
    assert [str(v) for v in violations] == ["other: $: no message in feed.yaml for type 'other'"]


def test_render_messages_is_deterministic_and_stops_at_count_or_end() -> None:
    scenario = parse_scenario(
        '[scenario]\nname = "x"\n[[stream]]\nname = "s"\nat = ["1s", "1s", "2s"]\n'
        '[stream.fields]\nv = { dist = "uniform", min = 0, max = 1 }\n'
    )
    stream = scenario.streams[0]
    assert [seq for seq, _ in render_messages(stream, 10, seed=3)] == [1, 2, 3]
    assert list(render_messages(stream, 2, seed=3)) == list(render_messages(stream, 2, seed=3))
    assert list(render_messages(stream, 2, seed=3)) != list(render_messages(stream, 2, seed=4))


@pytest.mark.parametrize(
    ("parts", "path"),
    [([], "$"), (["data", "cpu"], "$.data.cpu"), (["a", 2, "b c"], '$.a[2]["b c"]')],
)
def test_json_path(parts: list[str | int], path: str) -> None:
    assert json_path(parts) == path


def test_sim_validate_against_exits_1_on_breaks_and_0_on_none(tmp_path: Path) -> None:
    spec_file, broken = tmp_path / "feed.yaml", tmp_path / "broken.toml"
    assert sim("asyncapi", DASHBOARD, "-o", spec_file).returncode == 0
    broken.write_text(BROKEN)
    result = sim("validate", "--against", spec_file, broken, "--messages", "20")
    assert result.returncode == 1
    assert f"{broken}: transaction seq 1: $.data.id: 't1' does not match '^tx_.*$'" in result.stdout
    spec = Spec(asyncapi_document(load_scenario(DASHBOARD)), "feed.yaml")
    _, violations = check_scenario(spec, parse_scenario(BROKEN), 20)
    broken_messages = len({(v.stream, v.seq) for v in violations})
    *lines, summary = result.stdout.splitlines()
    assert len(lines) == len(violations)
    assert summary == (
        f"{broken}: 100 messages of 5 streams checked against {spec_file}:"
        f" {broken_messages} break the contract"
    )
    good = sim("validate", "--against", spec_file, DASHBOARD, "--messages", "20")
    assert good.returncode == 0, good.stdout
    assert "100 messages of 5 streams checked" in good.stdout and "0 break" in good.stdout


def test_sim_validate_against_a_missing_contract_exits_2_naming_it(tmp_path: Path) -> None:
    result = sim("validate", "--against", tmp_path / "nope.yaml", DASHBOARD)
    assert result.returncode == 2
    assert "nope.yaml: cannot read" in result.stderr and "Traceback" not in result.stderr
