"""The JSON Schema of scenario files (``sim schema``) stays in step with the loader.

The loader declares the keys of each table where it reads it, by calling
``Table.only(allowed)`` (``simulator/scenario/reader.py``); the top level is
``document._TOP_KEYS``. :func:`schema_mismatches` loads ``data/every-key.toml`` (each
table, each distribution and each fault kind, with every key) with ``Table.only``
wrapped to record each call: the table's key path and the keys allowed. Then:

- every function in ``simulator/scenario/`` that calls ``.only(`` must have been reached
  (else a new table would go unchecked: add it to ``every-key.toml``);
- for each call, the schema at that key path (following ``$ref`` and picking the
  ``anyOf``/``oneOf`` branch that accepts the value there) must be a closed object
  (``additionalProperties: false``) whose properties are exactly the keys allowed;
- every closed object of the schema must have been matched by some call (a table the
  loader no longer has).

``test_a_loader_key_missing_from_the_schema_is_reported`` shows the check fails when
the loader learns a key the schema lacks (``_STREAM_KEYS`` plus one).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from datetime import date, time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import simulator.scenario as scenario_pkg
from simulator.contracts.scenario_schema import scenario_schema, scenario_schema_text
from simulator.scenario import document, load_scenario, streams
from simulator.scenario.reader import Table
from tests.contracts.conftest import DATA, ROOT, SCENARIOS, sim

EVERY_KEY = DATA / "every-key.toml"
SCENARIO_SOURCE = Path(scenario_pkg.__file__).parent
#: Functions that check keys of something other than a scenario file.
NOT_SCENARIO_TABLES = {
    ("document.py", "build_fault_set"): "a faults file (sim replay --faults) is its own format",
}


def only_callers() -> set[tuple[str, str]]:
    """(file, function) of every function in simulator/scenario/ that calls ``.only(``."""
    found: set[tuple[str, str]] = set()
    for path in SCENARIO_SOURCE.glob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "only"
                    and not (path.name == "reader.py" and fn.name == "only")
                ):
                    found.add((path.name, fn.name))
    return found


def record_only_calls(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[tuple[str | int, ...], tuple[str, ...], tuple[str, str]]]:
    """Load ``path``, recording (key path, allowed keys, (file, function)) per ``only``."""
    calls: list[tuple[tuple[str | int, ...], tuple[str, ...], tuple[str, str]]] = []
    original = Table.only

    def recording(self: Table, allowed: Sequence[str]) -> None:
        caller = sys._getframe(1).f_code
        calls.append(
            (tuple(self.path), tuple(allowed), (Path(caller.co_filename).name, caller.co_name))
        )
        original(self, allowed)

    monkeypatch.setattr(Table, "only", recording)
    load_scenario(path)
    return calls


def _plain(value: Any) -> Any:
    """TOML values as an editor's schema checker sees them: date-times are strings."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date | time):
        return value.isoformat()
    return value


class Navigator:
    """Finds the closed object schema that applies to a value at a key path."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    def accepts(self, node: dict[str, Any], value: Any) -> bool:
        wrapped = {"allOf": [node], "definitions": self.root["definitions"]}
        return jsonschema.Draft7Validator(wrapped).is_valid(value)

    def objects(self, node: dict[str, Any], value: Any) -> list[dict[str, Any]]:
        """The object schemas (with properties) among ``node``'s branches accepting ``value``."""
        node = self.deref(node)
        if "properties" in node or node.get("type") == "object":
            return [node] if self.accepts(node, value) else []
        out: list[dict[str, Any]] = []
        for combinator in ("anyOf", "oneOf"):
            for branch in node.get(combinator, []):
                if self.accepts(branch, value):
                    out += self.objects(branch, value)
        return out

    def at(self, value: Any, path: Sequence[str | int]) -> dict[str, Any]:
        node: dict[str, Any] = self.root
        for key in path:
            if isinstance(key, int):
                node = self.deref(node)["items"]
            else:
                (obj,) = self.objects(node, value)
                props = obj.get("properties", {})
                node = props[key] if key in props else obj["additionalProperties"]
            value = value[key]
        (obj,) = self.objects(node, value)
        return obj


def closed_objects(node: Any, pointer: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("additionalProperties") is False:
            yield pointer, node
        for key, value in node.items():
            yield from closed_objects(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from closed_objects(value, f"{pointer}/{i}")


def schema_mismatches(schema: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way the schema and the loader disagree on keys (empty: in step)."""
    problems: list[str] = []
    if set(schema["properties"]) != set(document._TOP_KEYS):
        problems.append(
            f"top level: schema {sorted(schema['properties'])}, loader {sorted(document._TOP_KEYS)}"
        )
    matched: set[int] = {id(schema)}  # the top level: checked against _TOP_KEYS just now
    calls = record_only_calls(EVERY_KEY, monkeypatch)
    reached = {site for _, _, site in calls}
    for site in sorted(only_callers() - reached - set(NOT_SCENARIO_TABLES)):
        problems.append(f"{site[0]}:{site[1]} checks keys but every-key.toml never reaches it")
    doc = _plain(tomllib.loads(EVERY_KEY.read_text()))
    navigator = Navigator(schema)
    for path, allowed, _ in calls:
        where = ".".join(map(str, path)) or "(top)"
        try:
            obj = navigator.at(doc, path)
        except (KeyError, ValueError) as e:
            problems.append(f"{where}: no single object schema accepts the table ({e!r})")
            continue
        matched.add(id(obj))
        if obj.get("additionalProperties") is not False:
            problems.append(f"{where}: the schema's object is not closed")
        keys = set(obj.get("properties", {}))
        if keys != set(allowed):
            problems.append(
                f"{where}: loader allows {sorted(set(allowed) - keys)} the schema lacks,"
                f" schema has {sorted(keys - set(allowed))} the loader refuses"
            )
    for pointer, obj in closed_objects(schema):
        if id(obj) not in matched:
            problems.append(f"{pointer}: a closed table in the schema that no loader table matches")
    return problems


def test_every_key_the_loader_knows_is_in_the_schema_and_vice_versa(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert schema_mismatches(scenario_schema(), monkeypatch) == []


def test_a_loader_key_missing_from_the_schema_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "_STREAM_KEYS", (*streams._STREAM_KEYS, "colour"))
    problems = schema_mismatches(scenario_schema(), monkeypatch)
    assert any(p.startswith("stream.0: loader allows ['colour']") for p in problems), problems


def test_a_schema_key_the_loader_refuses_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = scenario_schema()
    schema["definitions"]["server"]["properties"]["colour"] = {"type": "string"}
    problems = schema_mismatches(schema, monkeypatch)
    assert any("schema has ['colour'] the loader refuses" in p for p in problems), problems


def test_the_schema_is_a_valid_draft_7_schema_and_accepts_every_shipped_scenario() -> None:
    schema = scenario_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    examples = sorted((ROOT / "docs" / "examples").glob("*.toml"))
    for path in [*SCENARIOS, *examples, EVERY_KEY]:
        errors = [e.message for e in validator.iter_errors(_plain(tomllib.loads(path.read_text())))]
        assert errors == [], path


@pytest.mark.parametrize(
    "text",
    [
        '[scenario]\nname = "x"\n[[stream]]\nname = "s"\nevry = "1s"\n',  # misspelt key
        '[scenario]\nname = "x"\n[[stream]]\nname = "s"\nevery = "1s"\nrate = 2\n',  # two schedules
        '[scenario]\nname = "x"\n[[stream]]\nname = "s"\nevery = "5"\n',  # no unit
        '[scenario]\nname = "x"\n[[stream]]\nname = "s"\nevery = "1s"\n'
        'fields = { cpu = { dist = "normal", mean = 1 } }\n',  # std missing
        '[scenario]\nname = "x"\n[server]\nport = 70000\n[[stream]]\nname = "s"\nevery = "1s"\n',
        '[scenario]\nname = "x"\n[[stream]]\nname = "s"\nevery = "1s"\n'
        '[[fault]]\nkind = "drop"\ncode = 1000\n',  # a key of another kind
    ],
)
def test_the_schema_rejects_what_the_loader_rejects(text: str) -> None:
    validator = jsonschema.Draft7Validator(scenario_schema())
    assert list(validator.iter_errors(tomllib.loads(text)))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_declare_the_schema_on_their_first_line(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == "#:schema ../simulator/contracts/scenario.schema.json"
    assert (path.parent / first.removeprefix("#:schema ")).resolve().is_file()


def test_sim_schema_prints_the_shipped_file(tmp_path: Path) -> None:
    printed = sim("schema")
    assert printed.returncode == 0
    assert printed.stdout == scenario_schema_text()
    assert json.loads(printed.stdout)["title"] == "sim scenario file"


def _taplo() -> str:
    """taplo (the PyPI wheel of the TOML toolkit behind Even Better TOML), if installed."""
    found = shutil.which("taplo", path=str(Path(sys.executable).parent)) or shutil.which("taplo")
    if found is None:
        pytest.skip("taplo is not installed (pip install taplo)")
    return found


def test_taplo_reads_the_schema_directive_and_passes_every_shipped_scenario() -> None:
    """What an editor does with the #:schema line: taplo lint finds and applies it."""
    result = subprocess.run(
        [_taplo(), "lint", *map(str, SCENARIOS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_taplo_marks_a_misspelt_key_through_the_schema_directive(tmp_path: Path) -> None:
    schema = tmp_path / "scenario.schema.json"
    schema.write_text(scenario_schema_text())
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '#:schema ./scenario.schema.json\n[scenario]\nname = "x"\nsed = 1\n'
        '[[stream]]\nname = "s"\nevery = "1s"\n'
    )
    result = subprocess.run(
        [_taplo(), "lint", str(bad)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "'sed' was unexpected" in result.stderr
