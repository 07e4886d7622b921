"""`sim learn` on feeds sim did not make: whatever a feed holds, the learned scenario
loads, and what a scenario cannot hold is said in it, never silently dropped.

Each feed is written with the project's own :class:`RecordingWriter` as `sim record`
captures another server: an ``open`` row, then one server text row per message, with
no stream names (so messages are grouped by their ``type``).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simulator.core.model import Scenario
from simulator.scenario import parse_scenario
from simulator.storage.generate import Plan, generate
from simulator.storage.learn import learn
from simulator.storage.schema import Kind, Sender, event_batch, new_metadata
from simulator.storage.writer import RecordingWriter

MS = 1_000_000

Message = dict[str, Any]


def record_feed(
    out: Path,
    messages: Sequence[Message],
    gap_ns: int = 50 * MS,
    stream: str | None = None,
    times: Sequence[int] | None = None,
    **extra: Any,
) -> Path:
    """A recording of ``messages`` sent ``gap_ns`` apart on connection 0 (the first one
    ``gap_ns`` after the open), or at ``times`` after it, recorded as of ``stream`` (as
    `sim run --record` names them; none, as `sim record` of another server); ``extra``
    is the metadata's free-form part."""
    n = len(messages)
    t_ns = [0, *(times if times is not None else [k * gap_ns for k in range(1, n + 1)])]
    rows = event_batch(
        seq=list(range(n + 1)),
        t_ns=t_ns,
        wall_ns=[1_700_000_000 * 10**9 + t for t in t_ns],
        session="feed",
        conn=0,
        sender=Sender.SERVER,
        kind=[Kind.OPEN.value] + [Kind.TEXT.value] * n,
        stream=[None] + [stream] * n,
        payload=[None, *(orjson.dumps(m) for m in messages)],
    )
    meta = new_metadata(sim_version="0.1.0", scenario="feed", seed=None, extra=extra)
    with RecordingWriter(out, meta) as writer:
        writer.append(rows)
    return out


def feed_of(data: Callable[[int], Any], n: int = 60, kind: str = "quote") -> list[Message]:
    return [{"type": kind, "seq": i, "data": data(i)} for i in range(1, n + 1)]


def learned_scenario(recording: Path) -> tuple[str, Scenario]:
    """The text `sim learn` writes for ``recording``, and the scenario it loads as."""
    text = learn(recording).toml("learned")
    return text, parse_scenario(text, "learned.toml")


def generated(scenario: Scenario, tmp: Path, seconds: int = 10) -> list[Message]:
    """The messages of ``seconds`` of ``sim generate`` of ``scenario`` (written in ``tmp``)."""
    out = tmp / "again.parquet"
    generate(Plan.of(scenario, duration_ns=seconds * 10**9), out)
    frame = pl.read_parquet(out).filter(pl.col("kind") == "text")
    return [orjson.loads(p) for p in frame["payload"]]


def sim_learn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", "learn", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )


# ----------------------------------------------------------------------------- names


GENERATOR_KEYS = ("dist", "choice", "cycle", "const", "template", "list", "expr", "live")


@pytest.mark.parametrize("key", GENERATOR_KEYS)
def test_an_object_with_a_member_named_like_a_generator_key_is_sent_as_seen(
    key: str, tmp_path: Path
) -> None:
    """``{"meta": {"dist": 5.1, "x": 3}}``: a table holding ``dist`` is a generator, so
    ``meta`` is a choice of the objects seen (weighted), and says why."""
    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"meta": {key: i % 3, "x": "abc"[i % 3]}})
    )
    text, scenario = learned_scenario(rec)
    assert f"{key!r} would read as a generator key, so the objects are sent as seen" in text
    sent = [m["data"]["meta"] for m in generated(scenario, tmp_path)]
    assert sent and all(
        m in ({key: 0, "x": "a"}, {key: 1, "x": "b"}, {key: 2, "x": "c"}) for m in sent
    )


