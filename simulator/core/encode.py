"""Messages as bytes: a stream's envelope and top-level fields, encoded with orjson.

The hot loop of every timeline is "build one dict per message, encode it". Building
it with ``dict(zip(keys, row))`` twice (envelope, then data) costs more than the
encoding itself, so each stream gets a small builder function whose body is a dict
display — ``{EK[0]: c0, EK[1]: EC[1], EK[3]: {DK[0]: d0, ...}}`` — generated from the
*shape* of its envelope (how many keys, which are constants, which are columns) and
compiled once per shape. Keys and constants are passed in as tuples, never pasted
into source text, so no name or value from a scenario file is ever evaluated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from simulator.core.model import JSON, Slot, Stream, TimeFormat
from simulator.core.values import format_times

_TIME_FORMATS = {
    Slot.TIMESTAMP: TimeFormat.ISO,
    Slot.TIMESTAMP_MS: TimeFormat.EPOCH_MS,
    Slot.TIMESTAMP_S: TimeFormat.EPOCH_S,
}


@functools.lru_cache(maxsize=256)
def _builder_factory(shape: tuple[str, ...], data_width: int) -> Callable[..., Any]:
    """Compile a factory for builders of one envelope shape.

    ``shape`` has one letter per envelope key: ``c`` constant, ``v`` a per-message
    column, ``d`` the data object (expanded into ``data_width`` columns).
    """
    params: list[str] = []
    items: list[str] = []
    for i, kind in enumerate(shape):
        if kind == "c":
            items.append(f"EK[{i}]: EC[{i}]")
        elif kind == "v":
            params.append(f"v{i}")
            items.append(f"EK[{i}]: v{i}")
        else:
            data_params = [f"d{j}" for j in range(data_width)]
            params.extend(data_params)
            inner = ", ".join(f"DK[{j}]: d{j}" for j in range(data_width))
            items.append(f"EK[{i}]: {{{inner}}}")
    source = (
        "def factory(EK, EC, DK):\n"
        f"    def build({', '.join(params)}):\n"
        f"        return {{{', '.join(items)}}}\n"
        "    return build\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<envelope {''.join(shape)}/{data_width}>", "exec"), namespace)
    return namespace["factory"]  # type: ignore[no-any-return]


class MessageEncoder:
    """Encodes one stream's messages: call :meth:`encode` with a chunk's columns."""

    __slots__ = ("_build", "_slots")

    def __init__(self, stream: Stream, data_keys: Sequence[str]) -> None:
        shape: list[str] = []
        keys: list[str] = []
        constants: list[JSON] = []
        self._slots: list[Slot] = []
        for key, slot in stream.envelope.keys:
            keys.append(key)
            if slot is Slot.TYPE:
                slot = stream.type
            elif slot is Slot.STREAM:
                slot = stream.name
            if not isinstance(slot, Slot):
                shape.append("c")
                constants.append(slot)
                continue
            shape.append("d" if slot is Slot.DATA else "v")
            constants.append(None)
            if slot is not Slot.DATA:
                self._slots.append(slot)
        factory = _builder_factory(tuple(shape), len(data_keys))
        self._build = factory(tuple(keys), tuple(constants), tuple(data_keys))

    def encode(
        self, seqs: list[int], wall_ns: npt.NDArray[np.int64], data: Sequence[list[JSON]]
    ) -> list[bytes]:
        """One JSON text per message; ``data`` holds the top-level field columns in order."""
        columns: list[list[JSON]] = []
        for slot in self._slots:
            if slot is Slot.SEQ:
                columns.append(list[JSON](seqs))
            else:
                columns.append(format_times(wall_ns, _TIME_FORMATS[slot]))
        return list(map(_dumps_trimmed, map(self._build, *columns, *data)))


def _dumps_trimmed(value: JSON) -> bytes:
    """``orjson.dumps(value)`` in a bytes object of its own size: orjson (3.12 and
    later) returns small texts in a 4 KiB buffer, and a live server holds a chunk of
    rendered messages per stream (per connection, in per-connection mode): 200-byte
    messages took 4 KiB each (copying costs ~30 ns)."""
    return b"".join((orjson.dumps(value), b""))
