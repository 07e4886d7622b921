"""Properties of redaction: secrets never come out, hashes are keyed and stable, and
payloads no rule touches come back byte for byte."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.redact import (
    HASH_PREFIX,
    MARKER,
    UNREDACTABLE,
    Action,
    Redactor,
    Rule,
    Step,
    Wildcard,
    is_secret_header,
    is_secret_name,
    keyed_hash,
    offered_subprotocols,
    parse_rule,
    redact_headers,
    redact_subprotocol,
    redact_subprotocols,
    redact_url,
)
from simulator.core.replay_plan import ExpectClient, Frame, same_message
from simulator.errors import UsageError

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
FAST = settings(max_examples=200, deadline=None)

# Secrets are uppercase and long; everything around them is lowercase, and hashes are
# lowercase hex, so a secret found in the output can only be the secret itself.
SECRETS = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=12, max_size=24)
LOWER = "abcdefghijklmnopqrstuvwxyz"
SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(LOWER, max_size=8)
# Keys drawn from "abcde" can never spell a key a rule below looks for.
FILLER = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abcde", max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def randomly_cased(draw: st.DrawFn, name: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(name, flips, strict=True))


# --- headers ----------------------------------------------------------------------------

SECRET_HEADERS = [
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "Set-Cookie",
    "X-Api-Key",
    "X-Auth-Token",
    "X-Amz-Security-Token",
    "X-CSRF-Token",
    "Private-Token",
    "X-Session-Id",
    "X-Client-Secret",
    "X-Password",
    "Ocp-Apim-Subscription-Key",
    "apikey",
]
PUBLIC_HEADERS = [
    "Host",
    "Origin",
    "User-Agent",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Accept",
    "Accept-Language",
    "X-Request-Id",
]


@st.composite
def secret_header(draw: st.DrawFn) -> tuple[str, str]:
    return randomly_cased(draw, draw(st.sampled_from(SECRET_HEADERS))), draw(SECRETS)


@FAST
@given(
    st.lists(
        secret_header() | st.tuples(st.sampled_from(PUBLIC_HEADERS), st.text(LOWER)),
        max_size=8,
    )
)
def test_secret_header_values_are_never_written(headers: list[tuple[str, str]]) -> None:
    out = redact_headers(headers)
    assert [n for n, _ in out] == [n for n, _ in headers]
    for (name, value), (_, got) in zip(headers, out, strict=True):
        assert got == (MARKER if name.lower() in {h.lower() for h in SECRET_HEADERS} else value)


@pytest.mark.parametrize("name", PUBLIC_HEADERS)
def test_ordinary_headers_are_not_secret(name: str) -> None:
    assert not is_secret_header(name)


def test_url_headers_lose_their_secret_parameters() -> None:
    out = redact_headers([("Referer", "https://a.example/p?sig=ABC&x=1")])
    assert out == [("Referer", f"https://a.example/p?sig={MARKER}&x=1")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("graphql-ws", "graphql-ws"),
        ("chat, superchat", "chat, superchat"),
        ("graphql-ws, eyJhbGc.eyJzdWIi.c2ln", f"graphql-ws, {MARKER}"),
        ("access_token, OPAQUEVALUE", f"access_token, {MARKER}"),
        (
            "base64url.bearer.authorization.k8s.io.ABC, base64.channel.k8s.io",
            f"{MARKER}, base64.channel.k8s.io",
        ),
    ],
)
def test_tokens_smuggled_in_the_subprotocol_header_are_hidden(value: str, expected: str) -> None:
    assert redact_headers([("Sec-WebSocket-Protocol", value)]) == [
        ("Sec-WebSocket-Protocol", expected)
    ]
    assert redact_subprotocols(value.split(", ")) == expected.split(", ")


def test_an_offer_spread_over_header_lines_is_read_as_one_list() -> None:
    """RFC 6455 lets ``Sec-WebSocket-Protocol`` repeat: a label on one line marks the
    token on the next (each line was read alone, and the token kept)."""
    lines = [("Sec-WebSocket-Protocol", "access_token"), ("Sec-WebSocket-Protocol", "OPAQUE")]
    assert redact_headers(lines) == [lines[0], ("Sec-WebSocket-Protocol", MARKER)]
    assert offered_subprotocols(lines) == ["access_token", "OPAQUE"]


def test_a_token_the_server_chose_is_hidden_in_the_answer_too() -> None:
    """An upstream that echoes the token picks it: alone it does not look like one, so
    the offer says what it is."""
    offered = ["access_token", "OPAQUE"]
    assert redact_subprotocol("OPAQUE", offered) == MARKER
    assert redact_subprotocol("access_token", offered) == "access_token"
    assert redact_subprotocol("graphql-ws", ["graphql-ws"]) == "graphql-ws"
    assert redact_subprotocol(None, offered) is None
    answer = [("Sec-WebSocket-Protocol", "OPAQUE"), ("Server", "x")]
    assert redact_headers(answer, offered) == [("Sec-WebSocket-Protocol", MARKER), ("Server", "x")]


# --- URLs -------------------------------------------------------------------------------

SECRET_PARAMS = [
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "auth",
    "authorization",
    "signature",
    "sig",
    "jwt",
    "session",
    "sessionid",
    "code",
    "accessToken",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "my_key",
    "%74oken",
    "TOKEN",
]
PUBLIC_PARAMS = ["a", "page", "symbol", "error_code", "monkey", "design", "lang", "v"]
URL_SAFE = LOWER + "0123456789-._~%+"


@st.composite
def query_param(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(name, value, whether the value is secret), secret names in any case."""
    if draw(st.booleans()):
        return randomly_cased(draw, draw(st.sampled_from(SECRET_PARAMS))), draw(SECRETS), True
    return draw(st.sampled_from(PUBLIC_PARAMS)), draw(st.text(URL_SAFE)), False


