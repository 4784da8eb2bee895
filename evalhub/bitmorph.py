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


def _move_bits(a: np.ndarray, b: int, out: np.ndarray, tmp: np.ndarray, fix: bool = True) -> np.ndarray:
    """``out`` = ``a`` moved by ``b`` bits along rows (``0 < |b| < 64``; positive: toward larger x).

    Runs on the flat arrays (one long inner loop instead of a short one per row), then redoes the
    one word per row that took a carry from the neighbouring row. ``fix=False`` skips that: for
    arrays whose rows end in guard words (:func:`_guarded`), where the carry is what the line
    dilation or erosion needs (see there)."""
    fa, fo, ft = a.reshape(-1), out.reshape(-1), tmp.reshape(-1)
    if b > 0:
        np.left_shift(fa, np.uint64(b), out=fo)
        np.right_shift(fa[:-1], np.uint64(64 - b), out=ft[1:])
        np.bitwise_or(fo[1:], ft[1:], out=fo[1:])
        if fix:
            out[:, 0] = a[:, 0] << np.uint64(b)
    else:
        np.right_shift(fa, np.uint64(-b), out=fo)
        np.left_shift(fa[1:], np.uint64(64 + b), out=ft[:-1])
        np.bitwise_or(fo[:-1], ft[:-1], out=fo[:-1])
        if fix:
            out[:, -1] = a[:, -1] >> np.uint64(-b)
    return out


def _move_x(a: np.ndarray, s: int, out: np.ndarray, tmp: np.ndarray, fix: bool = True) -> np.ndarray:
    """``out[:, x] = a[:, x - s]``, zero where ``x - s`` falls outside the words (``fix=False``:
    sub-word moves carry across rows, see :func:`_move_bits`)."""
    k = a.shape[1]
    q, b = divmod(abs(s), 64)
    if q == 0:
        if b:
            return _move_bits(a, s, out, tmp, fix)
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


