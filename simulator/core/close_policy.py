"""Why a connection ended, and whether reconnecting can help.

The reconnect loop asks :class:`ClosePolicy` after every failure: :meth:`~ClosePolicy.on_close`
when an open connection closed (with the peer's close code, or none), and
:meth:`~ClosePolicy.on_refusal` when the opening handshake failed (with the HTTP status
of the refusal, or none). The answer is a :class:`CloseClass`: retry or stop, a short
reason for logs and events, and the server's requested delay when it gave one.

Defaults, from what retrying can and cannot fix:

- **Stop** on the close codes that say we broke the protocol or a policy (1002, 1003,
  1007, 1008, 1009, 1010: the same frames would break it again), on application codes
  4000-4999 (auth and the like), and on HTTP 3xx (a redirect the client does not
  follow) and 4xx other than 408 and 429 (401 and 403: the credentials will not get
  better by themselves).
- **Retry** on everything else: 1000, 1001, 1005, 1006 (dropped with no close frame),
  1011, 1012, 1013, 1014, any unknown code, no HTTP response at all (unreachable,
  timed out, TLS), 408, 429 and 5xx, honouring ``Retry-After`` (RFC 9110 §10.2.3).
- A close with **1013** ("try again later") whose reason holds a delay
  (``"retry-after=5"``, as ``sim`` sends for ``respond = "close"``; ``"retry after
  5"``, ``"try again in 500ms"``) gives that delay as
  :attr:`CloseClass.retry_after_s`: the in-band equivalent of ``Retry-After``, which a
  browser never gets to read (it sees only 1006 for a refused handshake, ws#2277).

``retry_codes`` and ``retry_statuses`` override every stop rule.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus

from simulator.errors import UsageError


class Verdict(enum.Enum):
    """What the reconnect loop must do next."""

    RETRY = "retry"
    """Wait (:class:`~simulator.core.backoff.Backoff`) and connect again."""
    STOP = "stop"
    """Give up and report :attr:`CloseClass.reason`: retrying would repeat the failure."""


@dataclass(frozen=True, slots=True)
class CloseClass:
    """One classified failure."""

    verdict: Verdict
    reason: str
    """Short, for logs and events: ``"server going away (1001)"``,
    ``"auth rejected (4001)"``, ``"HTTP 429 too many requests"``."""
    retry_after_s: float | None = None
    """The delay the server asked for, in seconds (``>= 0``), or ``None``: pass it to
    :meth:`~simulator.core.backoff.Backoff.next_delay_s`."""


#: Close codes whose name is known (RFC 6455 §7.4.1 and the IANA registry).
CLOSE_CODE_NAMES: dict[int, str] = {
    1000: "normal closure",
    1001: "server going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no close code",
    1006: "connection dropped without a close frame",
    1007: "invalid payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension missing",
    1011: "internal server error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failed",
    3000: "unauthorized",
    3003: "forbidden",
    3008: "timeout",
}

# 3000 and 3003 are the IANA-registered "unauthorized" and "forbidden": the close-code
# counterparts of HTTP 401 and 403, which stop too.
DEFAULT_STOP_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010, 3000, 3003})
DEFAULT_STOP_CODE_RANGES: tuple[tuple[int, int], ...] = ((4000, 4999),)
DEFAULT_STOP_STATUSES = frozenset(range(300, 500)) - {408, 429}

_REASON_LIMIT = 80  # a close reason is at most 123 bytes; keep log lines short


@dataclass(frozen=True, slots=True)
class ClosePolicy:
    """Classifies how a connection ended into retry or stop.

    Build one per client (the defaults suit most) and ask it after every failure. Sets
    given as any iterable are stored as frozensets. An override in ``retry_codes`` or
    ``retry_statuses`` wins over every stop rule: ``ClosePolicy(retry_codes=
    frozenset({4000}))`` retries 4000 and still stops on 4001.
    """

    stop_codes: frozenset[int] = DEFAULT_STOP_CODES
    """Close codes that stop: the peer says we broke the protocol or a policy."""
    stop_code_ranges: tuple[tuple[int, int], ...] = DEFAULT_STOP_CODE_RANGES
    """Inclusive ranges of close codes that stop: application codes by default."""
    retry_codes: frozenset[int] = frozenset()
    """Close codes that retry whatever the stop rules say."""
    stop_statuses: frozenset[int] = DEFAULT_STOP_STATUSES
    """HTTP statuses of a refused handshake that stop: 3xx, and 4xx but 408 and 429."""
    retry_statuses: frozenset[int] = frozenset()
    """HTTP statuses that retry whatever ``stop_statuses`` says."""

    def __post_init__(self) -> None:
        for name in ("stop_codes", "retry_codes", "stop_statuses", "retry_statuses"):
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise UsageError(f"ClosePolicy {name}={value!r}: must be a set of integers")
            object.__setattr__(self, name, frozenset(value))
        ranges = tuple(self.stop_code_ranges)
        for i, r in enumerate(ranges):
            # A flat (4000, 4999) instead of ((4000, 4999),) lands here as r=4000.
            if (
                not isinstance(r, tuple | list)
                or len(r) != 2
                or not all(isinstance(v, int) for v in r)
                or r[0] > r[1]
            ):
                raise UsageError(
                    f"ClosePolicy stop_code_ranges[{i}]={r!r}: must be (low, high) with low <= high"
                )
        object.__setattr__(self, "stop_code_ranges", tuple((lo, hi) for lo, hi in ranges))

    def on_close(self, code: int | None, reason: str = "") -> CloseClass:
        """Classify an open connection that ended.

        ``code`` is the close code the peer sent, or ``None`` (or 1006) when the
        connection dropped with no close frame; ``reason`` is the peer's close reason.
        On a 1013 whose reason holds a delay, :attr:`CloseClass.retry_after_s` is set.
        """
        if code is None:
            code = 1006
        text = _describe_close(code, reason)
        if code in self.retry_codes or not self._stops_code(code):
            hint = retry_hint_s(reason) if code == 1013 else None
            return CloseClass(Verdict.RETRY, text, hint)
        return CloseClass(Verdict.STOP, text)

    def on_refusal(
        self, status: int | None, retry_after: str | None, *, now: float | None = None
    ) -> CloseClass:
        """Classify an opening handshake that failed.

        ``status`` is the HTTP status of the refusal, or ``None`` when no response came
        (unreachable, timed out, TLS failed); ``retry_after`` is the response's
        ``Retry-After`` header, or ``None``. Always pass ``now`` (Unix seconds, from the
        caller's clock): a ``Retry-After`` given as an HTTP-date is read only with it.
        """
        if status is None:
            return CloseClass(Verdict.RETRY, "no HTTP response (unreachable, timed out or TLS)")
        text = _describe_status(status)
        if status in self.stop_statuses and status not in self.retry_statuses:
            return CloseClass(Verdict.STOP, text)
        return CloseClass(Verdict.RETRY, text, parse_retry_after(retry_after, now=now))

    def _stops_code(self, code: int) -> bool:
        return code in self.stop_codes or any(lo <= code <= hi for lo, hi in self.stop_code_ranges)


def _describe_close(code: int, reason: str) -> str:
    said = " ".join(reason.split())  # one line in a log, whatever the peer sent
    if len(said) > _REASON_LIMIT:
        said = said[: _REASON_LIMIT - 1] + "…"
    name = CLOSE_CODE_NAMES.get(code)
    if name is None:
        # An application code's meaning is in its reason, when the peer gave one.
        if said:
            return f"{said} ({code})"
        name = "application close" if 4000 <= code <= 4999 else "close"
    if said and said.casefold() != name.casefold():  # "service restart (1012)", once
        return f"{name} ({code}): {said}"
    return f"{name} ({code})"


def _describe_status(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase.lower()}"
    except ValueError:
        return f"HTTP {status}"


# RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds, delay-seconds = 1*DIGIT.
# A fraction is accepted too (some servers send one); a sign is not.
_SECONDS = re.compile(r"\d+(?:\.\d+)?", re.ASCII)

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = r"(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
# RFC 9110 §5.6.7: a recipient MUST accept all three forms of HTTP-date.
_IMF_FIXDATE = re.compile(
    rf"{_DAY}, (?P<day>\d\d) {_MONTH} (?P<year>\d{{4}}) {_TIME} gmt", re.IGNORECASE | re.ASCII
)
_RFC850_DATE = re.compile(
    rf"{_LONG_DAY}, (?P<day>\d\d)-{_MONTH}-(?P<year>\d\d) {_TIME} gmt", re.IGNORECASE | re.ASCII
)
_ASCTIME_DATE = re.compile(
    rf"{_DAY} {_MONTH} (?P<day>[ \d]\d) {_TIME} (?P<year>\d{{4}})", re.IGNORECASE | re.ASCII
)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or ``None`` when there is
    none or it cannot be read (garbage, a negative number, an impossible date).

    ``value`` is delay-seconds (``"120"``) or an HTTP-date (``"Fri, 04 Dec 2026
    19:00:00 GMT"``, and the two obsolete forms RFC 9110 §5.6.7 says to accept). A date
    is read against ``now`` (Unix seconds, from the caller's clock) and gives ``None``
    without it; a date in the past gives 0.0.
    """
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    if now is None or not math.isfinite(now):
        return None
    when = _http_date(text, now)
    return None if when is None else max(0.0, when - now)


def _http_date(text: str, now: float) -> float | None:
    """Unix seconds of an HTTP-date, or ``None``."""
    match = (
        _IMF_FIXDATE.fullmatch(text)
        or _RFC850_DATE.fullmatch(text)
        or _ASCTIME_DATE.fullmatch(text)
    )
    if match is None:
        return None
    year = int(match["year"])
    if len(match["year"]) == 2:
        # RFC 9110 §5.6.7: a two-digit year that "appears to be more than 50 years in
        # the future" is "the most recent year in the past that had the same last two
        # digits".
        try:
            this_year = datetime.fromtimestamp(now, UTC).year
        except (OverflowError, OSError, ValueError):  # a `now` no calendar holds
            return None
        year += this_year - this_year % 100
        if year > this_year + 50:
            year -= 100
    second = int(match["second"])
    leap = second == 60  # §5.6.7 allows a leap second; datetime does not
    try:
        when = datetime(
            year,
            _MONTHS[match["month"].lower()],
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            59 if leap else second,
            tzinfo=UTC,
        )
    except ValueError:  # 31 Feb, hour 25
        return None
    return when.timestamp() + (1 if leap else 0)


# The first number in a 1013 reason, with an optional unit: "retry after 5",
# "try again in 2.5 s", "retry in 500ms".
_HINT = re.compile(
    r"(?<![\d.])(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?)?\b",
    re.IGNORECASE | re.ASCII,
)


def retry_hint_s(reason: str) -> float | None:
    """The delay a close reason asks for, in seconds, or ``None`` when it holds no
    number. A bare number is seconds; ``ms``, ``s`` and ``min`` (and their long forms)
    are read. Used for 1013 ("try again later"), whose reason is the only place a
    server can say when."""
    match = _HINT.search(reason)
    if match is None:
        return None
    unit = (match[2] or "s").lower()
    scale = 0.001 if unit.startswith(("ms", "milli")) else 60.0 if unit.startswith("m") else 1.0
    seconds = float(match[1]) * scale
    return seconds if math.isfinite(seconds) else None