@FAST
@given(
    prefix=st.sampled_from(["", "/feed", "ws://h:8080/feed", "wss://h/x/y"]),
    params=st.lists(query_param(), min_size=1, max_size=6),
    fragment=st.sampled_from(["", "#top", "#access_token=FRAGMENTSECRET"]),
)
def test_url_keeps_everything_but_secret_parameter_values(
    prefix: str, params: list[tuple[str, str, bool]], fragment: str
) -> None:
    url = prefix + "?" + "&".join(f"{n}={v}" for n, v, _ in params) + fragment
    out = redact_url(url)
    expected = "&".join(f"{n}={MARKER if secret else v}" for n, v, secret in params)
    assert out == prefix + "?" + expected + fragment.replace("FRAGMENTSECRET", MARKER)
    assert not any(v in out for _, v, secret in params if secret)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://user:PASS@h:1/p?x=1", "wss://h:1/p?x=1"),
        ("ws://TOKEN@h/p", "ws://h/p"),
        ("ws://u:p@ss@h/p", "ws://h/p"),
        ("ws://h/p?next=a@b", "ws://h/p?next=a@b"),
        ("/p?email=a@b.c", "/p?email=a@b.c"),
        ("//u:p@h/p", "//h/p"),
        ("/a//u@b", "/a//u@b"),
        ("/p?next=http://u@h/", "/p?next=http://u@h/"),
        ("/p?token=AB;CD&x=1", f"/p?token={MARKER}&x=1"),
        ("/p?a=1;token=AB&x=1", f"/p?a=1;token={MARKER}&x=1"),
        ("/p?token&x=%41", "/p?token&x=%41"),
        ("/p?", "/p?"),
        ("/p?x=1#", "/p?x=1#"),
        ("/p", "/p"),
    ],
)
def test_url_loses_userinfo_and_secrets_and_nothing_else(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize("name", [*SECRET_PARAMS, "X-Api-Key", "sessionID", "setcookie"])
def test_secret_looking_names_are_secret(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PUBLIC_PARAMS)
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


# --- rules ------------------------------------------------------------------------------

KEYS = st.text(max_size=6)
PATHS = st.lists(KEYS | st.integers(0, 3), min_size=1, max_size=4)


def quoted(key: str) -> str:
    return "['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"


def spec_of(path: list[str | int]) -> str:
    return "$" + "".join(f"[{k}]" if isinstance(k, int) else quoted(k) for k in path)


def nest(path: list[str | int], value: object, filler: object) -> object:
    """A document with ``value`` at ``path`` and ``filler`` around it at every level."""
    if not path:
        return value
    head, inner = path[0], nest(path[1:], value, filler)
    if isinstance(head, int):
        return [filler] * head + [inner, filler]
    return {"zz": filler, head: inner}


@FAST
@given(
    path=PATHS,
    secret=SECRETS,
    wrapped=st.booleans(),
    filler=FILLER,
    action=st.sampled_from(Action),
)
def test_selected_field_never_keeps_the_secret(
    path: list[str | int], secret: str, wrapped: bool, filler: object, action: Action
) -> None:
    value = {"inner": [secret]} if wrapped else secret
    payload = orjson.dumps(nest(path, value, filler))
    out = Redactor.from_specs([f"{spec_of(path)}={action.value}"], KEY).redact(payload)
    assert secret.encode() not in out


@FAST
@given(
    doc=FILLER,
    paths=st.lists(
        st.lists(st.text("abcde", max_size=3) | st.integers(0, 2), max_size=3), max_size=4
    ),
    secrets=st.lists(SECRETS, min_size=4, max_size=4),
    action=st.sampled_from(Action),
)
def test_recursive_descent_finds_the_name_at_every_depth(
    doc: object, paths: list[list[str | int]], secrets: list[str], action: Action
) -> None:
    hidden = [{"x": [nest([*p, "token"], s, doc)]} for p, s in zip(paths, secrets, strict=False)]
    payload = orjson.dumps({"a": hidden, "token": secrets[-1]})
    out = Redactor.from_specs([f"$..token={action.value}"], KEY).redact(payload)
    assert not any(s.encode() in out for s in secrets)


def test_remove_deletes_members_and_nulls_array_elements() -> None:
    redactor = Redactor.from_specs(["$.user.password=remove", "$.items[1]=remove"], KEY)
    payload = b'{"user":{"name":"ann","password":"PW"},"items":[1,2,3]}'
    assert redactor.redact(payload) == b'{"user":{"name":"ann"},"items":[1,null,3]}'


def test_hash_replaces_the_value_with_a_keyed_hash() -> None:
    out = orjson.loads(Redactor.from_specs(["$.user.id"], KEY).redact(b'{"user":{"id":7}}'))
    assert out == {"user": {"id": keyed_hash(7, KEY)}}
    assert out["user"]["id"].startswith(HASH_PREFIX)
    assert len(out["user"]["id"]) == len(HASH_PREFIX) + 32


def test_a_selected_container_is_acted_on_once_as_a_whole() -> None:
    redactor = Redactor.from_specs(["$..a"], KEY)
    out = orjson.loads(redactor.redact(b'{"a":{"a":{"a":1}}}'))
    assert out == {"a": keyed_hash({"a": {"a": 1}}, KEY)}


@FAST
@given(value=FILLER)
def test_same_key_and_value_give_the_same_hash(value: object) -> None:
    again = orjson.loads(orjson.dumps(value))
    assert keyed_hash(value, KEY) == keyed_hash(again, KEY)


@FAST
@given(
    value=FILLER,
    keys=st.lists(st.binary(min_size=16, max_size=32), min_size=2, max_size=2, unique=True),
)
def test_different_keys_give_different_hashes(value: object, keys: list[bytes]) -> None:
    assert keyed_hash(value, keys[0]) != keyed_hash(value, keys[1])


def test_values_equal_as_json_hash_equally() -> None:
    assert keyed_hash({"a": 1, "b": 2.0}, KEY) == keyed_hash({"b": 2, "a": 1}, KEY)
    assert keyed_hash(True, KEY) != keyed_hash(1, KEY)
    assert keyed_hash("1", KEY) != keyed_hash(1, KEY)


@FAST
@given(doc=FILLER, indent=st.booleans())
def test_payload_no_rule_selects_comes_back_byte_identical(doc: object, indent: bool) -> None:
    payload = json.dumps(doc, indent=2 if indent else None).encode()
    redactor = Redactor.from_specs(["$..token", "$.zzz[0]=remove", "$['no such']"], KEY)
    assert redactor.redact(payload) is payload


@FAST
@given(payload=st.binary(max_size=40))
def test_payload_that_is_not_json_comes_back_unchanged_unless_it_looks_structured(
    payload: bytes,
) -> None:
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        redacted = Redactor.from_specs(["$..*"], KEY).redact(payload)
        if payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
            assert redacted == UNREDACTABLE or json.loads(redacted.decode("utf-8-sig")) is not None
        else:
            assert redacted == payload


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"token=ABC", b"", b"NaN", b'"token"'])
def test_text_that_is_not_json_comes_back_unchanged(payload: bytes) -> None:
    assert Redactor.from_specs(["$..token"], KEY).redact(payload) == payload


