"""Looking at recordings after the fact: what one holds, and how two differ.

:func:`inspect` summarises one recording (connections, streams and their rates, the
longest silences, close codes, faults, metadata); :func:`diff` compares two, connection
by connection. Both return frozen values; :func:`summary_lines`, :func:`summary_json`
and :func:`diff_lines` render them for people and for tools. Nothing here prints or
decides an exit code: that is the caller's business.

Every problem with a file is a :class:`~simulator.errors.RecordingError` naming it,
whether the footer is wrong (checked by :func:`scan_recording`) or the data inside is
damaged (found when a query runs, translated here).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import polars as pl

from simulator.errors import RecordingError
from simulator.storage.reader import read_metadata, scan_recording
from simulator.storage.schema import Kind, error_reason

#: How many of the longest gaps :func:`inspect` reports.
TOP_GAPS: Final = 5
#: How many ``error`` rows :func:`inspect` quotes (all are counted).
TOP_ERRORS: Final = 10
#: Payloads in a :class:`RowSummary` are cut to about this many characters.
PAYLOAD_CHARS: Final = 80
#: Connection number of rows that belong to no connection (server-wide faults).
NO_CONNECTION: Final = -1

_MESSAGE_KINDS: Final = (Kind.TEXT.value, Kind.BINARY.value)
_CONTROL_KINDS: Final = (Kind.PING.value, Kind.PONG.value)
_COMPARED: Final = ("sender", "kind", "stream", "payload")


# --------------------------------------------------------------------------- inspect


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """One connection: its rows, when it was first and last seen, how it closed.

    ``close_code``/``close_reason`` come from its first ``close`` row (whoever sent
    it); both are ``None`` when it has none.
    """

    conn: int
    rows: int
    first_t_ns: int
    last_t_ns: int
    close_code: int | None
    close_reason: str | None


@dataclass(frozen=True, slots=True)
class StreamCount:
    """Messages (``text``/``binary`` rows) of one stream in one direction.

    ``stream`` is ``None`` for messages of no known stream (e.g. what clients sent).
    ``rate_per_s`` is over the whole recording and all connections; ``None`` when the
    recording lasts no time at all.
    """

    stream: str | None
    sender: str
    messages: int
    rate_per_s: float | None


@dataclass(frozen=True, slots=True)
class Gap:
    """A silence: no message of ``stream`` from ``sender`` on ``conn`` from ``after_t_ns``
    (the message before the gap) for ``gap_ns``."""

    conn: int
    sender: str
    stream: str | None
    gap_ns: int
    after_t_ns: int


@dataclass(frozen=True, slots=True)
class Summary:
    """What :func:`inspect` found. Times are ``t_ns``: ns since the session started.

    ``duration_ns`` runs from the first row to the last. ``close_codes`` and
    ``faults`` are ``(value, count)`` pairs, most frequent first; a close row without
    a code counts under ``None``, a fault without a ``"kind"`` under ``"unknown"``.
    ``connections`` leaves out rows of no connection (``conn = -1``).
    """

    path: str
    rows: int
    duration_ns: int
    connections: tuple[ConnectionSummary, ...]
    streams: tuple[StreamCount, ...]
    types: tuple[StreamCount, ...]  # messages of no stream, by their JSON "type"
    gaps: tuple[Gap, ...]
    close_codes: tuple[tuple[int | None, int], ...]
    faults: tuple[tuple[str, int], ...]
    errors: tuple[tuple[int, str], ...]  # (conn, message) of the first TOP_ERRORS errors
    error_count: int
    scenario: str
    seed: int | None
    format_version: int
    sim_version: str
    created_at: str
    source_url: str | None


def inspect(path: str | os.PathLike[str]) -> Summary:
    """Summarise the recording at ``path``.

    Raises :class:`RecordingError` naming the file if it is missing, not a
    recording, or damaged.
    """
    file = os.fspath(path)
    metadata = read_metadata(path)
    events = scan_recording(path)
    messages = events.filter(pl.col("kind").cast(pl.String).is_in(_MESSAGE_KINDS))
    errors = events.filter(pl.col("kind") == Kind.ERROR.value)
    untyped = messages.filter(pl.col("stream").is_null() & (pl.col("kind") == Kind.TEXT.value))
    totals, conns, closes, streams, types, gaps, codes, faults, error_rows, error_count = _collect(
        file,
        events.select(
            rows=pl.len(),
            first=pl.col("t_ns").min(),
            last=pl.col("t_ns").max(),
        ),
        events.filter(pl.col("conn") != NO_CONNECTION)
        .group_by("conn")
        .agg(rows=pl.len(), first=pl.col("t_ns").min(), last=pl.col("t_ns").max())
        .sort("conn"),
        events.filter(pl.col("kind") == Kind.CLOSE.value)
        .sort("seq")
        .group_by("conn", maintain_order=True)
        .first()
        .select("conn", "close_code", "close_reason"),
        messages.group_by("stream", pl.col("sender").cast(pl.String))
        .agg(messages=pl.len())
        .sort("stream", "sender", nulls_last=True),
        untyped.select(
            pl.col("sender").cast(pl.String),
            stream=pl.col("payload").map_batches(_json_types, return_dtype=pl.String),
        )
        .group_by("stream", "sender")
        .agg(messages=pl.len())
        .sort("stream", "sender", nulls_last=True),
        messages.sort("seq")
        .select(
            "conn",
            pl.col("sender").cast(pl.String),
            "stream",
            gap=pl.col("t_ns").diff().over("conn", "sender", "stream"),
            after=pl.col("t_ns").shift(1).over("conn", "sender", "stream"),
        )
        .drop_nulls("gap")
        .sort("gap", "conn", descending=[True, False])
        .head(TOP_GAPS),
        events.filter(pl.col("kind") == Kind.CLOSE.value)
        .group_by("close_code")
        .agg(n=pl.len())
        .sort("n", "close_code", descending=[True, False]),
        events.filter(pl.col("kind") == Kind.FAULT.value)
        .group_by(
            fault=pl.col("fault").str.json_path_match("$.kind").fill_null("unknown"),
        )
        .agg(n=pl.len())
        .sort("n", "fault", descending=[True, False]),
        errors.sort("seq").head(TOP_ERRORS).select("conn", "payload"),
        errors.select(n=pl.len()),
    )
    rows = int(totals["rows"][0])
    duration = int(totals["last"][0] - totals["first"][0]) if rows else 0
    close_of = {r["conn"]: r for r in closes.iter_rows(named=True)}
    return Summary(
        path=file,
        rows=rows,
        duration_ns=duration,
        connections=tuple(
            ConnectionSummary(
                conn=r["conn"],
                rows=r["rows"],
                first_t_ns=r["first"],
                last_t_ns=r["last"],
                close_code=close_of.get(r["conn"], {}).get("close_code"),
                close_reason=close_of.get(r["conn"], {}).get("close_reason"),
            )
            for r in conns.iter_rows(named=True)
        ),
        streams=tuple(
            StreamCount(
                stream=r["stream"],
                sender=r["sender"],
                messages=r["messages"],
                rate_per_s=r["messages"] / (duration / 1e9) if duration else None,
            )
            for r in streams.iter_rows(named=True)
        ),
        types=tuple(
            StreamCount(
                stream=r["stream"],
                sender=r["sender"],
                messages=r["messages"],
                rate_per_s=r["messages"] / (duration / 1e9) if duration else None,
            )
            for r in types.iter_rows(named=True)
        ),
        gaps=tuple(
            Gap(r["conn"], r["sender"], r["stream"], r["gap"], r["after"])
            for r in gaps.iter_rows(named=True)
        ),
        close_codes=tuple((r["close_code"], r["n"]) for r in codes.iter_rows(named=True)),
        faults=tuple((r["fault"], r["n"]) for r in faults.iter_rows(named=True)),
        errors=tuple(
            (conn, (payload or b"").decode(errors="replace"))
            for conn, payload in error_rows.iter_rows()
        ),
        error_count=int(error_count["n"][0]),
        scenario=metadata["scenario"],
        seed=metadata["seed"],
        format_version=metadata["format_version"],
        sim_version=metadata["sim_version"],
        created_at=metadata["created_at"],
        source_url=metadata["source_url"],
    )


def _json_types(payloads: pl.Series) -> pl.Series:
    """The ``type`` string of each JSON object message (null for anything else)."""

    def type_of(payload: bytes | None) -> str | None:
        try:
            doc = orjson.loads(payload) if payload is not None else None
        except orjson.JSONDecodeError:
            return None
        kind = doc.get("type") if isinstance(doc, dict) else None
        return kind if isinstance(kind, str) else None

    return pl.Series(payloads.name, [type_of(p) for p in payloads], dtype=pl.String)


def summary_lines(summary: Summary) -> list[str]:
    """:func:`inspect`'s findings for people, one line each, no trailing newlines."""
    s = summary
    seed = "none" if s.seed is None else str(s.seed)
    lines = [
        f"{s.path}: scenario {s.scenario!r}, seed {seed}, format {s.format_version}, "
        f"sim {s.sim_version}, created {s.created_at}",
    ]
    if s.source_url is not None:
        lines.append(f"  source: {s.source_url}")
    lines.append(f"  {s.rows} rows, {_seconds(s.duration_ns)}, {len(s.connections)} connection(s)")
    for c in s.connections:
        closed = "" if c.close_code is None else f", closed {c.close_code}"
        if c.close_reason:
            closed += f" {c.close_reason!r}"
        lines.append(
            f"    conn {c.conn}: {c.rows} rows, "
            f"t {_seconds(c.first_t_ns)} .. {_seconds(c.last_t_ns)}{closed}"
        )
    lines.append("  messages:" if s.streams else "  messages: none")
    width = max((len(_stream_name(st.stream)) for st in s.streams), default=0)
    for st in s.streams:
        rate = "-" if st.rate_per_s is None else f"{st.rate_per_s:.3g}/s"
        lines.append(
            f"    {_stream_name(st.stream):<{width}}  {st.sender:<6}  {st.messages:>9}  {rate}"
        )
    if s.types:
        lines.append('  messages of no stream, by JSON "type":')
        width = max(len(t.stream or "(no type)") for t in s.types)
        for t in s.types:
            rate = "-" if t.rate_per_s is None else f"{t.rate_per_s:.3g}/s"
            name = t.stream or "(no type)"
            lines.append(f"    {name:<{width}}  {t.sender:<6}  {t.messages:>9}  {rate}")
    if s.gaps:
        lines.append("  longest gaps:")
        for g in s.gaps:
            lines.append(
                f"    {_seconds(g.gap_ns)}  conn {g.conn} {g.sender} "
                f"{_stream_name(g.stream)}, after t {_seconds(g.after_t_ns)}"
            )
    if s.close_codes:
        codes = ", ".join(f"{'none' if c is None else c} x{n}" for c, n in s.close_codes)
        lines.append(f"  close codes: {codes}")
    if s.faults:
        lines.append("  faults: " + ", ".join(f"{k} x{n}" for k, n in s.faults))
    if s.error_count:
        lines.append(f"  errors: {s.error_count}")
        lines.extend(f"    conn {conn}: {message}" for conn, message in s.errors)
    return lines


