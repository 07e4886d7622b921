"""Render the golden files of ``tests/test_golden.py``, and rewrite them when run.

    .venv/bin/python tests/data/golden/regenerate.py

Run it only when a change to what ``sim`` sends is deliberate: the golden files pin the
promise of ``docs/determinism.md`` that the output is a fixed function of the inputs.
After running it you must review ``git diff tests/data/golden/`` (only what you meant
to change may move) and list the change under "Changes" in ``docs/determinism.md``:
the same scenario and seed no longer give the same feed, a compatibility break.

Each renderer returns the lines of one file, so the test compares the code as it is
now with the file as it was checked in, and this script and the test cannot disagree
about what is pinned.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

from simulator.core.draws import Draws, derive_key
from simulator.core.fault_report import plan_report
from simulator.core.faults import plan_faults
from simulator.core.model import Scenario
from simulator.core.timeline import Batch, Timeline
from simulator.scenario import load_scenario

GOLDEN_DIR: Final = Path(__file__).resolve().parent
ROOT: Final = GOLDEN_DIR.parents[2]
DASHBOARD: Final = ROOT / "scenarios" / "energy-dashboard.toml"
FLAKY: Final = ROOT / "scenarios" / "flaky-network.toml"

S: Final = 1_000_000_000
SEED: Final = 42
# 2026-03-14T15:09:26.535897932Z. Not a whole second, so that the files also pin how
# wall-clock times are cut to the millisecond in `timestamp` fields.
EPOCH_NS: Final = 1_773_500_966_535_897_932

BROADCAST_FRAMES: Final = 40
SCOPE_FRAMES: Final = 12  # per connection scope, 0 and 1
PLAN_DURATION_NS: Final = 300 * S  # `sim plan ... --duration 5m --connections 2`
PLAN_CONNECTIONS: Final = 2
DECISION_CONNECTIONS: Final = 3


def _line(record: dict[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False)


def _load(path: Path) -> Scenario:
    return load_scenario(str(path))


def _rows(batch: Batch) -> list[tuple[int, int, int, bytes]]:
    """A batch as ``(t_ns, stream index, seq, payload)`` rows."""
    columns = (batch.t_ns.tolist(), batch.stream.tolist(), batch.seq.tolist(), batch.payloads)
    return list(zip(*columns, strict=True))


def _frames(scenario: Scenario, scope: int | None, n: int) -> list[str]:
    """The first ``n`` messages of one scope: time, stream, seq and the exact payload."""
    timeline = Timeline(scenario, SEED, scope, epoch_ns=EPOCH_NS)
    names = [s.name for s in scenario.streams]
    rows: list[tuple[int, int, int, bytes]] = []
    t = 0
    while len(rows) < n and not timeline.ended:
        t += 10 * S
        rows.extend(_rows(timeline.take_until(t)))
    shown = "broadcast" if scope is None else scope
    return [
        _line(
            {
                "scope": shown,
                "i": i,
                "t_ns": t_ns,
                "stream": names[stream],
                "seq": seq,
                # orjson writes UTF-8, so the string is the payload's exact bytes.
                "payload": payload.decode("utf-8"),
            }
        )
        for i, (t_ns, stream, seq, payload) in enumerate(rows[:n])
    ]


def dashboard_frames() -> list[str]:
    """``energy-dashboard.frames.jsonl``: the broadcast timeline, then the timelines of
    connection scopes 0 and 1 (what a per-connection server sends each connection,
    both taken to open at the epoch)."""
    scenario = _load(DASHBOARD)
    return [
        *_frames(scenario, None, BROADCAST_FRAMES),
        *_frames(scenario, 0, SCOPE_FRAMES),
        *_frames(scenario, 1, SCOPE_FRAMES),
    ]


def flaky_plan() -> list[str]:
    """``flaky-network.plan.txt``: exactly what
    ``sim plan scenarios/flaky-network.toml --duration 5m --connections 2`` prints."""
    return plan_report(_load(FLAKY), SEED, PLAN_DURATION_NS, PLAN_CONNECTIONS)


def flaky_decisions() -> list[str]:
    """``flaky-network.decisions.jsonl``: every message of the first 5 minutes that a
    fault hits on connections 0, 1 and 2, with the whole decision (the exact delay in
    ns, merged faults). A message not listed is sent clean."""
    scenario = _load(FLAKY)
    plan = plan_faults(scenario, SEED)
    names = [s.name for s in scenario.streams]
    batch = Timeline(scenario, SEED, None, epoch_ns=EPOCH_NS).take_until(PLAN_DURATION_NS)
    messages = _rows(batch)
    lines = []
    for conn in range(DECISION_CONNECTIONS):
        # Asked in timeline order, as a server asks: one ConnectionFaults a connection.
        faults = plan.connection(conn)
        for t_ns, stream, seq, payload in messages:
            d = faults.decide(names[stream], seq, payload, t_ns)
            if d.clean:
                continue
            corrupt = None if d.corrupt is None else d.corrupt.decode("utf-8")
            record = {
                "conn": conn,
                "t_ns": t_ns,
                "stream": names[stream],
                "seq": seq,
                "faults": list(d.faults),
                "drop": d.drop,
                "delay_ns": d.delay_ns,
                "keep_order": d.keep_order,
                "copies": d.copies,
                "hold": d.hold,
                "corrupt": corrupt,
            }
            lines.append(_line(record))
    return lines


# Keys as the timeline and the faults derive them, and two that need several words.
_KEYS: Final[tuple[tuple[int, tuple[str | int, ...]], ...]] = (
    (SEED, ("schedule", "transaction", "broadcast")),
    (SEED, ("fields", "system_stats", "broadcast")),
    (SEED, ("fields", "system_stats", 0)),
    (SEED, ("fault", "jitter", 1, "transaction")),
    (2**40 + 7, ("fields", "Größe", 2**33)),
)


def draws() -> list[str]:
    """``draws.jsonl``: the key derivation and the first raw PCG64 words of a few keys.

    When this file fails alone, the words sim draws from changed (the derivation, or
    numpy's SeedSequence/PCG64, which NEP 19 keeps stable), not how they are used.
    """
    lines = []
    for seed, parts in _KEYS:
        words = Draws(seed, *parts).words(4, 1)[:, 0].tolist()
        record = {
            "seed": seed,
            "parts": list(parts),
            "key": derive_key(seed, *parts),
            "words": [f"{w:016x}" for w in words],
        }
        lines.append(_line(record))
    return lines


RENDERERS: Final[dict[str, Callable[[], list[str]]]] = {
    "energy-dashboard.frames.jsonl": dashboard_frames,
    "flaky-network.plan.txt": flaky_plan,
    "flaky-network.decisions.jsonl": flaky_decisions,
    "draws.jsonl": draws,
}


def main() -> None:
    for name, render in RENDERERS.items():
        lines = render()
        path = GOLDEN_DIR / name
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", newline="\n")
        print(f"wrote {path.relative_to(ROOT)}: {len(lines)} lines")
    print("now review `git diff tests/data/golden/` and note the change in docs/determinism.md")


if __name__ == "__main__":
    main()
