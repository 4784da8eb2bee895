"""Binary morphology on bit-packed masks: 64 pixels a machine word, every pass vectorised NumPy.

The boundary metrics of :mod:`evalhub.metrics` spend their time in dilations and erosions of
binary masks. On a mask packed one bit per pixel those are word-wide shifts, ORs and ANDs over an
array 64 times smaller than a bool mask (8 times smaller than its bytes), whatever the size of the
structuring element:

- a run of ``L`` pixels along one axis is covered by doubling (runs of 1, 2, 4, ... combined with
  themselves shifted), ``ceil(log2 L)`` passes;
- a square is a row window after a column window (the square element is separable);
- a Euclidean disk ``{dy^2 + dx^2 <= r^2}`` is the union over ``dy`` of row windows of half-width
  ``isqrt(r^2 - dy^2)`` moved by ``dy`` rows: exactly ``skimage.morphology.disk(r)``.

Conventions: a packed mask is ``(H, K)`` little-endian uint64 (``'<u8'``) with pixel ``x`` of a row
at bit ``x % 64`` of word ``x // 64``, bits past the width zero. Outside the frame is background (0)
for dilation and erosion alike: OpenCV's ``BORDER_CONSTANT`` with value 0, which for erosion is the
zero padding of the Boundary IoU reference. Every function is exact; ``tests/test_metrics.py``
compares each with OpenCV / scikit-image.
"""

from __future__ import annotations

import math

import numpy as np

_U64 = np.dtype("<u8")
_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def pack(mask: np.ndarray) -> np.ndarray:
    """Pack a ``(H, W)`` bool or uint8 0/1 mask into ``(H, ceil(W / 64))`` ``'<u8'`` words."""
    m = mask.view(np.uint8) if mask.dtype == np.bool_ else mask
    b = np.packbits(m, axis=1, bitorder="little")
    extra = -b.shape[1] % 8
    if extra:
        b = np.pad(b, ((0, 0), (0, extra)))
    return np.ascontiguousarray(b).view(_U64)


def unpack(a: np.ndarray, width: int) -> np.ndarray:
    """The ``(H, width)`` uint8 0/1 mask of a packed one."""
    return np.unpackbits(np.ascontiguousarray(a).view(np.uint8), axis=1, count=width, bitorder="little")


def count(a: np.ndarray) -> int:
    """Number of set bits (pixels) of a packed mask."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return int(np.bitwise_count(a).sum(dtype=np.int64))
    return int(_BYTE_POPCOUNT[np.ascontiguousarray(a).view(np.uint8)].sum(dtype=np.int64))


# Every pass below writes into one of a few buffers allocated once per call: arrays of this size
# (~128 KiB) are mapped fresh by the C allocator on each allocation, and those page faults would
# cost as much as the arithmetic.


def _move_bits(a: np.ndarray, b: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """``out`` = ``a`` moved by ``b`` bits along rows (``0 < |b| < 64``; positive: toward larger x).

    Runs on the flat arrays (one long inner loop instead of a short one per row), then redoes the
    one word per row that took a carry from the neighbouring row."""
    fa, fo, ft = a.reshape(-1), out.reshape(-1), tmp.reshape(-1)
    if b > 0:
        np.left_shift(fa, np.uint64(b), out=fo)
        np.right_shift(fa[:-1], np.uint64(64 - b), out=ft[1:])
        np.bitwise_or(fo[1:], ft[1:], out=fo[1:])
        out[:, 0] = a[:, 0] << np.uint64(b)
    else:
        np.right_shift(fa, np.uint64(-b), out=fo)
        np.left_shift(fa[1:], np.uint64(64 + b), out=ft[:-1])
        np.bitwise_or(fo[:-1], ft[:-1], out=fo[:-1])
        out[:, -1] = a[:, -1] >> np.uint64(-b)
    return out


def _move_x(a: np.ndarray, s: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """``out[:, x] = a[:, x - s]``, zero where ``x - s`` falls outside the words."""
    k = a.shape[1]
    q, b = divmod(abs(s), 64)
    if q == 0:
        if b:
            return _move_bits(a, s, out, tmp)
        out[:] = a
        return out
    tmp[:] = 0
    if q < k:
        if s > 0:
            tmp[:, q:] = a[:, : k - q]
        else:
            tmp[:, : k - q] = a[:, q:]
    if b:
        return _move_bits(tmp, b if s > 0 else -b, out, np.empty_like(a))
    out[:] = tmp
    return out


def shift_x(a: np.ndarray, s: int) -> np.ndarray:
    """``out[:, x] = a[:, x - s]``, zero where ``x - s`` falls outside the words: a move by ``s``
    pixels toward larger ``x`` (negative ``s``: toward smaller ``x``). A new array."""
    a = np.ascontiguousarray(a)
    return _move_x(a, s, np.empty_like(a), np.empty_like(a))


def _grow_x(x: np.ndarray, half: int, t1: np.ndarray, t2: np.ndarray, t3: np.ndarray) -> None:
    """In place: ``x`` = its dilation along rows by ``[-half, half]``. Doubling: when ``x`` covers
    ``[-h, h]``, ``x | move(x, k) | move(x, -k)`` covers ``[-h - k, h + k]`` for ``k <= 2h + 1``;
    nothing is read from outside the frame, so zero fill is exact."""
    h = 0
    while h < half:
        k = min(h + 1, half - h)
        _move_x(x, k, t1, t3)
        _move_x(x, -k, t2, t3)
        np.bitwise_or(x, t1, out=x)
        np.bitwise_or(x, t2, out=x)
        h += k


def erode_square(a: np.ndarray, half: int) -> np.ndarray:
    """Erosion by the ``(2 half + 1)`` square, background outside the frame (so the frame's edge
    erodes like the zero-padded mask of the Boundary IoU reference).

    For AND a run that reaches outside is 0 whichever way it is read, so each axis is one forward
    run of ``2 half + 1`` by doubling, moved back by ``half``: along columns on row slices, along
    rows by bit moves, the latter only on the words and rows the column pass left nonzero (zero all
    around them, so the cut is exact and no run leaves it)."""
    if half == 0:
        return np.array(a, copy=True)
    length, h = 2 * half + 1, a.shape[0]
    out = np.zeros_like(a)
    if length > h:
        return out
    # columns: acc[y] = AND a[y .. y + span - 1], kept for the rows where the run fits (ping-pong)
    acc, spare = np.array(a, copy=True), np.empty_like(a)
    n, span = h, 1
    while span < length:
        k = min(span, length - span)
        np.bitwise_and(acc[: n - k], acc[k:n], out=spare[: n - k])
        acc, spare, n, span = spare, acc, n - k, span + k
    live_rows, live_words = np.flatnonzero(acc[:n].any(axis=1)), np.flatnonzero(acc[:n].any(axis=0))
    if not live_rows.size:
        return out
    r0, r1, w0, w1 = live_rows[0], live_rows[-1] + 1, live_words[0], live_words[-1] + 1
    core = np.ascontiguousarray(acc[r0:r1, w0:w1])
    t1, t2 = np.empty_like(core), np.empty_like(core)
    span = 1
    while span < length:  # rows: core[x] = AND core[x .. x + span - 1]
        k = min(span, length - span)
        np.bitwise_and(core, _move_x(core, -k, t1, t2), out=core)
        span += k
    out[half + r0 : half + r1, w0:w1] = _move_x(core, half, t1, t2)
    return out


def disk_widths(r: int) -> list[int]:
    """Half-widths ``isqrt(r^2 - dy^2)`` of the disk's rows ``dy = 0 .. r``."""
    return [math.isqrt(r * r - dy * dy) for dy in range(r + 1)]