def _guarded(h: int, k: int, reach: int) -> tuple[np.ndarray, int]:
    """A zero ``(h, k + g)`` work array whose rows end in ``g`` guard words, ``64 g >= reach``.

    In the flat array the guard words separate each row's ``k`` words from the next row's, so a
    sub-word move may run over the whole array and carry across rows (``fix=False``): a bit never
    travels more than ``reach`` pixels from the pixel it came from, which leaves it inside its own
    row's words or guard, never in the next row's words. The guards are read back as nothing."""
    g = max(1, -(-reach // 64))
    return np.zeros((h, k + g), _U64), g


def _grow_x(x: np.ndarray, have: int, want: int, t1: np.ndarray, t2: np.ndarray, t3: np.ndarray) -> None:
    """In place: ``x``, the rows dilation of some mask by ``[-have, have]``, becomes its dilation by
    ``[-want, want]``. Doubling: when ``x`` covers ``[-h, h]``, ``x | move(x, k) | move(x, -k)``
    covers ``[-h - k, h + k]``; with ``k <= h + 1`` each new pixel comes from one inside the
    frame, so the zero fill outside it is exact. ``x`` must carry guard words (:func:`_guarded`)."""
    h = have
    while h < want:
        k = min(h + 1, want - h)
        _move_x(x, k, t1, t3, fix=False)
        _move_x(x, -k, t2, t3, fix=False)
        np.bitwise_or(x, t1, out=x)
        np.bitwise_or(x, t2, out=x)
        h += k


def _stack(arrays: list[np.ndarray], gap: int, edge: int, reach: int) -> tuple[np.ndarray, list[int], int]:
    """The packed ``arrays`` (one word count ``k``) one above the other in a guarded work array
    (:func:`_guarded`), ``gap`` background rows between them and ``edge`` above and below; returns
    it, each array's first row in it, and ``k``."""
    k = arrays[0].shape[1]
    if any(a.shape[1] != k for a in arrays):
        raise ValueError(f"packed arrays of one width expected, got {[a.shape for a in arrays]}")
    h = 2 * edge + sum(a.shape[0] for a in arrays) + gap * (len(arrays) - 1)
    work, _ = _guarded(h, k, reach)
    starts, y = [], edge
    for a in arrays:
        work[y : y + a.shape[0], :k] = a
        starts.append(y)
        y += a.shape[0] + gap
    return work, starts, k


def erode_square(a: np.ndarray, half: int) -> np.ndarray:
    """Erosion by the ``(2 half + 1)`` square, background outside the frame (so the frame's edge
    erodes like the zero-padded mask of the Boundary IoU reference). See :func:`erode_square_many`."""
    return erode_square_many([a], half)[0]


def erode_square_many(arrays: list[np.ndarray], half: int) -> list[np.ndarray]:
    """:func:`erode_square` of each packed array (one word count), run as one pass over all of them
    stacked with a background row between: on arrays this size a pass costs little more than its
    call, so sharing the passes halves the time for two.

    For AND a run that reaches outside is 0 whichever way it is read, so each axis is one forward
    run of ``2 half + 1`` by doubling, moved back by ``half``: along columns on row slices, along
    rows by bit moves, the latter only on the words and rows the column pass left nonzero (zero all
    around them, so the cut is exact and no run leaves it).

    Raises:
        ValueError: the arrays differ in word count.
    """
    if half == 0:
        return [np.array(a, copy=True) for a in arrays]
    length = 2 * half + 1
    work, starts, k = _stack(arrays, gap=1, edge=0, reach=length)
    h = work.shape[0]
    out = np.zeros_like(work)
    if length > h:
        return [out[y : y + a.shape[0], :k] for y, a in zip(starts, arrays)]
    # columns: acc[y] = AND work[y .. y + span - 1], kept for the rows where the run fits (ping-pong)
    acc, spare = work, np.empty_like(work)
    n, span = h, 1
    while span < length:
        k2 = min(span, length - span)
        np.bitwise_and(acc[: n - k2], acc[k2:n], out=spare[: n - k2])
        acc, spare, n, span = spare, acc, n - k2, span + k2
    live_rows = np.flatnonzero(acc[:n].any(axis=1))
    if live_rows.size:
        live_words = np.flatnonzero(acc[:n].any(axis=0))
        r0, r1, w0, w1 = live_rows[0], live_rows[-1] + 1, live_words[0], live_words[-1] + 1
        core, _ = _guarded(r1 - r0, w1 - w0, length)
        core[:, : w1 - w0] = acc[r0:r1, w0:w1]
        t1, t2 = np.empty_like(core), np.empty_like(core)
        span = 1
        while span < length:  # rows: core[x] = AND core[x .. x + span - 1]; the zero guards end every run
            k2 = min(span, length - span)
            np.bitwise_and(core, _move_x(core, -k2, t1, t2, fix=False), out=core)
            span += k2
        out[half + r0 : half + r1, w0:w1] = _move_x(core, half, t1, t2, fix=False)[:, : w1 - w0]
    return [out[y : y + a.shape[0], :k] for y, a in zip(starts, arrays)]


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
    """Dilation by the Euclidean disk ``{dy^2 + dx^2 <= r^2}`` (``skimage.morphology.disk(r)``),
    background outside the frame. See :func:`dilate_disk_many`.

    Raises:
        ValueError: ``r < 0``.
    """
    return dilate_disk_many([a], r)[0]


def dilate_disk_many(arrays: list[np.ndarray], r: int) -> list[np.ndarray]:
    """:func:`dilate_disk` of each packed array (one word count), run as one pass over all of them
    stacked with ``r`` background rows between, above and below (no run needs an edge case, and
    none reaches a neighbour).

    The disk's rows of one half-width ``w`` are a contiguous range ``lo <= |dy| <= hi``. Widths are
    taken in increasing order, each one incremental row dilation of the previous; a column run of
    ``hi - lo + 1`` rows of it is ORed in moved by ``-hi`` and by ``lo`` (rows above and below).

    Raises:
        ValueError: ``r < 0``, or the arrays differ in word count.
    """
    if r < 0:
        raise ValueError(f"disk radius must be >= 0, got {r}")
    widths = disk_widths(r)
    current, starts, k = _stack(arrays, gap=r, edge=r, reach=r)
    out = np.zeros_like(current)
    t1, t2, t3 = np.empty_like(current), np.empty_like(current), np.empty_like(current)
    at = 0
    for w in sorted(set(widths)):
        _grow_x(current, at, w, t1, t2, t3)
        at = w
        if widths[0] == w:
            out |= current
        rows = [dy for dy in range(1, r + 1) if widths[dy] == w]
        if rows:
            lo, hi = rows[0], rows[-1]
            v = _or_run_y(current, hi - lo + 1, t1, t2)
            out[hi:] |= v[: len(out) - hi]  # out[y] |= current[y - hi .. y - lo]
            out[: len(v) - lo] |= v[lo:]  # out[y] |= current[y + lo .. y + hi]
    return [out[y : y + a.shape[0], :k] for y, a in zip(starts, arrays)]


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