@pytest.mark.parametrize(
    "payload",
    [
        b'{"token":"SECRET","price":NaN}',  # Python's json.dumps writes NaN by default
        b'\xef\xbb\xbf{"token":"SECRET"}',  # a BOM
        b'{"token":"SECRET","d":' + b"[" * 300 + b"]" * 300 + b"}",  # past orjson's writer
    ],
)
def test_json_that_orjson_refuses_is_still_redacted(payload: bytes) -> None:
    redacted = Redactor.from_specs(["$..token"], KEY).redact(payload)
    assert b"SECRET" not in redacted
    assert json.loads(redacted)["token"].startswith("hmac-sha256:")


@pytest.mark.parametrize(
    "payload",
    [
        b'{"token":"SECRET","d":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"token":"SECRET",',
    ],
)
def test_what_looks_like_json_but_cannot_be_redacted_fails_closed(payload: bytes) -> None:
    assert Redactor.from_specs(["$..token"], KEY).redact(payload) == UNREDACTABLE


@FAST
@given(
    doc=FILLER,
    specs=st.lists(
        st.sampled_from(["$..a", "$.a[0]", "$[*].b", "$..*", "$[0][1]", "$..[-1]", "$.*"]),
        min_size=1,
        max_size=3,
    ),
)
def test_remove_is_idempotent(doc: object, specs: list[str]) -> None:
    redactor = Redactor.from_specs([f"{s}=remove" for s in specs], KEY)
    once = redactor.redact(orjson.dumps(doc))
    assert redactor.redact(once) == once