def _or_run_y(x: np.ndarray, length: int, buf: np.ndarray, spare: np.ndarray) -> np.ndarray:
    """``v[y] = x[y] | ... | x[y + length - 1]`` for the ``len(x) - length + 1`` rows where the run
    fits, by doubling on row slices, written into ``buf`` / ``spare`` (returns a view of one)."""
    n, span, acc, bufs = len(x), 1, x, (buf, spare)
    while span < length:
        k = min(span, length - span)
        dst = bufs[0] if acc is not bufs[0] else bufs[1]
        np.bitwise_or(acc[: n - k], acc[k:n], out=dst[: n - k])
        acc, n, span = dst, n - k, span + k
    return acc[:n]


def dilate_disk(a: np.ndarray, r: int) -> np.ndarray:
    """Dilation by the Euclidean disk ``{dy^2 + dx^2 <= r^2}`` (``skimage.morphology.disk(r)``).

    The disk's rows of one half-width ``w`` are a contiguous range ``lo <= |dy| <= hi``. Widths are
    taken in increasing order, each one incremental row dilation of the previous; a column run of
    ``hi - lo + 1`` rows of it is ORed in moved by ``-hi`` and by ``lo`` (rows above and below).
    The work arrays carry ``r`` background rows above and below, so no run needs an edge case.

    Raises:
        ValueError: ``r < 0``.
    """
    if r < 0:
        raise ValueError(f"disk radius must be >= 0, got {r}")
    widths = disk_widths(r)
    h = a.shape[0]
    current = np.zeros((h + 2 * r, a.shape[1]), a.dtype)
    current[r : r + h] = a
    out = np.zeros_like(current)
    t1, t2, t3 = np.empty_like(current), np.empty_like(current), np.empty_like(current)
    at = 0
    for w in sorted(set(widths)):
        _grow_x(current, w - at, t1, t2, t3)
        at = w
        if widths[0] == w:
            out |= current
        rows = [dy for dy in range(1, r + 1) if widths[dy] == w]
        if rows:
            lo, hi = rows[0], rows[-1]
            v = _or_run_y(current, hi - lo + 1, t1, t2)
            out[hi:] |= v[: len(out) - hi]  # out[y] |= current[y - hi .. y - lo]
            out[: len(v) - lo] |= v[lo:]  # out[y] |= current[y + lo .. y + hi]
    return out[r : r + h]


def seg2bmap(a: np.ndarray, width: int) -> np.ndarray:
    """DAVIS ``seg2bmap`` of a packed mask of ``width`` columns: pixels that differ from their east,
    south or south-east neighbour, the last row and column compared with themselves (replicated),
    so the image border is no boundary (see :func:`evalhub.metrics.seg2bmap`)."""
    east = shift_x(np.ascontiguousarray(a), -1)
    last_word, last_bit = divmod(width - 1, 64)
    east[:, last_word] |= a[:, last_word] & np.uint64(1 << last_bit)  # replicate the last column
    b = a ^ east
    b[:-1] |= (a[:-1] ^ a[1:]) | (a[:-1] ^ east[1:])  # the last row's south is itself
    return b
