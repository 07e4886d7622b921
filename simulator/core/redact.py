"""Secrets kept off disk: handshake headers, URLs, and chosen fields inside messages.

Pure: strings and bytes in, strings and bytes out; no clock, no randomness, no files.
The recorder calls these on everything it is about to write, before it is buffered:

- :func:`redact_headers` on handshake headers, :func:`redact_url` on request paths and
  source URLs. These need no configuration: what they hide is fixed (see
  ``docs/redaction.md``) and fails closed, so a header or parameter whose name merely
  looks secret is hidden too.
- :class:`Redactor` on message payloads, with the rules given as ``--redact JSONPATH``
  (:func:`parse_rule`). ``hash`` rules replace a value by a keyed hash, so equal values
  stay equal and `sim replay`, given the same key and rules, can still recognise a
  client message: it redacts the live message the same way and compares the results.

The key is the caller's business and is never stored: the CLI reads ``SIM_REDACT_KEY``
or ``--redact-key-file``, and without one makes a random key for the one recording
(hashes are then consistent within it but can never be matched again).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias
from urllib.parse import unquote_plus

import orjson

from simulator.errors import UsageError

#: What a secret header value or query parameter value is replaced by.
MARKER: Final = "[redacted]"

#: Prefix of every hashed value; the rest is 32 hex digits (128 bits) of the HMAC.
HASH_PREFIX: Final = "hmac-sha256:"

#: The shortest key :class:`Redactor` accepts, in bytes.
MIN_KEY_BYTES: Final = 16

#: What a message becomes when rules may select something in it but it cannot be
#: parsed or written back (nested too deep, invalid JSON that still looks like an
#: object): redaction fails closed, the message is not stored as it was.
UNREDACTABLE: Final = b'{"redacted":"a message that could not be redacted"}'

# --- names that hold secrets -----------------------------------------------------------

# A name is secret when one of its words is one of these: `X-Api-Key`, `access_token`,
# `sessionId`, `X-Amz-Signature`. Words rather than substrings so that `monkey` and
# `design` stay visible; over-hiding a harmless name costs little, missing one leaks.
_SECRET_WORDS: Final = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "credential",
        "credentials",
        "hmac",
        "jwt",
        "key",
        "otp",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "session",
        "sessionid",
        "sid",
        "sig",
        "signature",
        "ticket",
        "token",
    }
)
# Run-together lowercase names the word split cannot see into: `accesstoken`, `setcookie`.
_SECRET_ENDINGS: Final = ("token", "secret", "password", "passwd", "apikey", "sessionid", "cookie")
# Too common a word to hide everywhere (`error_code`), but alone it is an OAuth code.
_SECRET_NAMES: Final = frozenset({"code"})
# RFC 6455 4.1: the key is a random nonce "selected randomly for each connection"; it
# authenticates nothing and the recording is more useful with it.
_PUBLIC_HEADERS: Final = frozenset({"sec-websocket-key"})
# Headers whose value is a URL, which may carry `?token=` like the request path does.
_URL_HEADERS: Final = frozenset({"referer", "location", "content-location"})

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_SEPARATOR = re.compile(r"[^a-z0-9]+")
# base64url('{"') = "eyJ": a JSON Web Token, header.payload.signature.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_LABEL = re.compile(r"[A-Za-z0-9_-]+")
_AUTHORITY = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or header called ``name`` is taken to hold a secret.

    Case and percent-encoding do not matter (``%74oken`` is ``token``).
    """
    name = unquote_plus(name)
    lower = name.lower()
    if lower in _SECRET_NAMES:
        return True
    # Words between separators (`X-Api-KEY`) and, within them, camelCase words
    # (`accessToken`); either may be what the author meant.
    words = {w.lower() for w in _WORD.findall(name)} | set(_SEPARATOR.split(lower))
    if words & _SECRET_WORDS:
        return True
    squashed = "".join(c for c in lower if c.isalnum())
    return squashed.endswith(_SECRET_ENDINGS)