def summary_json(summary: Summary) -> dict[str, Any]:
    """:func:`inspect`'s findings as JSON-ready values (times in ns and in seconds)."""
    s = summary
    return {
        "path": s.path,
        "metadata": {
            "scenario": s.scenario,
            "seed": s.seed,
            "format_version": s.format_version,
            "sim_version": s.sim_version,
            "created_at": s.created_at,
            "source_url": s.source_url,
        },
        "rows": s.rows,
        "duration_ns": s.duration_ns,
        "duration_s": s.duration_ns / 1e9,
        "connections": [
            {
                "conn": c.conn,
                "rows": c.rows,
                "first_t_ns": c.first_t_ns,
                "last_t_ns": c.last_t_ns,
                "close_code": c.close_code,
                "close_reason": c.close_reason,
            }
            for c in s.connections
        ],
        "streams": [
            {
                "stream": st.stream,
                "sender": st.sender,
                "messages": st.messages,
                "rate_per_s": st.rate_per_s,
            }
            for st in s.streams
        ],
        "types": [
            {
                "type": t.stream,
                "sender": t.sender,
                "messages": t.messages,
                "rate_per_s": t.rate_per_s,
            }
            for t in s.types
        ],
        "gaps": [
            {
                "conn": g.conn,
                "sender": g.sender,
                "stream": g.stream,
                "gap_s": g.gap_ns / 1e9,
                "after_t_s": g.after_t_ns / 1e9,
            }
            for g in s.gaps
        ],
        "close_codes": [{"code": c, "count": n} for c, n in s.close_codes],
        "faults": [{"kind": k, "count": n} for k, n in s.faults],
        "error_count": s.error_count,
        "errors": [{"conn": conn, "message": m} for conn, m in s.errors],
    }


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True, slots=True)
class RowSummary:
    """One row, short enough for a line: ``payload`` is text (or ``0x`` hex when not
    UTF-8) cut to about :data:`PAYLOAD_CHARS` characters, ``None`` when null."""

    seq: int
    t_ns: int
    sender: str
    kind: str
    stream: str | None
    payload: str | None