def test_list_items_with_a_member_named_like_a_generator_key_are_sent_as_seen(
    tmp_path: Path,
) -> None:
    """An item table holding ``list`` would be a list: the items are a choice of those seen."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"levels": [{"list": i % 2, "px": 1.5}, {"list": 7, "px": 2.5}]}),
    )
    text, scenario = learned_scenario(rec)
    assert "'list' would read as a generator key, so the objects are sent as seen" in text
    items = [item for m in generated(scenario, tmp_path) for item in m["data"]["levels"]]
    assert items and {tuple(item) for item in items} == {("list", "px")}


def test_sim_learn_of_a_member_named_dist_exits_0_with_a_scenario_that_loads(
    tmp_path: Path,
) -> None:
    """The reviewer's case: ``data.meta.dist`` made `sim learn` exit 2 with "the
    learned scenario does not load (please report)"."""
    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"meta": {"dist": round(i * 0.37, 2), "x": i}})
    )
    out = tmp_path / "learned.toml"
    result = sim_learn(str(rec), "-o", str(out))
    assert result.returncode == 0, result.stderr
    parse_scenario(out.read_text(), str(out))


@pytest.mark.parametrize(
    ("kinds", "names"),
    [
        (["price update"], ["price_update"]),
        (["ticker/BTC USD"], ["ticker_BTC_USD"]),
        # A stream's type cannot be blank: its envelope sends it as a constant.
        ([""], ["stream"]),
        # A valid type keeps its name; the others make theirs unique with a number.
        (
            ["price update", "price_update", "price/update"],
            ["price_update_2", "price_update", "price_update_3"],
        ),
    ],
)
def test_a_type_that_is_not_a_stream_name_is_named_validly_and_sent_as_it_was(
    kinds: list[str], names: list[str], tmp_path: Path
) -> None:
    """A stream is named validly, uniquely, and says so; its messages keep their type."""
    messages = [
        {"type": kind, "seq": i, "data": {"p": i % 5}} for i in range(1, 31) for kind in kinds
    ]
    text, scenario = learned_scenario(record_feed(tmp_path / "f.parquet", messages))
    assert [s.name for s in scenario.streams] == names
    for name, kind in zip(names, kinds, strict=True):
        if name != kind:
            assert f"# name: type {orjson.dumps(kind).decode()} is not a stream name" in text
    sent = generated(scenario, tmp_path)
    assert {(m["type"], tuple(m)) for m in sent} == {
        (kind, ("type", "seq", "timestamp", "data")) for kind in kinds
    }


@pytest.mark.parametrize(
    ("kind", "name"),
    [(3, "3"), (True, "true"), (1.5, "1.5"), ([1, 2], "_1_2_"), ({"k": "v"}, "__k_:_v__")],
)
def test_a_type_that_is_no_string_is_sent_as_it_was_and_said(
    kind: Any, name: str, tmp_path: Path
) -> None:
    """``"type": 3`` was learned as a stream sending ``"type": "3"``, a string. A
    stream's ``type`` is a string, so the 3 is sent by the stream's envelope, as it
    was, and the comment says so; the stream is named after its JSON text."""
    messages = [{"type": kind, "seq": i, "data": {"p": i % 5}} for i in range(1, 61)]
    text, scenario = learned_scenario(record_feed(tmp_path / "f.parquet", messages))
    (stream,) = scenario.streams
    assert stream.name == name
    said = f"# type: {orjson.dumps(kind).decode()} is not a string, which a stream's type is:"
    assert f"{said} the stream's envelope sends it as" in text
    sent = generated(scenario, tmp_path)
    assert sent and all(m["type"] == kind and type(m["type"]) is type(kind) for m in sent)


def test_a_null_type_is_not_sent_and_said(tmp_path: Path) -> None:
    """``"type": null`` became a stream "None" sending ``"type": "None"``: a scenario
    cannot send null, so the stream (named "null") sends no type, and says so."""
    messages = [{"type": None, "seq": i, "data": {"p": i % 5}} for i in range(1, 61)]
    text, scenario = learned_scenario(record_feed(tmp_path / "f.parquet", messages))
    assert [s.name for s in scenario.streams] == ["null"]
    assert "# type: null, which a scenario cannot send (TOML has no null): the stream's" in text
    sent = generated(scenario, tmp_path)
    assert sent and all("type" not in m for m in sent)


