"""`sim learn` on recordings of known scenarios: it recovers what they were made from,
and a feed generated from what it learned is statistically close to the original.

Recordings are made with :func:`simulator.storage.generate.generate` (24 h of the
energy dashboard: about 50,000 messages), learned, and the learned scenario generated
in turn. Closeness is stated as: for every numeric field of ``data``, the two-sample
Kolmogorov–Smirnov statistic between the original and the learned feed is below
:data:`KS_THRESHOLD`; each stream's mean interval is within 5% of the original's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from simulator.errors import RecordingError
from simulator.scenario import load_scenario, parse_scenario
from simulator.storage.generate import Plan, generate
from simulator.storage.learn import Learned, learn
from simulator.storage.learn_fit import MIN_SUM, fit_running_sum, ks_two_sample
from simulator.storage.reader import read_metadata
from simulator.storage.writer import RecordingWriter

REPO = Path(__file__).parents[1]
DASHBOARD = REPO / "scenarios" / "energy-dashboard.toml"
DAY_NS = 24 * 3600 * 10**9
#: Largest two-sample KS statistic allowed per numeric field. With about 4,000 to 17,000
#: messages per stream the 1% critical value of two identical distributions is 0.02 to
#: 0.04; walks, being autocorrelated, wander further, so the bound leaves them room.
KS_THRESHOLD = 0.1

SCHEDULES = {
    "system_stats": "fixed",
    "energy_market": "fixed",
    "dashboard_stats": "fixed",
    "transaction": "uniform",
    "notification": "uniform",
}
KINDS = {
    "system_stats": {
        "cpu": "walk",
        "memory": "walk",
        "disk": "normal",
        "active_connections": "const",  # the live count: one client connected all day
    },
    "energy_market": {
        "current_price": "walk",
        "price_change": "percentage",
        "volume": "randint",
        "suppliers": "list",
    },
    "dashboard_stats": {
        "active_users": "walk",
        "total_trades": "running sum",
        "energy_volume": "lognormal",
        "revenue": "running sum",
    },
    "transaction": {"id": "template", "type": "choice", "amount": "lognormal", "status": "choice"},
    "notification": {"id": "counter", "level_message": "spread choice"},
}


def render(scenario: Path, out: Path, duration_ns: int = DAY_NS) -> Path:
    generate(Plan.of(load_scenario(scenario), duration_ns=duration_ns), out)
    return out


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Learned, Path]:
    """24 h of the dashboard, what was learned from it, and 24 h of the learned scenario."""
    tmp = tmp_path_factory.mktemp("learn")
    original = render(DASHBOARD, tmp / "day.parquet")
    learned = learn(original)
    scenario = tmp / "learned.toml"
    scenario.write_text(learned.toml("learned"))
    again = render(scenario, tmp / "again.parquet")
    return original, learned, again


def capture(recording: Path, out: Path, start_ns: int, stop_ns: int) -> Path:
    """What a client connected from ``start_ns`` to ``stop_ns`` of ``recording`` (a
    `sim generate` of one connection) would have recorded: its open at ``start_ns``,
    then the messages it was sent, the first of them mid-stream."""
    frame = pl.read_parquet(recording)
    sent = (pl.col("t_ns") >= start_ns) & (pl.col("t_ns") < stop_ns) & (pl.col("kind") == "text")
    at = pl.lit(start_ns, dtype=frame.schema["t_ns"]).alias("t_ns")
    opened = frame.filter(pl.col("kind") == "open").with_columns(at)
    with RecordingWriter(out, read_metadata(recording)) as writer:
        writer.append(pl.concat([opened, frame.filter(sent)]))
    return out


def fields_of(learned: Learned, stream: str) -> dict[str, str]:
    """The kind of each field of ``stream`` that ``learned`` holds."""
    (s,) = [s for s in learned.streams if s.name == stream]
    return {".".join(f.path): f.fit.kind for f in s.fields}


def feed(path: Path) -> dict[str, tuple[list[int], dict[str, list[float]]]]:
    """Each stream's message times and the values of each numeric field of ``data``."""
    out: dict[str, tuple[list[int], dict[str, list[float]]]] = {}
    frame = pl.read_parquet(path).filter(pl.col("kind") == "text")
    for stream, t, payload in frame.select("stream", "t_ns", "payload").rows():
        times, fields = out.setdefault(stream, ([], defaultdict(list)))
        times.append(t)
        for key, value in json.loads(payload)["data"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                fields[key].append(value)
    return out


def test_learning_the_dashboard_recovers_each_schedule_kind(day: Any) -> None:
    _, learned, _ = day
    assert {s.name: s.schedule.kind for s in learned.streams} == SCHEDULES


def test_learning_the_dashboard_recovers_each_field_kind(day: Any) -> None:
    _, learned, _ = day
    kinds = {s.name: {".".join(f.path): f.fit.kind for f in s.fields} for s in learned.streams}
    assert kinds == KINDS


def test_the_learned_relations_are_the_dashboards_own(day: Any) -> None:
    _, learned, _ = day
    toml = {".".join(f.path): f.fit.toml for s in learned.streams for f in s.fields}
    assert (
        '"(current_price - prev.current_price) / prev.current_price * 100"' in toml["price_change"]
    )
    assert '"prev.revenue + energy_volume * 0.15"' in toml["revenue"]
    assert '"prev.total_trades + round(active_users / 25)"' in toml["total_trades"]


def test_a_change_is_learned_from_a_capture_that_joined_mid_stream(
    day: Any, tmp_path: Path
) -> None:
    """A client that connects mid-stream records a first price_change that is no 0 (its
    previous price went unrecorded): the percentage still holds for every consecutive
    pair, and is learned, its comment saying what the first message had."""
    original, _, _ = day
    rec = capture(original, tmp_path / "mid.parquet", 3600 * 10**9 + 1, 3800 * 10**9)
    (first, *_) = feed(rec)["energy_market"][1]["price_change"]
    assert first != 0
    learned = learn(rec)
    assert fields_of(learned, "energy_market")["price_change"] == "percentage"
    text = learned.toml("mid")
    assert f"the first message had {first}, its previous one unrecorded" in text
    parse_scenario(text, "mid.toml")


@pytest.mark.parametrize("seed", [1, 3])
def test_a_percentage_change_is_learned_not_a_running_sum_of_it(tmp_path: Path, seed: int) -> None:
    """A price that moves little passes for a running sum of its own percentage change
    (``prev.current_price + price_change * 0.0015``, the factor about ``prev / 100``):
    the change is the relation, and the price stays drawn (the sum left it unbounded,
    and the change a normal draw)."""
    scenario = tmp_path / "calm.toml"
    scenario.write_text(
        f'[scenario]\nname = "calm"\nseed = {seed}\n[[stream]]\nname = "market"\n'
        'every = "7s"\n[stream.fields]\n'
        'current_price = { dist = "walk", start = 0.15, step = 0.001, revert = 0.02,'
        " min = 0.08, max = 0.25, round = 4 }\n"
        'price_change = { expr = "(current_price - prev.current_price)'
        ' / prev.current_price * 100", round = 2 }\n'
    )
    kinds = fields_of(learn(render(scenario, tmp_path / "calm.parquet", 180 * 10**9)), "market")
    assert kinds["price_change"] == "percentage", kinds
    assert kinds["current_price"] not in ("running sum", "difference", "percentage"), kinds


@pytest.mark.parametrize(
    ("start_s", "stop_s"),
    [(0, 180), (3600, 3740), (0, 600)],
    ids=["first 3 min", "14 messages mid-stream", "first 10 min"],
)
def test_a_relation_that_holds_for_every_message_of_a_short_recording_wins_over_a_fit(
    day: Any, tmp_path: Path, start_s: int, stop_s: int
) -> None:
    """In 3 minutes of the dashboard (17 messages of dashboard_stats), or 14 messages of
    a capture, the running count and the running product hold for every message:
    they are learned, not a randint and a uniform (too few values to see a walk); nor,
    at 10 minutes, the count as a walk (the median of active_users / step, 25.05, was
    taken for the divisor, and some steps did not round to it)."""
    original, _, _ = day
    rec = capture(original, tmp_path / "short.parquet", start_s * 10**9, stop_s * 10**9)
    kinds = fields_of(learn(rec), "dashboard_stats")
    assert kinds["total_trades"] == kinds["revenue"] == "running sum", kinds


def test_a_running_sum_is_learned_only_from_enough_messages_that_a_coincidence_is_rare() -> None:
    """A running sum's coefficient is fitted to the steps: on a few messages one is found
    for unrelated fields (an integer walk passed for a running sum of round(temp / 57.4)
    of a temperature in 13% of 4 messages). At every length, unrelated walks and draws
    pass for one in under 0.5% of tries; a real sum is learned from MIN_SUM messages."""
    rng = np.random.default_rng(7)
    tries = 400

    def pair(kind: str, n: int) -> tuple[list[float], list[float], bool]:
        if kind == "int walk, float":
            walk, other = np.cumsum(rng.integers(0, 4, n)) + 1000, rng.uniform(20, 30, n)
            return [float(x) for x in walk], [round(float(x), 2) for x in other], True
        if kind == "int walk of 0 or 1, float":
            walk, other = np.cumsum(rng.integers(0, 2, n)) + 1000, rng.uniform(20, 30, n)
            return [float(x) for x in walk], [round(float(x), 2) for x in other], True
        if kind == "int walk, int":
            walk, other = np.cumsum(rng.integers(-2, 3, n)) + 500, rng.integers(1, 100, n)
            return [float(x) for x in walk], [float(x) for x in other], True
        walk, other = np.cumsum(rng.normal(0, 1, n)) + 50, rng.uniform(0, 5, n)
        return [round(float(x), 1) for x in walk], [round(float(x), 1) for x in other], False

    often: list[str] = []
    for kind in ("int walk, float", "int walk of 0 or 1, float", "int walk, int", "float"):
        for n in range(4, 13):
            hits = 0
            for _ in range(tries):
                total, other, is_int = pair(kind, n)
                hits += fit_running_sum("total", total, {"x": other}, is_int) is not None
            if hits > 0.005 * tries:
                often.append(f"{kind}, {n} messages: {hits} of {tries}")
    assert not often, often
    users = np.round(540 + np.cumsum(rng.normal(0, 25, MIN_SUM)))
    trades = 4821 + np.cumsum(np.round(users / 25))
    fit = fit_running_sum("trades", list(trades), {"users": list(users)}, True)
    assert fit is not None and "round(users / 25)" in fit.toml


def test_learned_coefficients_are_the_shortest_decimals_that_give_every_value(
    day: Any, tmp_path: Path
) -> None:
    """From 10 minutes of the dashboard, 0.15 and 14600.0 (not 0.150000036 and
    14599.99) and 25 (not 25.05); from a capture that joined mid-stream, the revenue
    before it as the shortest decimal from which the sum gives every recorded value."""
    original, _, _ = day
    start = learn(capture(original, tmp_path / "start.parquet", 0, 600 * 10**9))
    toml = {".".join(f.path): f.fit.toml for s in start.streams for f in s.fields}
    assert toml["revenue"] == (
        '{ expr = "prev.revenue + energy_volume * 0.15", initial = 14600.0, round = 2 }'
    )
    assert toml["total_trades"] == (
        '{ expr = "prev.total_trades + round(active_users / 25)", initial = 4821 }'
    )
    rec = capture(original, tmp_path / "mid.parquet", 3600 * 10**9 + 1, 3800 * 10**9)
    (revenue,) = [
        f.fit.toml for s in learn(rec).streams for f in s.fields if f.path == ("revenue",)
    ]
    initial = revenue.split("initial = ")[1].split(",")[0]
    assert revenue.startswith('{ expr = "prev.revenue + energy_volume * 0.15"')
    assert len(initial.split(".")[1]) <= 3, initial  # the sum before it was unrounded
    fields = feed(rec)["dashboard_stats"][1]
    sums = float(initial) + np.cumsum(np.asarray(fields["energy_volume"]) * 0.15)
    # Each recorded value is the sum rounded to 2 decimals (at a tie, either way: the
    # generator adds in another order).
    assert np.abs(sums - np.asarray(fields["revenue"])).max() <= 0.005 + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_a_running_sum_that_drifts_from_its_values_has_the_shortest_factor_its_steps_allow(
    seed: int,
) -> None:
    """Each step of revenue is volume * 0.15 within the rounding, but the factor wanders
    (as a price's percentage over a price does): no factor gives every recorded value,
    and the measured median ratio was written (0.14999648555563466); now the shortest
    decimal that every step allows is."""
    rng = np.random.default_rng(seed)
    volume = np.round(rng.uniform(100, 200, 30), 2)
    factor = 0.15 + rng.uniform(-0.00002, 0.00002, 30)
    revenue = np.round(1000 + np.cumsum(volume * factor), 2)
    fit = fit_running_sum("revenue", list(revenue), {"volume": list(volume)}, False)
    assert fit is not None
    k = fit.toml.split(" * ")[1].split('"')[0]
    assert len(k) <= len("0.15001") and abs(float(k) - 0.15) <= 2e-5, fit.toml


def test_a_feed_generated_from_the_learned_scenario_is_close_to_the_original(day: Any) -> None:
    original, _, again = day
    a, b = feed(original), feed(again)
    assert sorted(a) == sorted(b)
    far: list[str] = []
    for stream, (times, fields) in a.items():
        other_times, other_fields = b[stream]
        interval, other = np.diff(times).mean(), np.diff(other_times).mean()
        if abs(other / interval - 1) > 0.05:
            far.append(f"{stream} mean interval {other:.4g} vs {interval:.4g}")
        for name, values in fields.items():
            d = ks_two_sample(values, other_fields[name])
            if d >= KS_THRESHOLD:
                far.append(f"{stream}.{name}: KS D = {d:.3f}")
    assert not far, far


def test_a_field_the_original_sent_as_integers_is_sent_as_integers_again(day: Any) -> None:
    original, _, again = day
    a, b = feed(original), feed(again)
    for stream, (_, fields) in a.items():
        for name, values in fields.items():
            if all(isinstance(v, int) for v in values):
                assert all(isinstance(v, int) for v in b[stream][1][name]), (stream, name)


def test_every_fit_is_commented_with_its_quality(day: Any) -> None:
    _, learned, _ = day
    text = learned.toml("learned")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = {" in line and not line.startswith(("#", "every")):
            assert lines[i - 1].startswith("# "), line
    assert "KS D = " in text and "holds for 100.00% of messages" in text
    parse_scenario(text, "learned.toml")  # loads as it is


def test_a_poisson_stream_is_learned_as_poisson(tmp_path: Path) -> None:
    scenario = tmp_path / "poisson.toml"
    scenario.write_text(
        '[scenario]\nname = "p"\nseed = 5\n[[stream]]\nname = "trades"\nrate = 4\n'
        "[stream.fields]\n"
        'side = { choice = ["buy", "sell"], weights = [3, 1] }\n'
        'ok = { dist = "bool", p = 0.8 }\n'
        'size = { dist = "uniform", min = 1, max = 9, round = 3 }\n'
        'total = { expr = "prev.total + size", initial = 0.0, round = 3 }\n'
        'change = { expr = "size - prev.size", round = 3 }\n'
    )
    learned = learn(render(scenario, tmp_path / "p.parquet", duration_ns=3600 * 10**9))
    (stream,) = learned.streams
    assert stream.schedule.kind == "poisson"
    assert stream.schedule.toml.startswith("rate = 3.9") or stream.schedule.toml.startswith(
        "rate = 4.0"
    )
    kinds = {f.path[-1]: f.fit.kind for f in stream.fields}
    assert kinds == {
        "side": "choice",
        "ok": "bool",
        "size": "uniform",
        "total": "running sum",
        "change": "difference",
    }


def test_a_file_that_is_not_a_recording_is_a_recording_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(RecordingError, match=r"bad\.parquet: not a Parquet file"):
        learn(bad)


def test_sim_learn_writes_the_scenario_and_a_summary(day: Any, tmp_path: Path) -> None:
    original, _, _ = day
    out = tmp_path / "learned.toml"
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "learn", str(original), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "notification" in result.stderr and "spread choice" in result.stderr
    assert f"wrote {out}: 5 streams" in result.stderr
    assert load_scenario(out).name == "learned"
    again = subprocess.run(
        [sys.executable, "-m", "simulator", "learn", str(original), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_directory_of_parts_is_learnt_as_its_one_table(day: Any, tmp_path: Path) -> None:
    """`sim run --workers N --record DIR` writes DIR/worker=W/part.parquet: learn reads
    such a directory as the one recording it is."""
    original, learned, _ = day
    part = tmp_path / "session" / "worker=0" / "part.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(original.read_bytes())
    again = learn(tmp_path / "session")
    # The same scenario; only its first comment line (the source's path) differs.
    assert again.toml("learned").split("\n")[1:] == learned.toml("learned").split("\n")[1:]


def test_a_few_messages_are_learned_at_their_times_to_the_millisecond() -> None:
    """A stream of one or two messages is ``at`` their offsets, rounded to the
    millisecond (the microseconds are the recording's jitter), and parses back."""
    from simulator.storage.learn_fit import fit_schedule

    one = fit_schedule([1_051_793])
    assert one.toml == 'at = ["1ms"]' and one.quality == "only 1 message"
    two = fit_schedule([400_123, 3_710_398_128])
    assert two.toml == 'at = ["400123ns", "3710ms"]' and two.quality == "only 2 messages"
    text = f'[scenario]\nname = "x"\n[[stream]]\nname = "s"\n{two.toml}\n'
    assert [s.schedule for s in parse_scenario(text).streams]
    # Never so coarse that two become one: to the microsecond then.
    assert fit_schedule([1_200_000, 1_400_000]).toml == 'at = ["1200us", "1400us"]'


def test_a_fast_fixed_feed_starts_where_its_interval_says() -> None:
    """A 2.5 ms feed starting at 2.5 ms: ``every = "2500us"`` and no ``first`` (the
    first offset rounded as the interval is, not to the millisecond)."""
    from simulator.storage.learn_fit import fit_schedule

    times = [2_500_000 * k + (k % 2) * 300 for k in range(1, 200)]  # 0.3 us of jitter
    assert fit_schedule(times).toml == 'every = "2500us"'