@dataclass(frozen=True, slots=True)
class FirstDifference:
    """The first position (``index``, from 0, within the connection) where the two
    sequences differ; ``a`` or ``b`` is ``None`` when that file has no row there."""

    index: int
    a: RowSummary | None
    b: RowSummary | None


@dataclass(frozen=True, slots=True)
class ConnectionDiff:
    """One connection present in both files. ``conn = -1`` holds server-wide rows."""

    conn: int
    rows_a: int
    rows_b: int
    first_difference: FirstDifference | None

    @property
    def identical(self) -> bool:
        return self.first_difference is None


@dataclass(frozen=True, slots=True)
class TimingError:
    """``|t_ns_a - t_ns_b|``, in milliseconds, over the ``rows`` rows that are the same in
    both files at the same position (rows that differ are not the same event: when they
    were recorded says nothing)."""

    rows: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class DiffResult:
    """What :func:`diff` found. ``timing`` is ``None`` when timing was ignored or no
    row is the same in both files; ``untimed`` counts the rows present at the same
    position in both files that differ, left out of the timing (0 when it was ignored)."""

    a: str
    b: str
    connections: tuple[ConnectionDiff, ...]
    only_in_a: tuple[int, ...]
    only_in_b: tuple[int, ...]
    timing: TimingError | None
    untimed: int = 0

    @property
    def equivalent(self) -> bool:
        """Same connections, each with the same (sender, kind, stream, payload) rows in
        the same order. Timing is not considered."""
        return (
            not self.only_in_a and not self.only_in_b and all(c.identical for c in self.connections)
        )


