"""Run the every-architecture sweep and write its results.

    PYTHONPATH=src python tests/sweep/run_sweep.py --md docs/architecture-sweep.md --json sweep.json

The tiecheck judged is the one importable (PYTHONPATH); the Python running this needs torch and transformers
to build the tiny checkpoints (cached under $TIECHECK_SWEEP_CACHE or the temp dir, keyed by transformers version
and the builder's source). ``--types`` limits the sweep to some model types.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
import _report
from expected_failures import EXPECTED_FAILURES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--md", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--types", nargs="*", default=None)
    parser.add_argument("--cache", type=Path, default=None, help="build folder (default: keyed cache)")
    parser.add_argument("--label", default=None, help="how the results name the tiecheck judged (default: its path)")
    parser.add_argument("--no-build", action="store_true", help="judge only what the cache holds already")
    args = parser.parse_args(argv)
    import tiecheck

    start = time.monotonic()
    results = _harness.run(args.types, args.cache, build=not args.no_build)
    label = args.label or str(Path(tiecheck.__file__).resolve().parent.parent)
    data = _report.write(results, args.md, args.json, label, time.monotonic() - start, EXPECTED_FAILURES)
    for key, value in data["totals"].items():
        print(f"{key:40} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