def is_secret_header(name: str) -> bool:
    """Whether the value of header ``name`` is replaced by :data:`MARKER`."""
    return name.lower() not in _PUBLIC_HEADERS and is_secret_name(name)


def redact_headers(
    headers: Iterable[tuple[str, str]], offered: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """``headers`` with every secret value replaced by :data:`MARKER`.

    Names, order and repeats are kept, so the recording still shows what was sent. Secret
    headers are those of :func:`is_secret_header` (``Authorization``, ``Cookie``,
    ``Set-Cookie``, ``X-Api-Key``, ...); URL-valued headers (``Referer``, ``Location``)
    go through :func:`redact_url`; ``Sec-WebSocket-Protocol`` loses the items that look
    like tokens (browsers cannot set headers, so tokens are smuggled in there), read as
    one list across all its lines (an offer may span lines: a label on one marks the
    token on the next). For a response's headers, pass the request's ``offered``
    subprotocols (:func:`offered_subprotocols`): the one a server chose is a token if
    it was one in the offer.
    """
    headers = list(headers)
    secrets = secret_subprotocols(offered_subprotocols(headers) if offered is None else offered)
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if is_secret_header(name):
            value = MARKER
        elif lower in _URL_HEADERS:
            value = redact_url(value)
        elif lower == "sec-websocket-protocol":
            value = _redact_protocols(value, secrets)
        out.append((name, value))
    return out


def offered_subprotocols(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The subprotocols a request's ``headers`` offer, in order, across all their
    ``Sec-WebSocket-Protocol`` lines."""
    return [
        item.strip()
        for name, value in headers
        if name.lower() == "sec-websocket-protocol"
        for item in value.split(",")
        if item.strip()
    ]


def secret_subprotocols(offered: Iterable[str]) -> frozenset[str]:
    """The items of ``offered`` (in offer order) that :func:`redact_subprotocols` hides."""
    items = list(offered)
    hidden = redact_subprotocols(items)
    return frozenset(i for i, h in zip(items, hidden, strict=True) if h == MARKER != i)


def redact_subprotocol(chosen: str | None, offered: Iterable[str]) -> str | None:
    """The subprotocol a server chose, as a recording may hold it: :data:`MARKER` if it
    was a token in the ``offered`` list (``access_token, <token>``: a server that echoes
    the token picks it), or looks like one on its own."""
    if chosen is None:
        return None
    return MARKER if _is_secret_protocol(chosen, secret_subprotocols(offered)) else chosen


def _is_secret_protocol(item: str, secrets: frozenset[str]) -> bool:
    return item in secrets or redact_subprotocols([item]) == [MARKER]


def _redact_protocols(value: str, secrets: frozenset[str]) -> str:
    raw = value.split(",")
    return ",".join(
        r.replace(r.strip(), MARKER) if r.strip() and _is_secret_protocol(r.strip(), secrets) else r
        for r in raw
    )


def redact_subprotocols(items: Iterable[str]) -> list[str]:
    """Subprotocol names (as offered in ``Sec-WebSocket-Protocol``), with :data:`MARKER`
    for each that is a JWT, a dotted name with a secret word in it
    (``base64url.bearer.authorization.k8s.io.<token>``), or follows a bare secret label
    (``access_token``, ``<token>``). Others, labels included, are kept."""
    out: list[str] = []
    after_label = False
    for item in items:
        secret = bool(after_label or _JWT.fullmatch(item) or ("." in item and is_secret_name(item)))
        after_label = bool(not secret and _LABEL.fullmatch(item) and is_secret_name(item))
        out.append(MARKER if secret and item else item)
    return out


_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_PAIR_IN_TEXT: Final = re.compile(r"([A-Za-z0-9_.-]+)=([^&\s'\"<>;,]+)")


def redact_text(text: str) -> str:
    """Free text (an error message, a close reason) with every URL in it redacted as by
    :func:`redact_url`, and every ``name=value`` whose name is secret hidden: library
    error messages quote URLs (a redirect's ``Location``, say) as they are."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)

    def pair(m: re.Match[str]) -> str:
        return f"{m.group(1)}={MARKER}" if is_secret_name(m.group(1)) else m.group()

    return _PAIR_IN_TEXT.sub(pair, text)


def redact_url(url: str) -> str:
    """``url`` (absolute, or a path such as ``/feed?x=1``) without its secrets.

    Userinfo (``user:pass@``) is removed; the values of secret query parameters (see
    :func:`is_secret_name`), and of fragment parameters (``#access_token=...``), become
    :data:`MARKER`. Everything else is kept character for character: order, repeats,
    percent-encoding. Secrets in the path itself (``/t/abc123``) cannot be recognised.
    """
    url = _drop_userinfo(url)
    hash_at = url.find("#")
    before, fragment = (url, None) if hash_at < 0 else (url[:hash_at], url[hash_at + 1 :])
    query_at = before.find("?")
    if query_at >= 0:
        before = before[: query_at + 1] + _redact_query(before[query_at + 1 :])
    if fragment is None:
        return before
    return before + "#" + (_redact_query(fragment) if "=" in fragment else fragment)


def _drop_userinfo(url: str) -> str:
    # RFC 3986 3.2: only `scheme://` or `//` opens an authority; userinfo ends at its last
    # "@" (a password may contain one).
    m = _AUTHORITY.match(url)
    if m is None:
        return url
    start = m.end()
    end = min((i for i in (url.find(c, start) for c in "/?#") if i >= 0), default=len(url))
    at = url.rfind("@", start, end)
    return url if at < 0 else url[:start] + url[at + 1 :]


def _redact_query(query: str) -> str:
    """Split on ``&`` and, because some servers do, on ``;``; a secret value runs to the
    next ``&`` so that ``token=ab;cd`` hides ``cd`` as well."""
    parts = query.split("&")
    for i, part in enumerate(parts):
        offset = 0
        for sub in part.split(";"):
            name, eq, _ = sub.partition("=")
            if eq and is_secret_name(name):
                parts[i] = part[: offset + len(name) + 1] + MARKER
                break
            offset += len(sub) + 1
    return "&".join(parts)


# --- rules for message fields ----------------------------------------------------------


class Action(enum.StrEnum):
    """What a rule does to the values it selects."""

    HASH = "hash"  # the value becomes keyed_hash(value): equal values stay equal
    REMOVE = "remove"  # an object member is deleted; an array element becomes null


class Wildcard(enum.Enum):
    """``*``: every member of an object, every element of an array."""

    ANY = "*"


Selector: TypeAlias = str | int | Wildcard  # member name, array index, or every child


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a path: ``select`` among the children of each node so far, or, when
    ``descend`` (``..``), among the children of each node so far and of all its
    descendants. A negative index counts from the end of the array."""

    select: Selector
    descend: bool = False

    def __str__(self) -> str:
        s = self.select
        if isinstance(s, Wildcard):
            text = ".*" if self.descend else "[*]"
        elif isinstance(s, int):
            text = f"[{s}]"
        elif _PLAIN_NAME.fullmatch(s):
            text = f".{s}"
        else:
            text = "['" + s.replace("\\", "\\\\").replace("'", "\\'") + "']"
        if self.descend:
            return "." + text if text.startswith(".") else ".." + text
        return text


@dataclass(frozen=True, slots=True)
class Rule:
    """A path into a message and what to do there. ``str(rule)`` is its spec in
    canonical form, which :func:`parse_rule` turns back into an equal rule."""

    path: tuple[Step, ...]
    action: Action = Action.HASH

    def __str__(self) -> str:
        return "$" + "".join(str(s) for s in self.path) + "=" + self.action.value


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_DOT_NAME = re.compile(r"[^\s.\[\]='\"*]+")
_INDEX = re.compile(r"-?\d+")
ALLOWED: Final = (
    "allowed: JSONPATH, JSONPATH=hash or JSONPATH=remove, where JSONPATH is $ followed by "
    ".name, ['any name'], [index], [*], .* or ..name (any depth), e.g. $.user.token, "
    "$..password=remove, $.items[*]['api key']"
)


def parse_rule(spec: str) -> Rule:
    """The rule written as ``spec`` (the argument of ``--redact``); the action is
    ``hash`` unless the spec ends in ``=remove``. Raises :class:`UsageError` naming the
    spec, the position of the mistake, and what is allowed."""
    return _RuleParser(spec).parse()


class _RuleParser:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.i = 0

    def fail(self, what: str) -> UsageError:
        return UsageError(f"redact rule {self.spec!r}: {what} at character {self.i + 1}; {ALLOWED}")

    def parse(self) -> Rule:
        s = self.spec
        if not s.startswith("$"):
            raise self.fail("must start with $")
        self.i = 1
        steps: list[Step] = []
        while self.i < len(s) and s[self.i] != "=":
            steps.append(self.step())
        if not steps:
            raise self.fail("a path must select something inside the message")
        action = Action.HASH
        if self.i < len(s):
            word = s[self.i + 1 :]
            try:
                action = Action(word.lower())
            except ValueError:
                self.i += 1
                raise self.fail(f"unknown action {word!r}") from None
        return Rule(tuple(steps), action)

    def step(self) -> Step:
        s, i = self.spec, self.i
        if s.startswith("..", i):
            self.i += 2
            if s.startswith("[", self.i):
                return Step(self.bracket(), descend=True)
            return Step(self.dotted(), descend=True)
        if s[i] == ".":
            self.i += 1
            return Step(self.dotted())
        if s[i] == "[":
            return Step(self.bracket())
        raise self.fail(f"expected '.' or '[', found {s[i]!r}")

    def dotted(self) -> Selector:
        s = self.spec
        if s.startswith("*", self.i):
            self.i += 1
            return Wildcard.ANY
        m = _DOT_NAME.match(s, self.i)
        if m is None:
            raise self.fail("expected a name or * (quote other names: ['a b'])")
        self.i = m.end()
        return m.group()

    def bracket(self) -> Selector:
        s = self.spec
        self.i += 1  # past "["
        select: Selector
        if s.startswith("*", self.i):
            self.i += 1
            select = Wildcard.ANY
        elif self.i < len(s) and s[self.i] in "'\"":
            select = self.quoted()
        elif m := _INDEX.match(s, self.i):
            self.i = m.end()
            select = int(m.group())
        else:
            raise self.fail("expected *, an index or a quoted name after '['")
        if not s.startswith("]", self.i):
            raise self.fail("expected ']'")
        self.i += 1
        return select

    def quoted(self) -> str:
        s = self.spec
        quote = s[self.i]
        self.i += 1
        chars: list[str] = []
        while self.i < len(s) and s[self.i] != quote:
            if s[self.i] == "\\":
                self.i += 1
                if self.i == len(s):
                    break
            chars.append(s[self.i])
            self.i += 1
        if self.i >= len(s):
            raise self.fail(f"unclosed {quote}")
        self.i += 1
        return "".join(chars)


# --- hashing and applying rules ---------------------------------------------------------


def keyed_hash(value: object, key: bytes) -> str:
    """``hmac-sha256:`` and 32 hex digits of HMAC-SHA256(``key``, canonical JSON of
    ``value``). Values equal as JSON (``{"a":1,"b":2.0}`` and ``{"b":2,"a":1}``) hash
    equally under one key; under another key the hash says nothing about the first."""
    canonical = orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS)
    return HASH_PREFIX + hmac.new(key, canonical, hashlib.sha256).hexdigest()[:32]


def _canonical(value: object) -> object:
    # JSON has one number type: 2.0 is 2 (as simulator.core.jsonvalues.json_equal says).
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


Location: TypeAlias = tuple[str | int, ...]


def _children(node: object, select: Selector) -> Iterator[tuple[str | int, object]]:
    if isinstance(node, dict):
        if isinstance(select, Wildcard):
            yield from node.items()
        elif isinstance(select, str) and select in node:
            yield select, node[select]
    elif isinstance(node, list):
        if isinstance(select, Wildcard):
            yield from enumerate(node)
        elif isinstance(select, int) and -len(node) <= select < len(node):
            i = select % len(node)
            yield i, node[i]


def _self_and_descendants(node: object, at: Location) -> Iterator[tuple[Location, object]]:
    # Depth first, in document order, with a list for a stack: messages may nest deeper
    # than Python's recursion limit.
    stack = [(at, node)]
    while stack:
        here, current = stack.pop()
        yield here, current
        children = list(_children(current, Wildcard.ANY))
        stack.extend(((*here, k), child) for k, child in reversed(children))


def select(doc: object, path: Sequence[Step]) -> list[Location]:
    """Where ``path`` points in ``doc``, outermost first: a location inside another
    selected one is left out (acting on the outer one acts on it too)."""
    current: list[tuple[Location, object]] = [((), doc)]
    for step in path:
        bases = (
            [d for at, node in current for d in _self_and_descendants(node, at)]
            if step.descend
            else current
        )
        found = {(*at, k): child for at, node in bases for k, child in _children(node, step.select)}
        current = list(found.items())
    chosen = sorted({at for at, _ in current}, key=len)
    outer: list[Location] = []
    taken: set[Location] = set()
    for at in chosen:
        if not any(at[:n] in taken for n in range(len(at))):
            outer.append(at)
            taken.add(at)
    return outer


def _apply(doc: object, at: Location, action: Action, key: bytes) -> None:
    parent = doc
    for k in at[:-1]:
        parent = parent[k]  # type: ignore[index]
    last = at[-1]
    if isinstance(parent, dict):
        if action is Action.REMOVE:
            del parent[last]
        else:
            parent[last] = keyed_hash(parent[last], key)
    else:
        assert isinstance(parent, list) and isinstance(last, int)
        # null, not deleted: the other elements keep their indexes (which other rules
        # and replay matching rely on), and removing twice removes nothing more.
        parent[last] = None if action is Action.REMOVE else keyed_hash(parent[last], key)


class Redactor:
    """Applies rules to message payloads with one key. Build one per recording (or
    replay) and call :meth:`redact` on every payload before it is stored or compared.

    ``key`` must be at least :data:`MIN_KEY_BYTES` long and should be random: it is
    what stops anyone from guessing a hashed value by hashing candidates. Do not store
    it; store :meth:`describe` instead.
    """

    def __init__(self, rules: Sequence[Rule], key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise UsageError(
                f"redaction key is {len(key)} bytes: must be at least {MIN_KEY_BYTES} "
                "(e.g. 32 random bytes as hex: python -c 'import secrets; "
                "print(secrets.token_hex(32))')"
            )
        self.rules = tuple(rules)
        self._key = key
        # Per rule, the member names it needs, as they would appear in the bytes.
        self._needles = tuple(
            tuple(
                b'"' + s.select.encode("utf-8", "surrogatepass") + b'"'
                for s in rule.path
                if isinstance(s.select, str)
            )
            for rule in self.rules
        )

    @classmethod
    def from_specs(cls, specs: Iterable[str], key: bytes) -> Redactor:
        """A redactor for the ``--redact`` arguments ``specs`` (see :func:`parse_rule`)."""
        return cls([parse_rule(s) for s in specs], key)

    @property
    def key_id(self) -> str:
        """16 hex digits that tell keys apart without revealing them (an HMAC of a fixed
        text), so a replay can say "wrong key" rather than silently never matching."""
        return hmac.new(self._key, b"sim redaction key id", hashlib.sha256).hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        """The rules and the key's id, JSON-serialisable, for the recording's metadata.
        Holds no key: pass it to :meth:`from_description` with the key to rebuild."""
        return {
            "scheme": "hmac-sha256/128",
            "rules": [str(r) for r in self.rules],
            "key_id": self.key_id,
        }

    @classmethod
    def from_description(cls, description: Mapping[str, object], key: bytes) -> Redactor:
        """The redactor that :meth:`describe` described, with ``key``.

        Raises :class:`UsageError` if the description is malformed or ``key`` is not the
        key it was made with (its hashes would never match).
        """
        rules = description.get("rules")
        if description.get("scheme") != "hmac-sha256/128" or not (
            isinstance(rules, list) and all(isinstance(r, str) for r in rules)
        ):
            raise UsageError(f"not a redaction description: {description!r}")
        redactor = cls.from_specs(rules, key)
        if description.get("key_id") != redactor.key_id:
            raise UsageError(
                "the redaction key is not the one the recording was made with "
                f"(key id {redactor.key_id}, recorded {description.get('key_id')!r}): "
                "hashed fields would never match"
            )
        return redactor

    def redact(self, payload: bytes) -> bytes:
        """``payload`` with the rules applied, ready to be stored or compared.

        Not a JSON object or array: returned unchanged. JSON that no rule selects:
        returned unchanged, byte for byte. Otherwise the redacted value, as compact JSON.
        A message that looks like an object or array but that neither orjson nor the
        standard library (``NaN``, a BOM, integers past 64 bits) can parse, or that
        cannot be written back, becomes :data:`UNREDACTABLE`: it fails closed.
        """
        if not self._may_match(payload):
            return payload
        strict = True
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if not _looks_structured(payload):
                return payload
            strict = False
            try:
                doc = json.loads(payload.decode("utf-8-sig"))
            except (ValueError, RecursionError):
                return UNREDACTABLE
        changed = False
        try:
            for rule in self.rules:
                for at in select(doc, rule.path):
                    _apply(doc, at, rule.action, self._key)
                    changed = True
            duplicates = not changed and _has_duplicate_keys(payload, doc)
        except (RecursionError, TypeError, ValueError):
            # A value nested too deep to hash (orjson writes 254 levels, Python recurses
            # about 1,000): fail closed rather than store or raise.
            return UNREDACTABLE
        if changed or duplicates:
            # A shadowed duplicate ({"a":{"token":"s"},"a":1}) is invisible to the rules
            # but still in the bytes; writing the parsed value drops it.
            if strict:
                try:
                    return orjson.dumps(doc)
                except TypeError:
                    pass  # orjson writes at most 254 levels; the standard library more
            try:
                return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
            except (ValueError, RecursionError):
                return UNREDACTABLE
        return payload

    def _may_match(self, payload: bytes) -> bool:
        # Micro-optimization for the common case, a message none of the names occur in:
        # with no backslash, a member name can only be written as itself, so a rule whose
        # names are not all in the bytes cannot select anything, not even in a shadowed
        # duplicate, and the payload need not be parsed.
        if b"\\" in payload:
            return True
        return any(all(n in payload for n in needles) for needles in self._needles)


def _looks_structured(payload: bytes) -> bool:
    """Whether ``payload`` starts like a JSON object or array (after a BOM or spaces)."""
    return payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")


def _member_count(doc: object) -> int:
    # A list for a stack: messages may nest deeper than Python's recursion limit.
    count, stack = 0, [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += len(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def _has_duplicate_keys(payload: bytes, doc: object) -> bool:
    # Every member written has one ':' after its key, so with no more colons than parsed
    # members there can be no duplicates; only when both counts below say there may be
    # is the payload parsed again, slowly, to look.
    members = _member_count(doc)
    if payload.count(b":") <= members:
        return False
    # A member's colon follows its key's closing quote; in a string, `"` then `:` needs
    # an escaped quote, so this count too is never below the members written.
    if len(_KEY_END.findall(payload)) <= members:
        return False

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        if len({k for k, _ in items}) != len(items):
            raise _Duplicate
        return dict(items)

    try:
        json.loads(payload, object_pairs_hook=pairs)
    except (_Duplicate, RecursionError, ValueError):
        return True  # fail closed: anything the stdlib cannot vouch for is rewritten
    return False


_KEY_END = re.compile(rb'"[ \t\r\n]*:')


class _Duplicate(Exception):
    pass