def diff(
    a: str | os.PathLike[str], b: str | os.PathLike[str], *, ignore_timing: bool = False
) -> DiffResult:
    """Compare two recordings connection by connection.

    Rows of a connection are taken in ``seq`` order and compared by position on
    (sender, kind, stream, payload); ``close_code``, ``close_reason`` and ``fault``
    are not compared, nor the payload of rows that are not messages (an ``open``
    row's handshake); ``ping``/``pong`` rows are skipped. The timing error is taken
    over the rows that are the same in both, only: two unrelated sessions matched by
    position would give a figure that measures nothing. Raises
    :class:`RecordingError` naming the file that cannot be read.
    """
    file_a, file_b = os.fspath(a), os.fspath(b)
    lazy_a, lazy_b = _positioned(a), _positioned(b)
    joined = lazy_a.join(lazy_b, on=["conn", "index"], how="full", coalesce=True, suffix="_b")
    present_a, present_b = pl.col("seq").is_not_null(), pl.col("seq_b").is_not_null()
    same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(f"{c}_b")) for c in _COMPARED)
    queries = [
        joined.group_by("conn").agg(rows_a=present_a.sum(), rows_b=present_b.sum()).sort("conn"),
        joined.filter(~(present_a & present_b & same))
        .sort("conn", "index")
        .group_by("conn", maintain_order=True)
        .first(),
    ]
    if not ignore_timing:
        queries.append(
            joined.filter(present_a & present_b)
            .select(same=same, err=(pl.col("t_ns") - pl.col("t_ns_b")).abs())
            .select(
                rows=pl.col("same").sum(),
                untimed=(~pl.col("same")).sum(),
                p50=pl.col("err").filter("same").quantile(0.5, "nearest"),
                p99=pl.col("err").filter("same").quantile(0.99, "nearest"),
                max=pl.col("err").filter("same").max(),
            )
        )
    try:
        counts, firsts, *errors = _collect(f"{file_a} or {file_b}", *queries)
    except RecordingError:
        # Say which file is damaged: read each alone (only on this error path).
        _collect(file_a, lazy_a.select(pl.all().hash().sum()))
        _collect(file_b, lazy_b.select(pl.all().hash().sum()))
        raise
    first_of = {r["conn"]: r for r in firsts.iter_rows(named=True)}
    connections: list[ConnectionDiff] = []
    only_in_a: list[int] = []
    only_in_b: list[int] = []
    for r in counts.iter_rows(named=True):
        conn, rows_a, rows_b = r["conn"], r["rows_a"], r["rows_b"]
        if rows_b == 0:
            only_in_a.append(conn)
        elif rows_a == 0:
            only_in_b.append(conn)
        else:
            first = first_of.get(conn)
            connections.append(
                ConnectionDiff(
                    conn=conn,
                    rows_a=rows_a,
                    rows_b=rows_b,
                    first_difference=None if first is None else _first_difference(first),
                )
            )
    timing, untimed = None, 0
    if errors:
        e = errors[0].row(0, named=True)
        untimed = e["untimed"]
        if e["rows"]:
            timing = TimingError(
                rows=e["rows"],
                p50_ms=e["p50"] / 1e6,
                p99_ms=e["p99"] / 1e6,
                max_ms=e["max"] / 1e6,
            )
    return DiffResult(
        a=file_a,
        b=file_b,
        connections=tuple(connections),
        only_in_a=tuple(only_in_a),
        only_in_b=tuple(only_in_b),
        timing=timing,
        untimed=untimed,
    )


