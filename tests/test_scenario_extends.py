"""``[scenario] extends`` and ``add_faults`` (``sim run --faults``): what a scenario built
on another one holds, and where its problems are reported."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from simulator.core.model import Every, Mode
from simulator.errors import ScenarioError
from simulator.scenario import add_faults, load_scenario
from simulator.scenario.extends import MAX_DEPTH
from tests.e2e.conftest import ROOT

SCENARIOS = ROOT / "scenarios"
DASHBOARD = SCENARIOS / "energy-dashboard.toml"

BASE = """\
[scenario]
name = "base"
seed = 5
duration = "1m"

[server]
port = 4000
mode = "per-connection"

[[stream]]
name = "a"
every = "1s"

[[stream]]
name = "b"
every = "2s"

[[fault]]
kind = "drop"
probability = 0.5
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    return str(error.value).splitlines()


@pytest.mark.parametrize(
    "name", ["outage", "flaky-network", "thundering-herd", "zombie-connection"]
)
def test_each_fault_scenario_is_the_dashboard_with_its_own_name_and_faults(name: str) -> None:
    """The shipped fault scenarios extend energy-dashboard.toml: everything but their
    name, description and faults is the dashboard's."""
    sc = load_scenario(SCENARIOS / f"{name}.toml")
    dashboard = load_scenario(DASHBOARD)
    assert sc.name == name and sc.faults
    mine = {"name": sc.name, "description": sc.description, "faults": sc.faults}
    assert sc == dataclasses.replace(dashboard, source=sc.source, **mine)


def test_a_derived_file_inherits_what_it_does_not_write_key_by_key(tmp_path: Path) -> None:
    write(tmp_path / "base.toml", BASE)
    derived = write(
        tmp_path / "derived.toml",
        """
        [scenario]
        extends = "base.toml"
        name = "derived"

        [server]
        port = 4001
        """,
    )
    sc = load_scenario(derived)
    assert (sc.name, sc.seed, sc.duration_ns) == ("derived", 5, 60 * 10**9)
    assert (sc.server.port, sc.server.mode) == (4001, Mode.PER_CONNECTION)
    assert [s.name for s in sc.streams] == ["a", "b"]
    assert [f.name for f in sc.faults] == ["fault[0]"]
    assert sc.source == str(derived)


def test_a_stream_named_like_a_base_stream_replaces_it_where_it_stands(tmp_path: Path) -> None:
    write(tmp_path / "base.toml", BASE)
    derived = write(
        tmp_path / "derived.toml",
        """
        [scenario]
        extends = "base.toml"

        [[stream]]
        name = "c"
        every = "3s"

        [[stream]]
        name = "a"
        every = "10s"
        """,
    )
    sc = load_scenario(derived)
    assert [(s.name, s.schedule.pattern) for s in sc.streams] == [
        ("a", Every(10 * 10**9)),
        ("b", Every(2 * 10**9)),
        ("c", Every(3 * 10**9)),
    ]


def test_unnamed_faults_are_numbered_in_their_own_file_so_two_of_them_clash(
    tmp_path: Path,
) -> None:
    """The base's unnamed fault is fault[0], and so is the derived file's: reported at
    the derived file's line, naming where the other one is."""
    base = write(tmp_path / "base.toml", BASE)
    derived = write(
        tmp_path / "derived.toml",
        """
        [scenario]
        extends = "base.toml"

        [[fault]]
        kind = "reset"
        """,
    )
    assert problems(derived) == [
        f"{derived}:5: fault[0].name = 'fault[0]': already the name of fault[0] of {base}:18:"
        " fault names must be unique"
    ]


def test_problems_are_reported_in_the_file_and_on_the_line_they_are_written(
    tmp_path: Path,
) -> None:
    """A mistake in the base, one in a key the derived file overrides, and one in an
    appended stream: each at its own file, line and key path."""
    base = write(tmp_path / "base.toml", BASE.replace('every = "2s"', 'every = "2x"'))
    derived = write(
        tmp_path / "derived.toml",
        """
        [scenario]
        extends = "base.toml"
        seed = -1

        [[stream]]
        name = "c"
        evry = "1s"
        """,
    )
    assert problems(derived) == [
        f"{base}:16: stream[1].every = '2x': must be a duration like '250ms', '5s', '2m',"
        " '1h30m' (units ns, us, ms, s, m, h, d)",
        f"{derived}:4: scenario.seed = -1: must be an integer from 0 to 2**63-1",
        f"{derived}:8: stream[0].evry: unknown key; did you mean 'every'? (allowed: name,"
        " type, every, rate, at, burst, repeat, start, stop, first, envelope, fields,"
        " max_lateness)",
    ]


def test_a_chain_of_extends_takes_each_key_from_the_nearest_file(tmp_path: Path) -> None:
    write(tmp_path / "base.toml", BASE)
    (tmp_path / "mid").mkdir()
    write(
        tmp_path / "mid" / "mid.toml",
        '[scenario]\nextends = "../base.toml"\nname = "mid"\nseed = 6\n[server]\nport = 1\n',
    )
    top = write(tmp_path / "top.toml", '[scenario]\nextends = "mid/mid.toml"\nseed = 7\n')
    sc = load_scenario(top)
    assert (sc.name, sc.seed, sc.server.port, len(sc.streams)) == ("mid", 7, 1, 2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3", "scenario.extends = 3: must be the path of a scenario file, relative to this one"),
        ('"x.toml"', "scenario.extends = 'x.toml': extends itself: x.toml -> x.toml"),
    ],
)
def test_a_bad_extends_is_one_line_at_its_key(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path / "x.toml", f'[scenario]\nname = "x"\nextends = {value}\n')
    assert problems(path) == [f"{path}:3: {message}"]


def test_a_chain_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "f0.toml", BASE)
    for i in range(1, MAX_DEPTH + 1):
        write(tmp_path / f"f{i}.toml", f'[scenario]\nextends = "f{i - 1}.toml"\n')
    [problem] = problems(tmp_path / f"f{MAX_DEPTH}.toml")
    assert problem.endswith(f"too deep: a chain of extends holds at most {MAX_DEPTH} files")


def test_add_faults_appends_the_files_faults_planned_with_the_scenarios_seed(
    tmp_path: Path,
) -> None:
    """`sim run --faults`: the file's faults come after the scenario's own; the seed in
    the faults file is not used (it is for `sim replay`)."""
    sc = load_scenario(SCENARIOS / "outage.toml")
    faults = write(
        tmp_path / "f.toml",
        '[scenario]\nseed = 7\n[[fault]]\nname = "loss"\nkind = "drop"\nprobability = 0.1\n',
    )
    more = add_faults(sc, faults)
    assert [f.name for f in more.faults] == ["server-down", "loss"]
    assert more.seed == sc.seed == 42
    assert dataclasses.replace(more, faults=sc.faults) == sc