def test_a_type_3_and_a_type_text_3_are_two_streams(tmp_path: Path) -> None:
    """3 and "3" were one type ("3"): they are two streams, each sending its own."""
    messages = [{"type": [3, "3"][i % 2], "seq": i, "data": {"p": i % 5}} for i in range(60)]
    text, scenario = learned_scenario(record_feed(tmp_path / "f.parquet", messages))
    assert [s.name for s in scenario.streams] == ["3_2", "3"]
    assert "the stream's envelope sends it as 3; the stream is named 3_2" in text
    assert {(m["type"], type(m["type"])) for m in generated(scenario, tmp_path)} == {
        (3, int),
        ("3", str),
    }


def test_a_recorded_stream_of_several_types_says_which_it_sends(tmp_path: Path) -> None:
    """A stream sends one type: of a recorded stream whose messages had several, the
    most common, as before, but no longer silently."""
    messages = [{"type": ["a", 3, "a"][i % 3], "seq": i, "data": {"p": 1}} for i in range(60)]
    text, _ = learned_scenario(record_feed(tmp_path / "f.parquet", messages, stream="quotes"))
    assert '# types: 2 in 60 messages ("a" in 40, 3 in 20): all sent as if of the most' in text


def test_sim_learn_of_a_type_with_a_space_exits_0_with_a_scenario_that_loads(
    tmp_path: Path,
) -> None:
    """The reviewer's ``"type": "price update"``, through the command."""
    rec = record_feed(tmp_path / "f.parquet", feed_of(lambda i: {"p": i % 7}, kind="price update"))
    out = tmp_path / "learned.toml"
    result = sim_learn(str(rec), "-o", str(out))
    assert result.returncode == 0, result.stderr
    (stream,) = parse_scenario(out.read_text(), str(out)).streams
    assert (stream.name, stream.type) == ("price_update", "price update")


