"""The shipped fault scenarios: valid, planned reproducibly by `sim plan`, built on the
energy-dashboard feed, and (outage.toml) behaving as described on a real socket."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from simulator.core.fault_report import plan_report
from simulator.core.faults import connection_schedule, plan_faults, server_schedule
from simulator.core.model import FaultKind
from simulator.net.server import serve
from simulator.scenario import load_scenario
from tests.e2e.conftest import EPOCH_NS, ROOT, S, async_test, client, dashboard

SCENARIOS = ROOT / "scenarios"
OUTAGE = SCENARIOS / "outage.toml"
FLAKY = SCENARIOS / "flaky-network.toml"
ZOMBIE = SCENARIOS / "zombie-connection.toml"
HERD = SCENARIOS / "thundering-herd.toml"
FAULT_SCENARIOS = [OUTAGE, FLAKY, ZOMBIE, HERD]


def sim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=ROOT,
    )


# ----------------------------------------------------------------------------- the files


def test_validate_accepts_every_fault_scenario() -> None:
    """`sim validate` exits 0 on the four files and prints an ok header for each."""
    result = sim("validate", *FAULT_SCENARIOS)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    headers = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split(": ok: ")[0] for h in headers] == [str(p) for p in FAULT_SCENARIOS]


@pytest.mark.parametrize("path", FAULT_SCENARIOS, ids=lambda p: p.name)
def test_fault_scenario_opens_with_what_it_simulates_and_what_a_good_client_does(
    path: Path,
) -> None:
    """Each file starts with a comment block, which says what a good client should do."""
    lines = path.read_text().splitlines()
    comment = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert len(comment) >= 8, comment
    assert any("What a good client does" in line for line in comment)


@pytest.mark.parametrize("path", FAULT_SCENARIOS, ids=lambda p: p.name)
def test_fault_scenario_serves_the_energy_dashboard_streams(path: Path) -> None:
    """The [[stream]] tables are the dashboard's: same streams, schedules and fields."""
    sc = load_scenario(path)
    assert sc.streams == dashboard().streams
    assert sc.faults


# ----------------------------------------------------------------------------- sim plan


