"""Bringing numeric draws inside ``[min, max]`` and rounding them.

:func:`shape` is the last step of every numeric field: it clips or reflects (the
``bounds`` key, :class:`~simulator.core.model.Bounds`) and rounds without stepping
outside the bounds. :func:`fold` is the reflection alone, which walks use on their
free path.
"""

from __future__ import annotations

import numpy as np

from simulator.core.draws import Floats
from simulator.core.model import JSON, Bounds, Numeric


def shape(values: Floats, numeric: Numeric) -> list[JSON]:
    """Clip (or reflect, with ``bounds`` REFLECT), round, clip again, as JSON numbers.

    The second clip uses the bounds snapped inwards to the rounding grid, so a rounded
    value never steps outside the bounds nor shows more decimals than asked for
    (``min = 0.5, round = 0`` gives 1, not 0). Bounds with no grid point between them
    fall back to the bounds themselves.
    """
    lo, hi = numeric.min, numeric.max
    if numeric.bounds is Bounds.REFLECT:
        values = fold(values, lo, hi)
    elif lo is not None or hi is not None:
        values = np.clip(values, lo, hi)
    r = numeric.round_to
    if r is None:
        return values.tolist()  # type: ignore[no-any-return]
    values = np.round(values, r)
    if lo is not None or hi is not None:
        scale = 10.0**r
        glo = None if lo is None else float(np.ceil(np.round(lo * scale, 6)) / scale)
        ghi = None if hi is None else float(np.floor(np.round(hi * scale, 6)) / scale)
        if glo is not None and ghi is not None and glo > ghi:
            glo, ghi = lo, hi
        values = np.clip(values, glo, ghi)
        # Snapping is float arithmetic too: the bounds themselves always win.
        values = np.clip(values, lo, hi)
    if r == 0:
        return np.rint(values).astype(np.int64).tolist()  # type: ignore[no-any-return]
    return values.tolist()  # type: ignore[no-any-return]


def fold(x: Floats, lo: float | None, hi: float | None) -> Floats:
    """Reflect ``x`` into ``[lo, hi]`` as many times as needed (a triangle wave).

    Values already inside are returned exactly as they are (the formula would cost
    them a last bit), and folded ones are clipped against rounding at the edges.
    """
    has_lo = lo is not None and bool(np.isfinite(lo))
    has_hi = hi is not None and bool(np.isfinite(hi))
    if not has_lo and not has_hi:
        return x
    low = float(lo) if has_lo and lo is not None else -np.inf
    high = float(hi) if has_hi and hi is not None else np.inf
    inside = (x >= low) & (x <= high)
    if inside.all():
        return x
    if has_lo and has_hi:
        width = high - low
        if width == 0:
            return np.full_like(x, low)
        phase = np.mod(x - low, 2 * width)
        folded = low + width - np.abs(phase - width)
    elif has_lo:
        folded = low + np.abs(x - low)
    else:
        folded = high - np.abs(high - x)
    return np.where(inside, x, np.clip(folded, low, high))