def test_an_empty_member_name_is_left_out_and_said(tmp_path: Path) -> None:
    """A field needs a name: ``""`` is left out, at the top, in an object and in list
    items, each with a comment saying so."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"": i % 5, "p": 1, "m": {"": 2, "a": i % 3}, "l": [{"": 3, "b": 4}]}),
    )
    text, scenario = learned_scenario(rec)
    assert '# "": left out: a member with an empty name (a field needs a name)' in text
    assert '# m."": left out: a member with an empty name (a field needs a name)' in text
    assert "left out a member with an empty name" in text  # the list item's
    (message, *_) = generated(scenario, tmp_path)
    assert message["data"] == {"p": 1, "m": {"a": message["data"]["m"]["a"]}, "l": [{"b": 4}]}


def test_sim_learn_of_an_empty_member_name_exits_0(tmp_path: Path) -> None:
    """The reviewer's ``{"": 3}``, through the command: the summary says it was left out."""
    rec = record_feed(tmp_path / "f.parquet", feed_of(lambda i: {"": i % 5, "p": 1}))
    out = tmp_path / "learned.toml"
    result = sim_learn(str(rec), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "left out" in result.stderr


def test_a_constant_string_named_like_a_misspelt_generator_key_is_sent(tmp_path: Path) -> None:
    """In a nested object the loader takes ``weight = "5kg"`` for a misspelt ``weights``:
    such a constant is written ``{ const = ... }``."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"order": {"weight": "5kg", "items": "box", "n": i % 4}}),
    )
    _, scenario = learned_scenario(rec)
    (message, *_) = generated(scenario, tmp_path)
    assert message["data"]["order"]["weight"] == "5kg"
    assert message["data"]["order"]["items"] == "box"


def test_a_relation_is_only_learned_between_names_an_expression_can_read(tmp_path: Path) -> None:
    """``last-price`` reads as ``last - price`` in an expression: the change of such a
    field is drawn, not derived, and the scenario loads."""
    prices = [100.0]
    for i in range(1, 200):
        prices.append(round(prices[-1] + (-1) ** (i * 7 % 3) * 0.25, 2))
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(
            lambda i: {
                "last-price": prices[i - 1],
                "change": round(prices[i - 1] - prices[max(i - 2, 0)], 2),
                "and": prices[i - 1],
                "delta": round(prices[i - 1] - prices[max(i - 2, 0)], 2),
            },
            n=200,
        ),
    )
    text, _ = learned_scenario(rec)
    assert "expr" not in text


def test_a_string_with_a_delete_character_is_written_escaped(tmp_path: Path) -> None:
    """TOML allows no raw DEL (U+007F) in a string: it is written as an escape."""
    rec = record_feed(tmp_path / "f.parquet", feed_of(lambda i: {"s": "a\x7fb", "\x7f": i % 3}))
    _, scenario = learned_scenario(rec)
    (message, *_) = generated(scenario, tmp_path)
    assert message["data"]["s"] == "a\x7fb" and "\x7f" in message["data"]


# ----------------------------------------------------------------------------- speed


def test_a_recording_made_at_a_speed_is_learned_in_scenario_time(tmp_path: Path) -> None:
    """`sim run --speed 20 --record` writes speed 20 in the metadata and wall times in
    the rows: a 5 s stream arrives every 250 ms, and is learned as every 5 s."""
    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"v": i % 9}, n=12), gap_ns=250 * MS, speed=20.0
    )
    learned = learn(rec)
    (stream,) = learned.streams
    assert stream.schedule.toml == 'every = "5s"'
    assert "times multiplied by 20 (the speed the recording was made at)" in learned.toml("x")


@pytest.mark.parametrize(
    ("gap_us", "speed", "learned", "given"),
    [
        (349_900, 20.0, "7s", None),  # sim run --speed 20 --record: 6998 ms
        (1_000_100, 10.0, "10s", 10.0),  # a capture learned with --speed 10: 10001 ms
        (500_100, 10.0, "5s", 10.0),  # 5001 ms
        (699_800, 10.0, "7s", 10.0),  # 6998 ms
        (7_002_000, 1.0, "7002ms", None),  # 2 ms off at speed 1: more than its jitter
        (2_260, 20.0, "45ms", None),  # 45.2 ms at speed 20: no 40 ms or 50 ms one
    ],
)
def test_an_interval_is_learned_round_where_the_recording_jitter_explains_the_difference(
    tmp_path: Path, gap_us: int, speed: float, learned: str, given: float | None
) -> None:
    """A recorded time is off by the clock's jitter (about 1 ms) times the speed it was
    recorded at: a fixed interval that far from a round one is learned as it (10001 ms
    at speed 10 is 10 s), never by more than a fixed interval's spread (1%)."""
    # Each gap wall-clock us longer or shorter (0 on the whole), as a feed that sleeps
    # between messages sends (none for the 2.26 ms gap, whose 1% is 23 us).
    wobble = [-20, 10, 0, 20, -10] if gap_us > 10**5 else [0]
    times = list(itertools.accumulate((gap_us + wobble[k % len(wobble)]) * 1000 for k in range(30)))
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"v": i % 9}, n=30),
        stream="s",
        times=times,
        **({"speed": speed} if given is None else {}),
    )
    (stream,) = learn(rec, speed=given).streams
    assert stream.schedule.kind == "fixed"
    assert stream.schedule.toml.splitlines()[0] == f'every = "{learned}"'


@pytest.mark.parametrize(
    "gaps_ns",
    [[5_000], [0], [1_000, 9_000, 3_000, 7_000, 2_000]],
    ids=["5 us apart", "all at one time", "1 to 9 us apart"],
)
def test_a_stream_faster_than_a_scenario_may_send_is_sent_at_the_fastest_and_said(
    tmp_path: Path, gaps_ns: list[int]
) -> None:
    """Messages under 10 us apart were learned as every = "5us" (200,000 msg/s, over the
    100,000 a scenario's stream may send: it did not load), or, all at one time, not at
    all (a division by 0). They are sent every 10 us, and the comment says why."""
    times = list(itertools.accumulate([MS, *(gaps_ns[k % len(gaps_ns)] for k in range(39))]))
    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"v": i % 9}, n=40), stream="s", times=times
    )
    text, _ = learned_scenario(rec)  # it loads
    assert 'every = "10us"' in text.splitlines()
    assert "faster than the 100000 msg/s a scenario's stream may send: sent at that rate" in text


def test_sim_learn_says_it_scaled_the_times_and_speed_1_keeps_them(tmp_path: Path) -> None:
    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"v": i % 9}, n=12), gap_ns=250 * MS, speed=20.0
    )
    out = tmp_path / "learned.toml"
    scaled = sim_learn(str(rec), "-o", str(out))
    assert scaled.returncode == 0, scaled.stderr
    assert "times multiplied by 20 (the speed the recording was made at)" in scaled.stderr
    assert 'every = "5s"' in out.read_text()
    kept = sim_learn(str(rec), "-o", str(out), "--force", "--speed", "1")
    assert kept.returncode == 0, kept.stderr
    assert 'every = "250ms"' in out.read_text() and "multiplied" not in kept.stderr