def test_plan_of_the_outage_is_the_same_every_time() -> None:
    """`sim plan` twice with the same arguments prints the same plan: the outage at 30 s,
    for 20 s, with Retry-After 10."""
    args = ("plan", "scenarios/outage.toml", "--duration", "2m", "--connections", "3")
    first, second = sim(*args), sim(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    server = first.stdout.split("server\n")[1].split("connections\n")[0].splitlines()
    assert [line.split() for line in server] == [
        ["30s", "server", "outage", "'server-down'", "until", "50s", "retry_after_s=10"]
    ]


def test_another_seed_changes_the_flaky_network_plan() -> None:
    """The flaky network's hits are drawn from the seed: --seed 1 and --seed 2 differ,
    and each is the same when asked again."""
    args = ("plan", FLAKY, "--duration", "5m", "--connections", "2", "--max-hits", "1000")
    one, two, one_again = (
        sim(*args, "--seed", "1"),
        sim(*args, "--seed", "2"),
        sim(*args, "--seed", "1"),
    )
    assert one.returncode == two.returncode == 0, (one.stderr, two.stderr)
    assert one.stdout == one_again.stdout

    def messages(out: str) -> list[str]:
        return out.split("messages\n")[1].splitlines()

    assert messages(one.stdout) != messages(two.stdout)
    for kind in ("drop", "burst_loss", "delay", "duplicate", "reorder"):
        assert any(line.startswith(f"  {kind} ") for line in messages(one.stdout)), kind


# ----------------------------------------------------------------------------- the plans


def test_flaky_network_hits_every_connection_with_each_of_its_message_faults() -> None:
    """Over 10 minutes, each of loss, loss bursts, latency, duplicates and reordering
    hits each of two connections at least once."""
    lines = plan_report(load_scenario(FLAKY), None, 600 * S, 2)
    hit: dict[str, set[str]] = {}  # fault kind -> connections it hit
    kind = ""
    for line in lines[lines.index("messages") + 1 :]:
        if line.startswith("    conn "):  # "    conn 1 system_stats: seq 9, 19"
            hit[kind].add(line.split()[1])
        else:  # "  drop 'random-loss': 7 of 510 messages (1.4%)"
            kind = line.split()[0]
            hit[kind] = set()
    assert hit == {k: {"0", "1"} for k in ("drop", "burst_loss", "delay", "duplicate", "reorder")}


def test_zombie_connections_stall_for_a_while_and_some_for_good() -> None:
    """Every connection freezes now and then (25 s each); about half stall for good at 90 s."""
    plan = plan_faults(load_scenario(ZOMBIE))
    horizon = 10 * 60 * S
    events = [e for c in range(20) for e in connection_schedule(plan, c, horizon)]
    assert {e.kind for e in events} == {FaultKind.STALL}
    freezes = [e for e in events if e.fault == "freeze"]
    assert {e.conn for e in freezes} == set(range(20))
    assert all(e.end_ns == e.t_ns + 25 * S for e in freezes)
    zombies = [e for e in events if e.fault == "zombie"]
    assert 4 <= len(zombies) <= 16  # fraction 0.5 of 20
    assert all(e.t_ns == 90 * S and e.end_ns is None for e in zombies)


def test_thundering_herd_closes_everyone_every_minute_then_refuses_for_5_s() -> None:
    """Every 60 s: mass_disconnect with 1012, then 503 with Retry-After 2 for 5 s."""
    events = server_schedule(plan_faults(load_scenario(HERD)), 5 * 60 * S)
    closes = [e for e in events if e.kind is FaultKind.MASS_DISCONNECT]
    refusals = [e for e in events if e.kind is FaultKind.REJECT]
    assert [e.t_ns for e in closes] == [60 * S, 120 * S, 180 * S, 240 * S]
    assert all(e.params["code"] == 1012 for e in closes)
    assert [(e.t_ns, e.end_ns) for e in refusals] == [(e.t_ns, e.t_ns + 5 * S) for e in closes]
    assert all(e.params == {"status": 503, "retry_after_s": 2} for e in refusals)


# ----------------------------------------------------------------------------- a real run


SPEED = 40.0  # the outage is at 0.75 s of wall time, and lasts 0.5 s


@async_test()
async def test_outage_run_feeds_then_refuses_with_503_then_recovers_with_a_seq_gap() -> None:
    """A client on outage.toml at speed 40 gets the feed, is dropped at 30 s, is refused
    with 503 and Retry-After: 1 (the file's 10 s of scenario time is 0.25 s of wall time
    at 40x, rounded up), honours it, and is fed again after 50 s, the seqs jumping over
    the messages of the outage."""
    async with serve(load_scenario(OUTAGE), port=0, speed=SPEED, epoch_ns=EPOCH_NS) as server:
        ws = await client(server.url)
        before: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosedError) as dropped:
            while True:
                before.append(orjson.loads(await ws.recv()))
        dropped_at = server.virtual_ns()

        refusals: list[tuple[int, int, str | None]] = []
        while True:
            try:
                ws = await client(server.url)
                break
            except InvalidStatus as refused:
                response = refused.response
                retry_after = response.headers.get("Retry-After")
                refusals.append((server.virtual_ns(), response.status_code, retry_after))
                # A good client waits Retry-After: wall seconds, whatever the speed.
                await asyncio.sleep(int(retry_after or 1))
        accepted_at = server.virtual_ns()
        after = [orjson.loads(await ws.recv())]
        while after[-1]["type"] != "system_stats":
            after.append(orjson.loads(await ws.recv()))
        await ws.close()

    # The feed, up to the outage.
    assert dropped.value.rcvd is None  # reset: no close frame
    assert 30 * S <= dropped_at < 40 * S
    assert {m["type"] for m in before} >= {"system_stats", "dashboard_stats", "energy_market"}
    # Refused during it, told to wait a wall second (40 s of scenario time: past its end).
    assert refusals
    for at, status, retry_after in refusals:
        assert 30 * S <= at < 50 * S
        assert (status, retry_after) == (503, "1")
    # Back after it, the seqs jumping over the messages of the outage.
    assert accepted_at >= 50 * S
    last_before = {m["type"]: m["seq"] for m in before}
    assert all(m["seq"] > last_before.get(m["type"], 0) for m in after)  # nothing replayed
    # system_stats is every 5 s: seq 6 at 30 s, then 7 .. 9 lost, seq 10 at 50 s.
    assert last_before["system_stats"] <= 6
    assert after[-1]["seq"] >= 10
    assert [i.kind for i in server.injected].count("outage") == 1
