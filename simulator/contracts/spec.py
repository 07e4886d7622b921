"""Reading an AsyncAPI 3.0 document (YAML or JSON) and finding its messages and payloads;
writing one as YAML (:func:`dump_yaml`).

:func:`load_spec` raises only :class:`~simulator.errors.ContractError`, naming the file
and the line or JSON path. Local references (``$ref: '#/components/...'``) are followed;
a reference to another file is an error (bundle the document first).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from simulator.core.model import JSON
from simulator.errors import ContractError

__all__ = ["Spec", "SpecMessage", "load_spec", "parse_spec"]

_MAX_REF_HOPS: Final = 64
_JSON_SCHEMA_FORMATS: Final = (
    "application/vnd.aai.asyncapi",
    "application/vnd.aai.asyncapi+json",
    "application/vnd.aai.asyncapi+yaml",
    "application/schema+json",
    "application/schema+yaml",
)


@dataclass(frozen=True, slots=True)
class SpecMessage:
    """One message of the document: its key in ``components.messages`` (or the
    channel) and JSON pointer, ``name``, its payload schema and that schema's JSON
    pointer, and the ``x-sim-*`` keys of the operation that sends it."""

    key: str
    pointer: str
    name: str | None
    payload_pointer: str
    payload: Mapping[str, Any]
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> str | None:
        """The stream this message came from, if a `sim asyncapi` document says so."""
        value = self.extensions.get("x-sim-stream")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed AsyncAPI 3 document; ``source`` names it in errors."""

    doc: Mapping[str, Any]
    source: str

    def error(self, where: str | None, message: str) -> ContractError:
        return ContractError(self.source, where, message)

    def resolve(self, node: Any, where: str) -> tuple[Any, str]:
        """``node`` with local ``$ref`` followed, and the JSON pointer it was found at."""
        pointer = where
        for _ in range(_MAX_REF_HOPS):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                return node, pointer
            ref = node["$ref"]
            if not ref.startswith("#"):
                raise self.error(_dotted(pointer), f"$ref {ref!r}: only local references (#/...)")
            pointer = ref
            node = self._at(ref, where)
        raise self.error(_dotted(where), "$ref: more than 64 hops (a cycle?)")

    def _at(self, ref: str, where: str) -> Any:
        node: Any = self.doc
        for raw in ref[1:].split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise self.error(_dotted(where), f"$ref {ref!r} points at nothing")
        return node

    def messages(self) -> list[SpecMessage]:
        """Every message of every channel, each once, in document order."""
        seen: dict[str, SpecMessage] = {}
        extensions = self._send_extensions()
        for channel_key, channel in self._mapping("channels").items():
            channel_node, channel_at = self.resolve(channel, f"#/channels/{_esc(channel_key)}")
            if not isinstance(channel_node, dict):
                raise self.error(_dotted(channel_at), "must be a channel object")
            channel_messages = channel_node.get("messages") or {}
            if not isinstance(channel_messages, dict):
                raise self.error(_dotted(channel_at) + ".messages", "must be a mapping")
            for key, raw in channel_messages.items():
                at = f"{channel_at}/messages/{_esc(key)}"
                message, pointer = self.resolve(raw, at)
                if pointer in seen:
                    continue
                if not isinstance(message, dict):
                    raise self.error(_dotted(pointer), "must be a message object")
                payload, payload_at = self._payload(message, pointer)
                seen[pointer] = SpecMessage(
                    key=pointer.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~"),
                    pointer=pointer,
                    name=message.get("name") if isinstance(message.get("name"), str) else None,
                    payload_pointer=payload_at,
                    payload=payload,
                    extensions={
                        **extensions.get(pointer, {}),
                        **{k: v for k, v in message.items() if k.startswith("x-sim-")},
                    },
                )
        return list(seen.values())

    def stream_messages(self) -> list[SpecMessage]:
        """The messages that become streams: those a `sim asyncapi` document marks with
        ``x-sim-stream``; else those of ``send`` operations; else every message."""
        every = self.messages()
        marked = [m for m in every if m.stream is not None]
        if marked:
            return marked
        sent = {pointer for pointer, _ in self._operation_messages("send")}
        return [m for m in every if m.pointer in sent] or every

    def _mapping(self, key: str) -> dict[str, Any]:
        value = self.doc.get(key) or {}
        if not isinstance(value, dict):
            raise self.error(key, "must be a mapping")
        return value

    def _operation_messages(self, action: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for op_key, raw in self._mapping("operations").items():
            op, at = self.resolve(raw, f"#/operations/{_esc(op_key)}")
            if not isinstance(op, dict) or op.get("action") != action:
                continue
            refs = op.get("messages") or []
            if not isinstance(refs, list):
                raise self.error(_dotted(at) + ".messages", "must be a list of $ref")
            for i, ref in enumerate(refs):
                _, pointer = self.resolve(ref, f"{at}/messages/{i}")
                yield pointer, op

    def _send_extensions(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for pointer, op in self._operation_messages("send"):
            out[pointer] = {k: v for k, v in op.items() if k.startswith("x-sim-")}
        return out

    def _payload(self, message: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        raw = message.get("payload")
        if raw is None:
            return {}, ""
        payload, at = self.resolve(raw, f"{pointer}/payload")
        if isinstance(payload, dict) and "schemaFormat" in payload:
            fmt = str(payload["schemaFormat"]).split(";")[0]
            if fmt not in _JSON_SCHEMA_FORMATS:
                raise self.error(
                    _dotted(at), f"schemaFormat {fmt!r}: only JSON Schema payloads are supported"
                )
            payload, at = self.resolve(payload.get("schema", {}), f"{at}/schema")
        if not isinstance(payload, dict):
            raise self.error(_dotted(at), "a payload must be a schema object")
        return payload, at


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _dotted(pointer: str) -> str:
    """``#/components/messages/x`` → ``components.messages.x`` (for messages)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("#/").split("/")]
    return ".".join(parts)


class _JsonLoader(yaml.SafeLoader):
    """YAML as JSON sees it: ``2026-01-01`` stays a string (a JSON Schema has no dates)."""


_JsonLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read the AsyncAPI document at ``path``; raises :class:`ContractError` only."""
    source = os.fsdecode(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ContractError(source, None, f"cannot read: {e.strerror or e}") from None
    return parse_spec(data, source)


def parse_spec(text: str | bytes, source: str = "<asyncapi>") -> Spec:
    """:func:`load_spec` for text already read."""
    try:
        doc = yaml.load(text, Loader=_JsonLoader)  # a SafeLoader (below): no arbitrary objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = str(mark.line + 1) if mark is not None else None
        raise ContractError(source, line, f"invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ContractError(source, None, f"invalid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ContractError(source, None, "not an AsyncAPI document (not a mapping)")
    version = doc.get("asyncapi")
    if not isinstance(version, str):
        raise ContractError(source, "asyncapi", "missing: an AsyncAPI document says its version")
    if not version.startswith("3."):
        raise ContractError(
            source, "asyncapi", f"{version!r}: only AsyncAPI 3.x documents are read"
        )
    return Spec(doc, source)


def dump_yaml(doc: Mapping[str, JSON]) -> str:
    """``doc`` as YAML, keys in the order given (as `sim asyncapi` writes it)."""
    text: str = yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=100)
    return text
