"""The end of every command's ``--help``: two or three examples to copy, and the page of
``docs/`` that tells the rest (``tests/e2e/test_cli_help.py`` checks every command has
them)."""

from __future__ import annotations

from typing import Final

_EXAMPLES: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "sim": (
        (
            "sim validate scenarios/*.toml",
            "sim run scenarios/energy-dashboard.toml --port 0 --speed 10",
            "sim COMMAND --help",
        ),
        "README.md",
    ),
    "validate": (
        (
            "sim validate scenarios/*.toml",
            "sim validate my-faults.toml       # a faults-only file (for --faults)",
            "sim validate --against feed.yaml scenarios/energy-dashboard.toml",
        ),
        "docs/scenario-reference.md",
    ),
    "generate": (
        (
            "sim generate scenarios/energy-dashboard.toml --duration 24h --out out/day.parquet",
            "sim generate scenarios/energy-dashboard.toml --duration 10m --connections 3"
            " --seed 7 --out out/three.parquet --force",
        ),
        "docs/recording-format.md",
    ),
    "run": (
        (
            "sim run scenarios/energy-dashboard.toml",
            "sim run scenarios/outage.toml --port 0 --speed 10 --seed 7",
            "sim run scenarios/energy-dashboard.toml --duration 5m --record out/s.parquet",
        ),
        "docs/protocol.md",
    ),
    "plan": (
        (
            "sim plan scenarios/flaky-network.toml --duration 5m --connections 3",
            "sim plan scenarios/energy-dashboard.toml --faults my-faults.toml --duration 5m",
            "sim plan scenarios/outage.toml --flat",
        ),
        "docs/faults.md",
    ),
    "inspect": (
        (
            "sim inspect recordings/energy-dashboard-sample.parquet",
            "sim inspect out/session.parquet --json",
        ),
        "docs/recording-format.md",
    ),
    "diff": (
        (
            "sim diff out/a.parquet out/b.parquet",
            "sim diff out/generated.parquet out/recorded.parquet --ignore-timing",
        ),
        "docs/record-and-replay.md",
    ),
    "learn": (
        (
            "sim learn out/real.parquet -o scenarios/learned.toml",
            "sim learn out/day.parquet -o out/day.toml --name day --force",
        ),
        "docs/learn.md",
    ),
    "recover": (
        (
            "sim recover out/session.parquet   # after the recorder was killed",
            "sim recover out/session.parquet && sim inspect out/session.parquet",
        ),
        "docs/recording-format.md",
    ),
    "replay": (
        (
            "sim replay recordings/energy-dashboard-sample.parquet --free-run",
            "sim replay out/session.parquet --port 0 --speed max",
            "sim replay out/session.parquet --faults scenarios/flaky-network.toml",
        ),
        "docs/record-and-replay.md",
    ),
    "record": (
        (
            "sim record --upstream wss://feed.example.com --out out/real.parquet",
            "sim record --upstream ws://127.0.0.1:3002 --port 0 --out out/s.parquet --force",
            'sim record --connect ws://127.0.0.1:3002 --send \'{"type":"subscribe"}\''
            " --duration 1m --out out/feed.parquet",
        ),
        "docs/record-and-replay.md",
    ),
    "connect": (
        (
            "sim connect ws://127.0.0.1:3002",
            "sim connect ws://127.0.0.1:3002 --subscribe energy_market --duration 1m",
            "sim connect ws://127.0.0.1:3002 --log-format json --no-heartbeat",
        ),
        "docs/testing-your-client.md",
    ),
    "asyncapi": (
        (
            "sim asyncapi scenarios/energy-dashboard.toml -o feed.yaml",
            "sim asyncapi scenarios/energy-dashboard.toml --format json",
        ),
        "docs/contracts.md",
    ),
    "new": (
        (
            "sim new --from-asyncapi feed.yaml -o scenarios/feed.toml",
            "sim new --from-asyncapi contract.json          # the skeleton on stdout",
        ),
        "docs/contracts.md",
    ),
    "schema": (
        (
            "sim schema -o scenario.schema.json",
            "sim schema | python -m json.tool | less",
        ),
        "docs/contracts.md",
    ),
}


def epilog(command: str) -> str:
    """The text after the options in ``sim COMMAND --help``: its examples, unwrapped
    (click keeps a paragraph that starts with ``\\b`` as written), and its doc page."""
    examples, page = _EXAMPLES[command]
    lines = "\n".join(f"  {example}" for example in examples)
    return f"\b\nExamples:\n{lines}\n\nMore: {page} (in the sim repository)."