def diff_lines(result: DiffResult) -> list[str]:
    """:func:`diff`'s findings for people, one line each, the verdict first."""
    r = result
    differing = [c for c in r.connections if not c.identical]
    if r.equivalent:
        verdict = f"equivalent: {len(r.connections)} connection(s), same messages in the same order"
    else:
        verdict = f"different: {len(differing)} of {len(r.connections)} common connection(s) differ"
        if r.only_in_a or r.only_in_b:
            verdict += f", {len(r.only_in_a) + len(r.only_in_b)} in only one file"
    lines = [f"{r.a} vs {r.b}: {verdict}"]
    if r.only_in_a:
        lines.append(f"  only in {r.a}: conn {_conns(r.only_in_a)}")
    if r.only_in_b:
        lines.append(f"  only in {r.b}: conn {_conns(r.only_in_b)}")
    for c in differing:
        assert c.first_difference is not None
        d = c.first_difference
        lines.append(
            f"  conn {c.conn}: {c.rows_a} vs {c.rows_b} rows, first difference at index {d.index}"
        )
        lines.append(f"    a: {_describe_row(d.a)}")
        lines.append(f"    b: {_describe_row(d.b)}")
    lines.extend(_timing_lines(r))
    return lines


def _timing_lines(r: DiffResult) -> list[str]:
    """The timing line: over the rows the same in both files, saying how many that
    differ were left out (their times are not comparable); none when timing was ignored
    or there was nothing to time."""
    untimed = f" ({r.untimed} that differ not timed)" if r.untimed else ""
    if r.timing is not None:
        t = r.timing
        rows = f"{t.rows} row{'s' * (t.rows != 1)}"
        return [
            f"  timing error over {rows} the same in both files{untimed}: "
            f"p50 {t.p50_ms:.3f} ms, p99 {t.p99_ms:.3f} ms, max {t.max_ms:.3f} ms"
        ]
    if r.untimed:
        return [f"  timing not comparable: no row is the same in both files{untimed}"]
    return []


