#!/usr/bin/env python3
"""Hostile-input benchmark: time and peak memory of ``tiecheck scan`` on each input of the bounds tests.

Builds every input of ``tests/test_hostile_bounds.py`` (nested keys, 20,000-bit integers, 200,000-
dimension shapes, zip bombs, opcode floods, a 100 MB legacy pickle) plus a 2,000-shard checkpoint,
and scans each in a fresh process, reporting the finding, the scan's own seconds and the process's
peak RSS (VmHWM). One run on one machine; the tests assert the bounds, this prints the numbers.

    python benchmarks/bench_hostile.py [--dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]

import test_hostile_bounds as bounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to build the inputs (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"{'input':36} {'finding':8} {'seconds':>8} {'peak MB':>8}")
        for name, build in sorted(bounds.CASES.items()):
            folder = Path(tmp) / name
            folder.mkdir()
            build(folder)
            result = bounds.scan_in_child(folder)
            code = next((c for c in result["codes"] if c in ("TC001", "TC401", "TC403")), "-")  # type: ignore[attr-defined]
            print(f"{name:36} {code:8} {result['seconds']:8.2f} {result['megabytes']:8.0f}")
            for path in folder.iterdir():
                path.unlink()


if __name__ == "__main__":
    main()
