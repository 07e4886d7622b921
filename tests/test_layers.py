"""The layering drawn in simulator/__init__.py holds, and the public names exist.

Every module under simulator/ is found by walking the source tree and read with
:mod:`ast`: every ``import x``, ``from x import y`` and relative import counts, at any
depth (inside functions, under ``if TYPE_CHECKING:``), and so does
``importlib.import_module("...")`` or ``__import__("...")`` of a constant name. A
module's layer is the first package under ``simulator``; ``simulator.errors`` and
``simulator.version`` are the base every layer may import; ``simulator/__init__.py``
and ``__main__.py`` are the façade, which may import anything and which no layer may
import (``from simulator import x`` would get round the table).

How it was checked that these tests fail: ``import simulator.net.server`` added to
simulator/core/faults.py made ``test_no_module_imports_a_layer_it_may_not`` fail,
listing ``simulator.core.faults -> simulator.net.server  (simulator/core/faults.py:27)``;
``from simulator.net.log import EventLog`` added inside a function at the end of
simulator/storage/writer.py made it fail listing ``simulator.storage.writer ->
simulator.net.log``; an empty simulator/extra/thing.py made
``test_every_module_is_in_a_layer_of_the_table`` fail with ``['simulator.extra.thing']``.
Each was removed after.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import simulator

SOURCE = Path(simulator.__file__).parent

#: The shared base: any layer may import these modules; they import no layer.
BASE = frozenset({"simulator.errors", "simulator.version"})
#: The façade: it may import anything, and no layer may import it.
FACADE = frozenset({"simulator", "simulator.__main__"})

#: Which other layers each layer may import (its own layer and the base always).
#: A layer that does not exist yet is named so that it is born under the rule.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "scenario": frozenset({"core"}),
    "storage": frozenset({"core"}),
    "net": frozenset({"core", "storage"}),
    "client": frozenset({"core", "net"}),
    "testing": frozenset({"core", "scenario", "storage", "net", "client"}),
    "contracts": frozenset({"core", "scenario"}),
    "inspector": frozenset({"core", "scenario", "net"}),
    "cli": frozenset(
        {"core", "scenario", "storage", "net", "client", "testing", "contracts", "inspector"}
    ),
}

FORBIDDEN_IN_CORE = ["asyncio", "websockets", "polars", "click", "rich", "random"]
# The interpreter loads `time` at start-up, so the clock is checked in the source instead.
FORBIDDEN_IMPORTS = {*FORBIDDEN_IN_CORE, "time", "socket", "os"}


@dataclass(frozen=True, slots=True)
class Module:
    name: str  # simulator.core.model
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _modules() -> list[Module]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append(Module(".".join(parts), path))
    return found


MODULES = _modules()
NAMES = frozenset(m.name for m in MODULES)
CORE = [m for m in MODULES if m.name.split(".")[:2] == ["simulator", "core"]]


def layer_of(name: str) -> str | None:
    """``"base"``, ``"facade"``, a layer of :data:`ALLOWED`, or ``None`` (no layer)."""
    if name in BASE:
        return "base"
    if name in FACADE:
        return "facade"
    parts = name.split(".")
    if len(parts) >= 2 and parts[0] == "simulator" and parts[1] in ALLOWED:
        # simulator.cli is a layer even as a single module; simulator.extra.x is not.
        return parts[1]
    return None


def imports_of(module: Module) -> set[tuple[int, str]]:
    """``(line, imported module)`` for every import in ``module``, however nested."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                # `from simulator.core import model` imports the module simulator.core.model.
                submodule = f"{base}.{alias.name}"
                found.add((node.lineno, submodule if submodule in NAMES else base))
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add((node.lineno, node.args[0].value))
    return found


def may_import(importer: str, imported: str) -> bool:
    source, target = layer_of(importer), layer_of(imported)
    if source == "facade":
        return True
    if source is None or target is None or target == "facade":
        return False
    if target == "base" or source == target:
        return True
    return source != "base" and target in ALLOWED[source]


def test_every_module_is_in_a_layer_of_the_table() -> None:
    assert len(MODULES) > 40  # the walk found the source tree
    assert [m.name for m in MODULES if layer_of(m.name) is None] == []


def test_no_module_imports_a_layer_it_may_not() -> None:
    forbidden = sorted(
        f"{module.name} -> {imported}  ({module.path.relative_to(SOURCE.parent)}:{line})"
        for module in MODULES
        for line, imported in imports_of(module)
        if imported.split(".")[0] == "simulator" and not may_import(module.name, imported)
    )
    assert not forbidden, "imports the layer table forbids:\n" + "\n".join(forbidden)


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("simulator.core.faults", "simulator.core.model", True),
        ("simulator.core.faults", "simulator.errors", True),
        ("simulator.core.faults", "simulator.net.server", False),
        ("simulator.core.faults", "simulator", False),
        ("simulator.scenario.document", "simulator.core.model", True),
        ("simulator.storage.writer", "simulator.net.log", False),
        ("simulator.net.server", "simulator.storage.writer", True),
        ("simulator.net.server", "simulator.scenario", False),
        ("simulator.client.feed", "simulator.net.wire", True),
        ("simulator.testing.fixtures", "simulator.scenario", True),
        ("simulator.testing.fixtures", "simulator.cli", False),
        ("simulator.cli.options", "simulator.testing.fixtures", True),
        ("simulator.errors", "simulator.core.model", False),
        ("simulator.extra.thing", "simulator.errors", False),
        ("simulator.core.model", "simulator.extra.thing", False),
        ("simulator.__main__", "simulator.cli", True),
    ],
)
def test_the_table_reads_as_drawn(importer: str, imported: str, allowed: bool) -> None:
    assert may_import(importer, imported) is allowed


def test_imports_are_found_however_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text(
        textwrap.dedent(
            """
            import importlib
            from typing import TYPE_CHECKING

            import simulator.version
            from simulator.core import model
            from . import draws
            from .. import errors
            from ..storage.schema import SCHEMA

            if TYPE_CHECKING:
                from simulator.net.server import SimServer

            def later():
                from simulator.scenario import load_scenario
                importlib.import_module("simulator.storage.writer")
                __import__("simulator.net.log")
            """
        )
    )
    found = {imported for _, imported in imports_of(Module("simulator.core.probe", path))}
    assert found == {
        "importlib",
        "typing",
        "simulator.version",
        "simulator.core.model",
        "simulator.core.draws",
        "simulator.errors",
        "simulator.storage.schema",
        "simulator.net.server",
        "simulator.scenario",
        "simulator.storage.writer",
        "simulator.net.log",
    }


@pytest.mark.parametrize("module", [m.name for m in CORE])
def test_core_module_imports_no_io_clock_or_global_random(module: str) -> None:
    probe = (
        f"import sys; before = set(sys.modules); import {module}; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [m for m in FORBIDDEN_IN_CORE if m in loaded] == []


@pytest.mark.parametrize("module", CORE, ids=[m.name for m in CORE])
def test_core_source_reads_no_clock_and_no_global_random(module: Module) -> None:
    imported = {name.split(".")[0] for _, name in imports_of(module)}
    assert imported & FORBIDDEN_IMPORTS == set()
    tree = ast.parse(module.path.read_text())
    calls = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} & {
        "now",
        "utcnow",
        "today",
        "monotonic",
        "perf_counter",
        "time_ns",
    }
    assert calls == set()


def test_every_public_name_resolves() -> None:
    for name in simulator.__all__:
        assert getattr(simulator, name) is not None
