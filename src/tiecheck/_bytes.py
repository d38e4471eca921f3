"""Element-level checks on raw tensor bytes: is every element the same, how many are NaN or Inf.

Used by the content reader (:mod:`tiecheck.content`) on each chunk it reads. Small blocks are checked in
plain Python; large ones with numpy, imported on first use, so a scan that reads only headers and samples
never pays for it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tiecheck.formats.dtypes import DTYPES

if TYPE_CHECKING:
    from types import ModuleType


def numpy_module() -> ModuleType:
    """numpy, imported on the first full read: a scan that only reads headers and samples never pays for it."""
    import numpy

    return numpy


CHUNK = 8 << 20
"""Bytes per sequential read; with one worker per core this bounds the mapped working set."""


_WIDTHS = (1, 2, 4, 8)
SMALL = 64 << 10
"""Up to this many bytes (samples, small tensors), constancy is checked without numpy."""


def _uint(width: int) -> Any:
    return numpy_module().dtype(f"<u{width}")


@dataclass(frozen=True)
class _FloatBits:
    """How a floating dtype encodes non-finite values, as bit patterns of its magnitude."""

    mask: int
    """Clears the sign bit."""
    inf: int | None
    nan_lo: int
    nan_hi: int


FLOAT_BITS = {
    "BF16": _FloatBits(0x7FFF, 0x7F80, 0x7F81, 0x7FFF),
    "F16": _FloatBits(0x7FFF, 0x7C00, 0x7C01, 0x7FFF),
    "F32": _FloatBits(0x7FFF_FFFF, 0x7F80_0000, 0x7F80_0001, 0x7FFF_FFFF),
    "F64": _FloatBits(0x7FFF_FFFF_FFFF_FFFF, 0x7FF0 << 48, (0x7FF0 << 48) + 1, 0x7FFF_FFFF_FFFF_FFFF),
    "F8_E5M2": _FloatBits(0x7F, 0x7C, 0x7D, 0x7F),
    "F8_E4M3": _FloatBits(0x7F, None, 0x7F, 0x7F),
    "F8_E8M0": _FloatBits(0xFF, None, 0xFF, 0xFF),
    "F8_E4M3FNUZ": _FloatBits(0xFF, None, 0x80, 0x80),
    "F8_E5M2FNUZ": _FloatBits(0xFF, None, 0x80, 0x80),
}
"""Dtypes whose NaN/Inf tiecheck counts. Sub-byte floats (F4, F6) are not decoded."""


def element_width(dtype: str) -> int | None:
    """Bytes per element, or None for sub-byte dtypes (no element-level checks)."""
    bits = DTYPES[dtype].bits
    return bits // 8 if bits % 8 == 0 and bits // 8 in _WIDTHS else None


def _sign_clear(dtype: str) -> int | None:
    bits = FLOAT_BITS.get(dtype)
    return bits.mask if bits is not None and bits.mask != (1 << (8 * (element_width(dtype) or 1))) - 1 else None


def constant_pattern(data: memoryview | bytes | bytearray, dtype: str) -> bytes | None:
    """The element every element of ``data`` equals bitwise, or None.

    +0 and -0 count as the same (zero): a merge that multiplies by zero leaves both signs. NaNs count
    by bit pattern, so an all-NaN tensor with one payload is constant (and TC204 reports it too).
    """
    width = element_width(dtype)
    if width is None or len(data) < width or len(data) % width:
        return None
    clear = _sign_clear(dtype)
    zero = bytes(width)
    if len(data) <= SMALL:
        raw = bytes(data)
        first_raw = raw[:width]
        if raw == first_raw * (len(raw) // width):
            is_zero = clear is not None and int.from_bytes(first_raw, "little") & clear == 0
            return zero if is_zero else first_raw
        if clear is None or int.from_bytes(first_raw, "little") & clear:
            return None  # not all equal, and not a mix of signed zeros
    if not _edges_may_be_constant(data, width, clear):
        return None  # most data: told by its first and last elements, without importing numpy
    np = numpy_module()
    values = np.frombuffer(data, dtype=_uint(width))
    first = values[0]
    head = values[:64]
    if bool((head == first).all()) and bool((values == first).all()):
        is_zero = clear is not None and int(first) & clear == 0
        return zero if is_zero else bytes(values[:1].tobytes())  # -0 reads as +0, chunk after chunk
    if clear is not None and int(first) & clear == 0:
        mask = values.dtype.type(clear)
        if bool((head & mask == 0).all()) and bool((values & mask == 0).all()):
            return zero
    return None


EDGE = 64
"""Elements at each end of the data that :func:`constant_pattern` checks before looking at all of them."""


def _edges_may_be_constant(data: memoryview | bytes | bytearray, width: int, clear: int | None) -> bool:
    """False when the first and last :data:`EDGE` elements already show ``data`` is not constant.

    A necessary condition of what :func:`constant_pattern` finds: every element equal to the
    first, or (a float starting with a signed zero) every element a signed zero.
    """
    span = min(len(data), EDGE * width)
    edges = (bytes(data[:span]), bytes(data[len(data) - span :]))
    first = edges[0][:width]
    if all(edge == first * (span // width) for edge in edges):
        return True
    if clear is None or int.from_bytes(first, "little") & clear:
        return False
    return all(
        int.from_bytes(edge[i : i + width], "little") & clear == 0 for edge in edges for i in range(0, span, width)
    )


_local = threading.local()


def _scratch(nbytes: int) -> Any:
    """A reusable per-thread byte buffer of at least ``nbytes`` (sliced to exactly that)."""
    buffer = getattr(_local, "buffer", None)
    if buffer is None or len(buffer) < nbytes:
        buffer = _local.buffer = numpy_module().empty(max(nbytes, CHUNK), dtype="u1")
    return buffer[:nbytes]


def count_nonfinite(data: memoryview | bytes | bytearray, dtype: str) -> tuple[int, int] | None:
    """(NaN count, Inf count) from the raw bits, without converting to float32; None if not decodable."""
    bits = FLOAT_BITS.get(dtype)
    width = element_width(dtype)
    if bits is None or width is None or len(data) % width:
        return None
    np = numpy_module()
    values = np.frombuffer(data, dtype=_uint(width))
    if not len(values):
        return 0, 0
    kind = values.dtype.type
    signed = bits.mask != (1 << (8 * width)) - 1
    lowest = bits.nan_lo if bits.inf is None else min(bits.inf, bits.nan_lo)
    if bits.nan_hi == bits.mask:
        # Non-finite iff magnitude >= lowest. Two read-only reductions, no temporary (2x faster than a
        # mask then max): positives show in the signed maximum, negatives in the unsigned one.
        if signed:
            sign = bits.mask + 1
            finite = int(values.view(f"<i{width}").max()) < lowest and int(values.max()) < sign | lowest
        else:
            finite = int(values.max()) < lowest
        if finite:
            return 0, 0  # the common case
    if signed:
        # into a per-thread scratch buffer: a fresh 8 MB array per chunk costs more in page faults than the math
        magnitude = np.bitwise_and(values, kind(bits.mask), out=_scratch(values.nbytes).view(values.dtype))
    else:
        magnitude = values
    nan = int(np.count_nonzero((magnitude >= kind(bits.nan_lo)) & (magnitude <= kind(bits.nan_hi))))
    inf = int(np.count_nonzero(magnitude == kind(bits.inf))) if bits.inf is not None else 0
    return nan, inf
