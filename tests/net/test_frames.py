"""The server's hand-written frame headers are websockets' own bytes."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from simulator.net.send_path import binary_frame, text_frame

# Lengths on each side of the 7-bit, 16-bit and 64-bit length forms.
_EDGES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.sampled_from(_EDGES).map(lambda n: b"x" * n),
    )
)
@example(payload=b"")
def test_text_and_binary_frames_are_the_bytes_websockets_serialises(payload: bytes) -> None:
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
    assert binary_frame(payload) == Frame(Opcode.BINARY, payload).serialize(mask=False)