@pytest.mark.parametrize("speed", ["fast", -1, 0, None, True])
def test_a_speed_the_metadata_cannot_mean_is_said_and_times_taken_as_recorded(
    speed: Any, tmp_path: Path
) -> None:
    """The metadata's ``extra`` is free-form: a speed that is no positive number is not
    used, and the learned file says so."""
    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"v": i % 9}, n=12), gap_ns=250 * MS, speed=speed
    )
    learned = learn(rec)
    assert learned.streams[0].schedule.toml == 'every = "250ms"'
    assert "times taken as recorded: the recording's speed" in learned.toml("x")


def test_a_recording_without_a_speed_is_taken_as_recorded_without_a_word(tmp_path: Path) -> None:
    rec = record_feed(tmp_path / "f.parquet", feed_of(lambda i: {"v": i % 9}, n=12), 250 * MS)
    learned = learn(rec)
    assert learned.streams[0].schedule.toml == 'every = "250ms"'
    assert "speed" not in learned.toml("x")


def test_strings_that_go_together_are_spread_under_a_name_no_sibling_has(tmp_path: Path) -> None:
    """``level`` and ``message`` always go together: their spread choice is a field of
    its own, named ``level_message`` unless a sibling is called that (the spread
    field's name is never sent, but two keys of one name are no TOML)."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"level": "ab"[i % 2], "message": "xy"[i % 2], "level_message": 7}),
    )
    _, scenario = learned_scenario(rec)
    sent = {frozenset(m["data"].items()) for m in generated(scenario, tmp_path)}
    assert sent == {
        frozenset({("level", "a"), ("message", "x"), ("level_message", 7)}),
        frozenset({("level", "b"), ("message", "y"), ("level_message", 7)}),
    }


def test_a_line_break_or_delete_in_a_name_or_value_is_escaped_in_comments(
    tmp_path: Path,
) -> None:
    """A TOML comment may not hold a control character but tab: the names and values a
    comment quotes (a list item's members, a template's text) are written escaped."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"l": [{"a\nb": i % 3, "c\x7f": 1}], "t": f"line\n{i}"}),
    )
    text, scenario = learned_scenario(rec)
    assert all("\x7f" not in line for line in text.splitlines() if line.startswith("#"))
    assert "line\\u000a<seq>" in text
    (message, *_) = generated(scenario, tmp_path)
    assert set(message["data"]["l"][0]) == {"a\nb", "c\x7f"}
    assert message["data"]["t"] == f"line\n{message['seq']}"


# ----------------------------------------------------------------------------- nulls


def test_nulls_are_not_sent_as_empty_strings_and_are_said(tmp_path: Path) -> None:
    """A scenario cannot send null (TOML has none): ``bid`` is learned from its numbers,
    ``s`` keeps ``""`` apart from null, and each comment counts the nulls."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"bid": [None, 1.5, 2.5][i % 3], "s": [None, "", "x", "x"][i % 4]}),
    )
    text, scenario = learned_scenario(rec)
    assert "# bid: null in 20 of 60 messages" in text
    assert "# s: null in 15 of 60 messages" in text
    assert 's = { choice = ["x", ""], weights = [30, 15] }' in text
    sent = generated(scenario, tmp_path)
    assert all(isinstance(m["data"]["bid"], float) for m in sent)
    assert {m["data"]["s"] for m in sent} <= {"", "x"}


def test_a_field_that_is_always_null_is_left_out_and_said(tmp_path: Path) -> None:
    """Nothing a scenario can send stands for it: it is a comment line only."""
    rec = record_feed(tmp_path / "f.parquet", feed_of(lambda i: {"gone": None, "p": 1}))
    text, scenario = learned_scenario(rec)
    assert "# gone: left out: null in every message, which a scenario cannot send" in text
    assert generated(scenario, tmp_path)[0]["data"] == {"p": 1}


def test_an_object_that_is_sometimes_null_is_learned_from_the_others(tmp_path: Path) -> None:
    """Its members are learned from the messages where it is an object, and a comment
    line where it would be says how often it was null."""
    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"q": None if i % 4 == 0 else {"a": 1, "b": i}})
    )
    text, scenario = learned_scenario(rec)
    assert "# q: null in 15 of 60 messages" in text
    assert {tuple(m["data"]["q"]) for m in generated(scenario, tmp_path)} == {("a", "b")}


def test_nulls_in_lists_and_in_list_items_are_said(tmp_path: Path) -> None:
    """Null list items, and null members of item objects, are learned from the others."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(
            lambda i: {
                "xs": [1, None, 3],
                "levels": [{"px": 1.5, "qty": None}, {"px": None, "qty": 2}],
                "nones": [None, None],
            }
        ),
    )
    text, scenario = learned_scenario(rec)
    assert "# nones: left out: every item is null, which a scenario cannot send" in text
    (message, *_) = generated(scenario, tmp_path)
    assert None not in message["data"]["xs"]
    assert all(None not in item.values() for item in message["data"]["levels"])
    assert "null in 60 of 180 items" in text and "null in 60 of 120 items" in text


