"""What the content reader keeps about a tensor while its bytes go by: hashes, constancy, counts.

A fingerprint (:class:`Fingerprint`) is built from a few sampled blocks; an :class:`Accumulator` from a
full read, chunk by chunk (or a hole of a sparse file, without reading it). Both are fed by
:class:`tiecheck.content.ContentReader`, which decides what to read.
"""

from __future__ import annotations

from dataclasses import dataclass

import xxhash

from tiecheck._bytes import CHUNK, FLOAT_BITS, constant_pattern, count_nonfinite, element_width
from tiecheck.checkpoint import TensorRecord

SAMPLE = 4096
"""Bytes per sampled block of a fingerprint."""
SAMPLES = 4
"""Sampled blocks per fingerprint: first, last, and evenly spaced between."""
HASH_NAME = "xxh3_128"


@dataclass(frozen=True)
class TensorContent:
    """What one full read of a tensor established."""

    hash: str
    """``xxh3_128:<hex>`` of the tensor's bytes."""
    constant: bytes | None
    """The one element bit pattern every element has (little-endian), or None. Mixed +0/-0 counts as +0."""
    nan: int | None = None
    """NaN elements; None when not counted (not ``--deep``, or not a floating dtype tiecheck can decode)."""
    inf: int | None = None
    ends_in_zero: bool = True
    """The tensor's last byte is zero (where a cut transfer's zeros would show)."""


_ZEROS = memoryview(bytes(CHUNK))


class Accumulator:
    """Running state of one tensor's full read: hash, constancy, non-finite counts."""

    def __init__(self, tensor: TensorRecord, deep: bool) -> None:
        self.dtype = tensor.dtype
        self.hasher = xxhash.xxh3_128()
        self.check_constant = tensor.numel > 1 and element_width(tensor.dtype) is not None
        self.pattern: bytes | None = None
        self.count = deep and tensor.dtype in FLOAT_BITS
        self.nan = self.inf = 0
        self.ends_in_zero = True

    def feed(self, chunk: memoryview | bytes | bytearray) -> None:
        self.hasher.update(chunk)
        if len(chunk):
            self.ends_in_zero = chunk[-1] == 0
        if self.check_constant:
            pattern = constant_pattern(chunk, self.dtype)
            if pattern is None or (self.pattern is not None and pattern != self.pattern):
                self.check_constant, self.pattern = False, None
            else:
                self.pattern = pattern
        if self.count:
            counts = count_nonfinite(chunk, self.dtype)
            if counts is None:
                self.count = False
            else:
                self.nan += counts[0]
                self.inf += counts[1]

    def feed_zeros(self, length: int) -> None:
        """``length`` zero bytes (a hole of a sparse file), without reading or allocating them."""
        self.ends_in_zero = self.ends_in_zero if length == 0 else True
        for start in range(0, length, len(_ZEROS)):
            self.hasher.update(_ZEROS[: min(len(_ZEROS), length - start)])
        if self.check_constant:
            width = element_width(self.dtype) or 1
            pattern = constant_pattern(_ZEROS[: width * 16], self.dtype)  # what any run of zeros gives
            if pattern is None or (self.pattern is not None and pattern != self.pattern):
                self.check_constant, self.pattern = False, None
            else:
                self.pattern = pattern

    def result(self) -> TensorContent:
        return TensorContent(
            hash=f"{HASH_NAME}:{self.hasher.hexdigest()}",
            constant=self.pattern if self.check_constant else None,
            nan=self.nan if self.count else None,
            inf=self.inf if self.count else None,
            ends_in_zero=self.ends_in_zero,
        )


def sample_spans(tensor: TensorRecord) -> list[tuple[int, int]]:
    """Relative (offset, length) of the fingerprint's blocks: the whole tensor when it is small."""
    n = tensor.nbytes
    if n <= SAMPLES * SAMPLE:
        return [(0, n)]
    width = element_width(tensor.dtype) or 1
    spans = []
    for i in range(SAMPLES):
        offset = (n - SAMPLE) * i // (SAMPLES - 1)
        spans.append((offset - offset % width, SAMPLE))
    return spans


class Fingerprint:
    """One tensor's fingerprint as its sampled blocks arrive, in order."""

    def __init__(self, tensor: TensorRecord) -> None:
        self.hasher = xxhash.xxh3_128()
        self.dtype = tensor.dtype
        self.maybe_constant = tensor.numel > 1 and element_width(tensor.dtype) is not None
        self.pattern: bytes | None = None
        self.ends_in_zero = True
        """The last block's last byte is zero (the last sample ends where the tensor ends)."""

    def feed(self, block: memoryview | bytes) -> None:
        self.hasher.update(block)
        self.ends_in_zero = len(block) > 0 and block[-1] == 0
        if self.maybe_constant:
            p = constant_pattern(block, self.dtype)
            self.maybe_constant = p is not None and (self.pattern is None or p == self.pattern)
            self.pattern = p


@dataclass(frozen=True)
class Sample:
    fingerprint: str
    maybe_constant: bool
    full: TensorContent | None
    """Set when the samples cover the whole tensor."""
    ends_in_zero: bool = True
    """The tensor's last byte (the last sample's) is zero; when not, no read can find zeros at its end."""