def test_a_shadowed_duplicate_key_is_not_written() -> None:
    # Parsers keep the last "a", so the rule never sees the first; its bytes must still go.
    redactor = Redactor.from_specs(["$.a.token"], KEY)
    assert redactor.redact(b'{"a":{"token":"SECRET"},"a":1}') == b'{"a":1}'
    with_colons = b'{"t":"12:00","a":{"token":"SECRET"},"a":1}'
    assert redactor.redact(with_colons) == b'{"t":"12:00","a":1}'


def test_replay_recognises_a_client_message_redacted_the_same_way() -> None:
    """The recorded message was hashed at record time; the replay hashes the live one
    with the same key and rules, and the two match though the live bytes differ."""
    rules = ["$.auth.token", "$.user"]
    recorded = Redactor.from_specs(rules, KEY).redact(
        b'{"type":"login","auth":{"token":"T1"},"user":{"id":1,"n":"x"}}'
    )
    replayer = Redactor.from_description(Redactor.from_specs(rules, KEY).describe(), KEY)
    live = replayer.redact(
        b'{ "user": {"n": "x", "id": 1.0}, "auth": {"token": "T1"}, "type": "login" }'
    )
    other = replayer.redact(b'{"type":"login","auth":{"token":"T2"},"user":{"id":1,"n":"x"}}')
    expected = ExpectClient(0, recorded, Frame.TEXT)
    assert same_message(expected, live, Frame.TEXT)
    assert not same_message(expected, other, Frame.TEXT)


# --- specs and descriptions ----------------------------------------------------------------

SELECTORS = KEYS | st.integers(-3, 3) | st.just(Wildcard.ANY)
RULES = st.builds(
    Rule,
    path=st.lists(st.builds(Step, SELECTORS, st.booleans()), min_size=1, max_size=4).map(tuple),
    action=st.sampled_from(Action),
)