def test_values_that_hold_a_null_are_left_out_of_a_choice_and_said(tmp_path: Path) -> None:
    """A field of mixed types whose values hold a null inside (``[1, null]``)."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"m": [[1, None], "a", {"k": None}, "b"][i % 4]}),
    )
    text, scenario = learned_scenario(rec)
    assert "30 of 60 values hold a null" in text
    assert {m["data"]["m"] for m in generated(scenario, tmp_path)} <= {"a", "b"}


def test_sim_learn_of_the_reviewers_nulls_serves_no_empty_string(tmp_path: Path) -> None:
    """``bid`` null in the feed was served as ``{ choice = ["", 1.5, 2.5] }``."""
    rec = record_feed(tmp_path / "f.parquet", feed_of(lambda i: {"bid": [None, 1.5, 2.5][i % 3]}))
    out = tmp_path / "learned.toml"
    result = sim_learn(str(rec), "-o", str(out))
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in out.read_text().splitlines() if x.startswith("bid = ")]
    assert '""' not in line
    assert "null in 20 of 60 messages" in result.stderr


# ----------------------------------------------------------------------------- limits


def comment_on(text: str, key: str) -> str:
    """The comment line on the field ``key`` of a learned scenario."""
    (line,) = [x for x in text.splitlines() if x.startswith(f"# {key}: ")]
    return line


def test_list_items_with_one_value_per_position_cycle_through_those_values(
    tmp_path: Path,
) -> None:
    """A member of list items that is an object or a list at each position was told
    apart by where Python kept it: one message gave a cycle of memory addresses
    (``m = { cycle = [140392429834432, ...] }``), and 1 and true were one value. They
    are compared by content and type now, and a cycle sends the values themselves."""
    items = [{"m": {"a": 1}, "k": [1, 2], "x": 1}, {"m": {"a": 2}, "k": [3], "x": 2}]
    rec = record_feed(tmp_path / "one.parquet", [{"type": "q", "seq": 1, "data": {"l": items}}])
    text, scenario = learned_scenario(rec)
    assert "m = { cycle = [{ a = 1 }, { a = 2 }] }, k = { cycle = [[1, 2], [3]] }" in text
    (message, *_) = generated(scenario, tmp_path)
    assert message["data"]["l"] == items
    # The first item's x is 1, then true: no one value, so no cycle of [true, 2].
    flips = feed_of(lambda i: {"l": [{"x": 1 if i % 2 else True}, {"x": 2}]}, n=4)
    text, _ = learned_scenario(record_feed(tmp_path / "flips.parquet", flips))
    assert "cycle" not in text and "choice = [2, 1, true]" in text


def test_integers_beyond_64_bits_are_sent_as_floats_and_said(tmp_path: Path) -> None:
    """TOML integers are 64-bit: an integer from 2**63 (to 2**64 - 1; orjson reads
    larger ones as floats itself) was written as an integer the scenario did not load,
    or drawn with ``round = 0`` and sent as -2**63. As a field, a list item, a list
    item's member or a value of a choice, it is sent as a float, and said."""
    big = 2**63
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(
            lambda i: {
                "top": 2**64 - 1,
                "walk": big + i * 4096,
                "items": [big + 2048 * (i % 3)],
                "levels": [{"k": big}, {"k": big + 4096}],
                "mixed": [big, "a"][i % 2],
            }
        ),
    )
    text, scenario = learned_scenario(rec)
    for key in ("top", "walk", "items", "levels", "mixed"):
        assert "integers beyond 64 bits" in comment_on(text, key)
        assert "sent as floats, as TOML integers are 64-bit" in comment_on(text, key)
    sent = [m["data"] for m in generated(scenario, tmp_path)]
    assert sent and all(d["top"] == float(2**64 - 1) for d in sent)
    assert all(isinstance(d["walk"], float) and big <= d["walk"] <= big + 60 * 4096 for d in sent)
    assert all(isinstance(x, float) and big <= x <= big + 4096 for d in sent for x in d["items"])
    assert all(d["levels"] == [{"k": float(big)}, {"k": float(big + 4096)}] for d in sent)
    assert {d["mixed"] for d in sent} == {float(big), "a"}


