"""Coalescing byte ranges into few reads, for stores where each read is a request (a Hub repo)."""

from __future__ import annotations

GAP = 64 << 10
"""Remote stores: sampled blocks (of any tensors of one file) less than this apart are read by one range
request. A request costs a round trip (tens of milliseconds to a Hub) and a kilobyte of headers; 64 KiB
arrive in a few milliseconds even at 10 MB/s, so merging never costs time, and each merge adds at most
64 KiB, which keeps the bytes of a scan a small multiple of the samples themselves."""
RUN = 1 << 20
"""...and one such request reads at most this many bytes (what a sampling worker holds at once)."""


def coalesce(blocks: list[tuple[int, int]], gap: int = GAP, limit: int = RUN) -> list[tuple[int, int, int]]:
    """Runs ``(start, end, count)`` that read the (offset, length) ``blocks``, sorted by offset: the next
    ``count`` blocks lie wholly in ``[start, end)``. A block joins the run before it when less than ``gap``
    bytes lie between them and the run stays within ``limit`` bytes (a single longer block is a run alone)."""
    runs: list[tuple[int, int, int]] = []
    for offset, length in blocks:
        end = offset + length
        if runs:
            start, last, count = runs[-1]
            if offset - last < gap and max(end, last) - start <= limit:
                runs[-1] = (start, max(end, last), count + 1)
                continue
        runs.append((offset, end, 1))
    return runs