@FAST
@given(rule=RULES)
def test_rule_spec_round_trips(rule: Rule) -> None:
    assert parse_rule(str(rule)) == rule


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("$.a.b", Rule((Step("a"), Step("b")))),
        ("$['a b']", Rule((Step("a b"),))),
        ('$["a\\"b"]=remove', Rule((Step('a"b'),), Action.REMOVE)),
        ("$.a[*].b", Rule((Step("a"), Step(Wildcard.ANY), Step("b")))),
        ("$.a.*", Rule((Step("a"), Step(Wildcard.ANY)))),
        ("$.a[0]=hash", Rule((Step("a"), Step(0)))),
        ("$.a[-1]", Rule((Step("a"), Step(-1)))),
        ("$..b=REMOVE", Rule((Step("b", descend=True),), Action.REMOVE)),
        ("$..[*]", Rule((Step(Wildcard.ANY, descend=True),))),
        ("$['a=b']=remove", Rule((Step("a=b"),), Action.REMOVE)),
    ],
)
def test_spec_syntax(spec: str, expected: Rule) -> None:
    assert parse_rule(spec) == expected


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "must start with $"),
        ("a.b", "must start with $"),
        ("$", "must select something"),
        ("$=remove", "must select something"),
        ("$.", "expected a name or *"),
        ("$.a b", "expected '.' or '['"),
        ("$a", "expected '.' or '['"),
        ("$.a[", "expected *, an index or a quoted name"),
        ("$.a[x]", "expected *, an index or a quoted name"),
        ("$.a[0", "expected ']'"),
        ("$['a", "unclosed '"),
        ("$.a=delete", "unknown action 'delete'"),
        ("$.a=", "unknown action ''"),
    ],
)
def test_bad_spec_says_what_is_wrong_and_what_is_allowed(spec: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_rule(spec)
    message = str(caught.value)
    assert repr(spec) in message
    assert problem in message
    assert "allowed: JSONPATH" in message


def test_description_rebuilds_the_redactor_and_holds_no_key() -> None:
    redactor = Redactor.from_specs(["$.a", "$..b=remove"], KEY)
    description = redactor.describe()
    assert KEY.decode() not in json.dumps(description)
    rebuilt = Redactor.from_description(orjson.loads(orjson.dumps(description)), KEY)
    assert rebuilt.rules == redactor.rules
    payload = b'{"a":1,"x":{"b":2}}'
    assert rebuilt.redact(payload) == redactor.redact(payload)


def test_description_refuses_another_key() -> None:
    description = Redactor.from_specs(["$.a"], KEY).describe()
    with pytest.raises(UsageError, match="not the one the recording was made with"):
        Redactor.from_description(description, OTHER_KEY)


@pytest.mark.parametrize(
    "description",
    [{}, {"scheme": "md5", "rules": []}, {"scheme": "hmac-sha256/128", "rules": "$.a"}],
)
def test_malformed_description_is_refused(description: dict[str, object]) -> None:
    with pytest.raises(UsageError, match="not a redaction description"):
        Redactor.from_description(description, KEY)


def test_short_key_is_refused() -> None:
    with pytest.raises(UsageError, match="must be at least 16"):
        Redactor([], b"short")


def test_no_rules_returns_every_payload_untouched() -> None:
    payload = b'{"token":"x","a":{"a":1},"a":2}'
    assert Redactor([], KEY).redact(payload) is payload


def test_a_member_name_written_with_escapes_is_still_found() -> None:
    redactor = Redactor.from_specs(["$.token=remove"], KEY)
    assert redactor.redact(b'{"tok\\u0065n":"SECRET","a":1}') == b'{"a":1}'


@pytest.mark.parametrize("depth", [300, 600, 1020])
@pytest.mark.parametrize("spec", ["$.data", "$..token=remove", "$.password"])
def test_deep_messages_never_raise_and_never_leak(depth: int, spec: str) -> None:
    """Nesting past orjson's writer (254) or Python's recursion limit (~1,000), with a
    backslash that defeats the fast path: the message is redacted or fails closed."""
    payload = (
        b'{"s":"a\\nb","token":"SECRET","data":'
        + b"[" * depth
        + b'{"k":"SECRET"}'
        + b"]" * depth
        + b"}"
    )
    redacted = Redactor.from_specs([spec], KEY).redact(payload)
    if spec == "$.password":  # selects nothing: kept as it was, or failed closed
        assert redacted in (payload, UNREDACTABLE)
    else:  # one of the two secrets is selected: it is gone, or everything is
        assert redacted == UNREDACTABLE or redacted.count(b"SECRET") == 1
