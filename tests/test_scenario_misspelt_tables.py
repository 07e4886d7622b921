"""A misspelt top-level table gets a did-you-mean, also when the misspelling makes the
file invalid TOML (``[[streams]]`` then ``[stream.fields]``); a TOML error with no
misspelling behind it gets no guess."""

from __future__ import annotations

import pytest

from simulator.errors import ScenarioError
from simulator.scenario import document, parse_scenario
from simulator.scenario.text import TOP_TABLES

STREAMS_THEN_STREAM = """\
[scenario]
name = "x"

[[streams]]
name = "a"
every = "1s"
[stream.fields]
n = { dist = "counter" }

[[streams]]
name = "b"
every = "1s"
[stream.fields]
n = { dist = "counter" }
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "x.toml")
    return str(caught.value).splitlines()


def test_the_tables_compared_with_are_the_tables_a_scenario_may_have() -> None:
    assert set(TOP_TABLES) == set(document._TOP_KEYS)


def test_a_misspelt_table_that_breaks_the_toml_is_named_first_at_its_line() -> None:
    first, toml_error = problems(STREAMS_THEN_STREAM)
    assert first == "x.toml:4: [[streams]]: unknown table; did you mean [[stream]]?"
    assert toml_error.startswith("x.toml:13: invalid TOML: ")  # the second [stream.fields]


def test_a_misspelt_dotted_header_suggests_the_same_header_spelt_right() -> None:
    text = STREAMS_THEN_STREAM.replace("[[streams]]", "[[stream]]").replace(
        "[stream.fields]", "[streams.fields]", 1
    )
    text += '[scenario.x]\ny = 1\n[scenario]\nname = "again"\n'  # invalid: [scenario] twice
    assert problems(text)[0] == (
        "x.toml:7: [streams.fields]: unknown table; did you mean [stream.fields]?"
    )


def test_a_toml_error_without_a_misspelt_table_gets_no_guess() -> None:
    text = '[scenario]\nname = "x"\n[scenario]\nname = "y"\n'
    [only] = problems(text)
    assert "invalid TOML" in only and "did you mean" not in only


def test_a_misspelt_table_in_valid_toml_is_reported_by_the_document_check() -> None:
    text = STREAMS_THEN_STREAM.split('\n[[streams]]\nname = "b"')[0].replace(
        "[stream.fields]", "[streams.fields]"
    )
    assert any("streams: unknown table; did you mean 'stream'?" in p for p in problems(text))
