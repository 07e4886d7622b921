"""Seeded random draws that never depend on the order other decisions were made in.

Every consumer of randomness (a stream's schedule, a stream's field values, later a
fault) gets its own :class:`Draws`, derived from ``(seed, purpose, name, scope)``.
Each consumer takes a *fixed* number of 64-bit words per message, in message order, so
the values of message ``i`` do not depend on how many messages were asked for at a
time (chunk sizes are free) nor on any other consumer.

The words come from numpy's PCG64 bit generator, whose raw stream numpy keeps stable
across releases; we never call numpy's distribution methods (which may change between
numpy versions) and turn raw words into values ourselves.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

_DOUBLE_SCALE = 2.0**-53

Words = npt.NDArray[np.uint64]
Floats = npt.NDArray[np.float64]


def _words(part: str | int) -> list[int]:
    """A part of a derivation key as 32-bit words; strings are hashed, ints split."""
    if isinstance(part, int):
        if part < 0:
            raise ValueError(f"key parts must be >= 0, got {part}")
        words = []
        while True:
            words.append(part & 0xFFFFFFFF)
            part >>= 32
            if not part:
                return [len(words), *words]
    digest = hashlib.blake2b(part.encode("utf-8"), digest_size=16).digest()
    return [0xFFFFFFFF, *np.frombuffer(digest, dtype="<u4").tolist()]


def derive_key(seed: int, *parts: str | int) -> list[int]:
    """The entropy words for ``(seed, *parts)``; distinct keys give distinct words."""
    out = _words(seed)
    for part in parts:
        out.extend(_words(part))
    return out


class Draws:
    """A sequential supply of random 64-bit words for one consumer.

    Callers must take a fixed number of words per message (``width``) so that message
    ``i`` always sees the same words whatever the chunking.
    """

    __slots__ = ("_bitgen",)

    def __init__(self, seed: int, *parts: str | int) -> None:
        self._bitgen = np.random.PCG64(np.random.SeedSequence(derive_key(seed, *parts)))

    def words(self, n: int, width: int) -> Words:
        """The next ``n * width`` words, shaped ``(n, width)``."""
        if width == 0:
            return np.zeros((n, 0), dtype=np.uint64)
        raw = self._bitgen.random_raw(n * width)
        return np.asarray(raw, dtype=np.uint64).reshape(n, width)


def unit(words: Words) -> Floats:
    """Map words to doubles uniform in [0, 1): the top 53 bits, as numpy's ``random()``."""
    return (words >> np.uint64(11)).astype(np.float64) * _DOUBLE_SCALE


def standard_normal(w1: Words, w2: Words) -> Floats:
    """Standard normal deviates by Box–Muller (cosine branch), two words each."""
    u1 = 1.0 - unit(w1)  # in (0, 1]: log is finite
    u2 = unit(w2)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