# --------------------------------------------------------------------------- helpers


def _positioned(path: str | os.PathLike[str]) -> pl.LazyFrame:
    """The compared columns of ``path``, with each row's position within its connection.

    Ping and pong frames are left out (keepalive timing is the libraries', not the
    session's), and only messages have their payload compared: an ``open`` row's
    handshake details (ports, headers) differ between any two sessions.
    """
    kind = pl.col("kind").cast(pl.String)
    return (
        scan_recording(path)
        .select("conn", "seq", "t_ns", *_COMPARED)
        .with_columns(pl.col("sender").cast(pl.String), kind)
        .filter(~kind.is_in(_CONTROL_KINDS))
        .with_columns(
            payload=pl.when(kind.is_in(_MESSAGE_KINDS)).then(pl.col("payload")),
        )
        .sort("conn", "seq")
        .with_columns(index=pl.int_range(pl.len(), dtype=pl.Int64).over("conn"))
    )


def _collect(file: str, *queries: pl.LazyFrame) -> Sequence[pl.DataFrame]:
    """Run ``queries`` together; damage found in the data becomes a RecordingError."""
    try:
        return pl.collect_all(queries)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise RecordingError(file, f"corrupt recording: {error_reason(e)}") from e


def _first_difference(row: dict[str, Any]) -> FirstDifference:
    """Both sides of a joined row; payloads are cut around where they start to differ,
    so that two long messages differing late do not print as the same text."""
    text_a, text_b = _text(row["payload"]), _text(row["payload_b"])
    x, y = text_a or "", text_b or ""
    common = next(
        (i for i, (c, d) in enumerate(zip(x, y, strict=False)) if c != d), min(len(x), len(y))
    )
    skip = max(0, common - PAYLOAD_CHARS // 4)
    return FirstDifference(
        index=row["index"],
        a=_row_summary(row, "", text_a, skip),
        b=_row_summary(row, "_b", text_b, skip),
    )


def _row_summary(
    row: dict[str, Any], suffix: str, text: str | None, skip: int
) -> RowSummary | None:
    if row[f"seq{suffix}"] is None:
        return None
    payload: bytes | None = row[f"payload{suffix}"]
    if text is not None and payload is not None:
        if skip:
            text = "…" + text[skip:]
        if len(text) > PAYLOAD_CHARS:
            text = f"{text[: PAYLOAD_CHARS - 1]}… ({len(payload)} bytes)"
    return RowSummary(
        seq=row[f"seq{suffix}"],
        t_ns=row[f"t_ns{suffix}"],
        sender=row[f"sender{suffix}"],
        kind=row[f"kind{suffix}"],
        stream=row[f"stream{suffix}"],
        payload=text,
    )


def _text(payload: bytes | None) -> str | None:
    """The payload as text, or ``0x`` hex when it is not UTF-8."""
    if payload is None:
        return None
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return "0x" + payload.hex()


def _describe_row(row: RowSummary | None) -> str:
    if row is None:
        return "(no row)"
    parts = [f"seq {row.seq}", f"t {_seconds(row.t_ns)}", row.sender, row.kind]
    if row.stream is not None:
        parts.append(row.stream)
    if row.payload is not None:
        parts.append(row.payload)
    return " ".join(parts)


def _stream_name(stream: str | None) -> str:
    return "(no stream)" if stream is None else stream


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.3f}s"


def _conns(conns: Sequence[int]) -> str:
    return ", ".join(str(c) for c in conns)