def nested(value: Any, levels: int, key: str | None = None) -> Any:
    """``value`` inside ``levels`` arrays of one item, or objects of the one ``key``."""
    for _ in range(levels):
        value = [value] if key is None else {key: value}
    return value


def test_lists_longer_than_a_scenario_makes_are_shortened_and_said(tmp_path: Path) -> None:
    """A list field makes at most 10,000 items: lists of 9,998 to 10,002 (the learned
    scenario did not load) are sent with 9,998 to 10,000, and the comment says so."""
    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"xs": [i % 7] * (9_998 + i % 5), "n": 1}, n=6)
    )
    text, scenario = learned_scenario(rec)
    assert "9998..10002 items, shortened to 10000 (the longest list" in comment_on(text, "xs")
    sent = generated(scenario, tmp_path, seconds=1)
    assert sent and all(9_998 <= len(m["data"]["xs"]) <= 10_000 for m in sent)


def test_nesting_deeper_than_a_scenario_holds_is_cut_and_said(tmp_path: Path) -> None:
    """Fields and values nest at most 32 levels in a scenario (the learned one did not
    load): an object's members that would be deeper, and a list whose items would
    be, are left out, each said; the levels above are sent."""

    def chain(v: int, levels: int) -> Message:
        """``{"v": v, "a": {"v": v, "a": ...}}``, ``levels`` objects deep."""
        obj: Message = {"v": v}
        for _ in range(levels - 1):
            obj = {"v": v, "a": obj}
        return obj

    rec = record_feed(
        tmp_path / "f.parquet", feed_of(lambda i: {"d": chain(i % 3, 40), "l": nested(1, 40)})
    )
    text, scenario = learned_scenario(rec)
    cut = "d" + ".a" * 31  # 32 levels: its members would be at 33
    too_deep = "nested deeper than the 32 levels a scenario holds"
    assert comment_on(text, cut) == f"# {cut}: left out: its members would be {too_deep}"
    assert comment_on(text, "l") == f"# l: left out: its items would be {too_deep}"
    sent = [m["data"] for m in generated(scenario, tmp_path)]
    assert sent and all(set(data) == {"d"} for data in sent)
    deepest = [data["d"] for data in sent]
    for _ in range(30):
        deepest = [obj["a"] for obj in deepest]
    assert all(set(obj) == {"v"} for obj in deepest)


# ----------------------------------------------------------------------------- left out


