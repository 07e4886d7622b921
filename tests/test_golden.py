"""Golden files: the feed of a fixed scenario, seed and epoch is the same, commit after commit.

``tests/data/golden/`` holds checked-in output (its README says what each file pins):
the first frames of ``scenarios/energy-dashboard.toml`` (broadcast, and connection scopes
0 and 1), the fault plan ``sim plan`` prints for ``scenarios/flaky-network.toml``, that
scenario's per-message fault decisions, and the raw words of a few derived keys. Each
test renders the same lines with the code as it is now, using the renderers of
``tests/data/golden/regenerate.py``, and compares them with the file.

A failure shows the first line that differs. If the change was not meant, it is a bug.
If it was meant (a new draw, a changed key derivation or float format, an edited
scenario file), it is a compatibility break: the same seed no longer gives the same feed.
Then regenerate the files, review ``git diff tests/data/golden/`` and list the change
under "Changes" in ``docs/determinism.md``::

    .venv/bin/python tests/data/golden/regenerate.py

How it was checked that these tests fail when the draws change (each change made in a
copy of the tree, then dropped):

- the purpose ``"fields"`` renamed ``"values"`` in ``simulator/core/timeline.py``: the
  frames test failed at line 1 (the first payload's values), the other three passed;
- ``"fault"`` renamed ``"faults"`` in the message-fault keys of
  ``simulator/core/faults.py``: the plan and decision tests failed;
- Box–Muller's ``cos`` replaced by ``sin`` in ``simulator/core/draws.py``: the frames
  test failed, ``draws.jsonl`` (raw words) still matched;
- string key parts hashed to 8 bytes instead of 16 in ``derive_key``: all four failed.
"""

from __future__ import annotations

import json

import pytest

from tests.data.golden.regenerate import GOLDEN_DIR, RENDERERS

REGENERATE = ".venv/bin/python tests/data/golden/regenerate.py"
WINDOW = 50  # characters shown either side of the first difference in a long value


def _window(text: str, at: int) -> tuple[str, int]:
    """``text`` cut to ``WINDOW`` characters either side of ``at``, and where ``at`` is now."""
    start = max(0, at - WINDOW)
    prefix = "…" if start else ""
    suffix = "…" if at + WINDOW < len(text) else ""
    return prefix + text[start : at + WINDOW] + suffix, at - start + len(prefix)


def _first_char_diff(expected: str, actual: str) -> int:
    return next(
        (k for k, (e, a) in enumerate(zip(expected, actual, strict=False)) if e != a),
        min(len(expected), len(actual)),
    )


def _text_diff(label: str, expected: str, actual: str) -> list[str]:
    """Two strings one above the other, cut around their first difference, with a caret."""
    at = _first_char_diff(expected, actual)
    shown_e, col = _window(expected, at)
    shown_a, _ = _window(actual, at)
    pad = " " * len(label)
    return [
        f"  {label}expected: {shown_e}",
        f"  {pad}actual:   {shown_a}",
        f"  {pad}          {' ' * col}^ (character {at})",
    ]


def _line_diff(expected: str, actual: str) -> list[str]:
    """What differs in one line: field by field for JSON records, else as text."""
    try:
        e, a = json.loads(expected), json.loads(actual)
    except json.JSONDecodeError:
        e = a = None
    if not (isinstance(e, dict) and isinstance(a, dict)):
        return _text_diff("", expected, actual)
    out = []
    for key in [*e, *(k for k in a if k not in e)]:
        ev, av = e.get(key, "<missing>"), a.get(key, "<missing>")
        if ev == av:
            continue
        if isinstance(ev, str) and isinstance(av, str):
            out.extend(_text_diff(f"{key}: ", ev, av))
        else:
            out.append(f"  {key}: expected {ev!r}, actual {av!r}")
    return out


def mismatch_report(name: str, expected: list[str], actual: list[str]) -> str:
    """Where ``actual`` first departs from the golden file ``name``, and what to do."""
    common = min(len(expected), len(actual))
    i = next((k for k in range(common) if expected[k] != actual[k]), common)
    differing = sum(e != a for e, a in zip(expected, actual, strict=False))
    differing += abs(len(expected) - len(actual))
    out = [
        f"tests/data/golden/{name}: line {i + 1} is the first that differs "
        f"({differing} differing, {len(expected)} expected, {len(actual)} rendered)",
    ]
    if i < common:
        out.append(f"  expected line: {expected[i]}")
        out.append(f"  actual line:   {actual[i]}")
        out.extend(_line_diff(expected[i], actual[i]))
    elif i < len(expected):
        out.append(f"  missing line: {expected[i]}")
    else:
        out.append(f"  extra line: {actual[i]}")
    out += [
        "The same scenario, seed and epoch no longer give the same output. If that was not",
        "meant, it is a bug. If it was, it is a compatibility break: regenerate with",
        f"    {REGENERATE}",
        "review `git diff tests/data/golden/` and note the change under 'Changes' in",
        "docs/determinism.md.",
    ]
    return "\n".join(out)


def assert_matches_golden(name: str) -> None:
    expected = (GOLDEN_DIR / name).read_text(encoding="utf-8").splitlines()
    actual = RENDERERS[name]()
    if actual != expected:
        pytest.fail(mismatch_report(name, expected, actual), pytrace=False)


def test_energy_dashboard_frames_match_the_golden_file() -> None:
    """The first frames of energy-dashboard, seed 42, a fixed epoch, are the pinned bytes
    at the pinned times, in broadcast and in connection scopes 0 and 1."""
    assert_matches_golden("energy-dashboard.frames.jsonl")


def test_flaky_network_fault_plan_matches_the_golden_file() -> None:
    """``sim plan scenarios/flaky-network.toml --duration 5m --connections 2`` prints the
    pinned plan."""
    assert_matches_golden("flaky-network.plan.txt")


def test_flaky_network_fault_decisions_match_the_golden_file() -> None:
    """flaky-network hits the pinned messages of connections 0 to 2 with the pinned
    decisions (exact delays in ns), and no others."""
    assert_matches_golden("flaky-network.decisions.jsonl")


def test_derived_keys_and_raw_words_match_the_golden_file() -> None:
    """The key derivation and numpy's SeedSequence/PCG64 give the pinned raw words."""
    assert_matches_golden("draws.jsonl")


def test_every_golden_file_has_a_renderer() -> None:
    """No golden file is left behind unchecked, and each stays small enough to review."""
    files = {p.name for p in GOLDEN_DIR.iterdir() if p.suffix in {".jsonl", ".txt"}}
    assert files == set(RENDERERS)
    for name in files:
        assert (GOLDEN_DIR / name).stat().st_size < 50_000, name


def test_a_mismatch_names_the_first_differing_field_and_how_to_regenerate() -> None:
    """The failure message points at the first differing line, field and character."""
    expected = ['{"seq": 1, "payload": "{\\"cpu\\":42.0}"}', '{"seq": 2, "payload": "x"}']
    actual = ['{"seq": 1, "payload": "{\\"cpu\\":42.5}"}', '{"seq": 2, "payload": "x"}']
    report = mismatch_report("f.jsonl", expected, actual)
    assert "f.jsonl: line 1 is the first that differs (1 differing, 2 expected" in report
    assert '  payload: expected: {"cpu":42.0}' in report
    assert '           actual:   {"cpu":42.5}' in report
    assert "^ (character 10)" in report
    assert "seq:" not in report
    assert REGENERATE in report