def test_a_member_missing_from_some_messages_is_left_out_and_said(tmp_path: Path) -> None:
    """A scenario sends each field every time: a member that some messages (or list
    items) lack is left out, as it was, but no longer silently: its comment (or its
    list's) says from how many it was missing."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(
            lambda i: {
                "p": 1,
                **({"b": i % 4} if i % 3 else {}),
                "m": {"x": 1, **({"y": 2} if i % 2 else {})},
                "l": [{"k": 1, **({"j": 2} if i % 5 else {})}, {"k": 2}],
            }
        ),
    )
    text, scenario = learned_scenario(rec)
    why = "(a scenario sends a field every time)"
    assert comment_on(text, "b") == f"# b: left out: missing from 20 of 60 messages {why}"
    assert comment_on(text, "m.y") == f"# m.y: left out: missing from 30 of 60 messages {why}"
    assert f"j left out: missing from 72 of 120 items {why}" in comment_on(text, "l")
    (message, *_) = generated(scenario, tmp_path)
    assert message["data"] == {"p": 1, "m": {"x": 1}, "l": [{"k": 1}, {"k": 2}]}


def test_a_member_first_seen_after_the_first_1000_messages_is_said(tmp_path: Path) -> None:
    """Members are read from the first 1,000 messages (or items), and the others only
    looked for when their sizes say there are more: one first seen later is missing
    from those 1,000, and said so, as a member of the messages and of list items."""

    def data(i: int) -> Message:
        item = {"k": i % 3, **({"late": 2} if i > 1002 else {})}
        return {"p": i % 7, **({"late": 1} if i > 1000 else {}), "l": [item]}

    rec = record_feed(tmp_path / "f.parquet", feed_of(data, n=1010), gap_ns=MS)
    text, _ = learned_scenario(rec)
    why = "(a scenario sends a field every time)"
    assert comment_on(text, "late") == f"# late: left out: missing from 1000 of 1010 messages {why}"
    assert f"late left out: missing from 1002 of 1010 items {why}" in comment_on(text, "l")


def test_an_object_that_is_always_empty_is_sent_as_empty_and_said(tmp_path: Path) -> None:
    """``{}`` every time, as a field or a list item, or an object none of whose members
    can be sent, had no field and no comment (an item object of none was written ``{
    }``, with which sim generate sent nothing): each is sent as ``{}``, and said."""
    rec = record_feed(
        tmp_path / "f.parquet",
        feed_of(lambda i: {"p": 1, "e": {}, "m": {"gone": None}, "l": [{}, {}]}),
    )
    text, scenario = learned_scenario(rec)
    assert comment_on(text, "e") == "# e: always {}: sent as {}"
    assert comment_on(text, "m") == "# m: no member of it can be sent: sent as {}"
    assert comment_on(text, "m.gone").startswith("# m.gone: left out: null in every message")
    assert comment_on(text, "l") == "# l: 2..2 items: always {}"
    (message, *_) = generated(scenario, tmp_path)
    assert message["data"] == {"p": 1, "e": {}, "m": {}, "l": [{}, {}]}


# ----------------------------------------------------------------------------- any feed

#: Member names a scenario treats specially, and any short text.
NAMES = (
    st.sampled_from(
        ["", "dist", "list", "choice", "and", "prev", "b-c", "weight", "items", "spread"]
    )
    | st.sampled_from(["a\nb", "\x7f", "seq", "x", "x y"])
    | st.text(max_size=4)
)
# Numbers a feed sends: integers to the 64 bits orjson reads them in and past those
# TOML holds (2**63 to 2**64 - 1), floats not near their limits (where fits overflow).
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.integers(2**63 - 2**10, 2**64 - 1)
    | st.floats(-1e12, 1e12, allow_nan=False)
    | st.text(max_size=5)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8,
)
FEEDS = st.lists(
    st.tuples(
        st.sampled_from(["q", "price update", "", " ", "a/b", "$x"]) | VALUES,
        st.dictionaries(NAMES, VALUES, max_size=4),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FEEDS)
@example([("q", {"dist": [0, 1.192092896e-07]})])  # a std rounded to 0 (found in CI)
@example([("q", {"x": 0.0}), ("q", {"x": 1e-09}), ("q", {"x": 2e-09})])
@example([("q", {"l": list(range(10_001))})])  # longer than a scenario's list
@example([("q", {"d": nested(1, 40)}), ("q", {"d": nested({"a": 1}, 200, "b")})])  # too deep
@example(  # a choice of values at the depth limit (a value of a choice is one deeper)
    [("q", {"d": nested(v, 30, "a")}) for v in ([1, [2]], "x", "y", {"k": "z"}, {"dist": 1})]
)
def test_whatever_the_feed_the_learned_scenario_loads(feed: list[tuple[Any, Message]]) -> None:
    """Names, nulls and values of any kind: `sim learn` never writes a scenario that
    does not load (it exits 2 on one, asking for a report)."""
    messages = [{"type": kind, "seq": i, "data": data} for i, (kind, data) in enumerate(feed, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        rec = record_feed(Path(tmp) / "f.parquet", messages)
        parse_scenario(learn(rec).toml("learned"), "learned.toml")
