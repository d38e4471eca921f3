#!/usr/bin/env python3
"""Start-up: wall time of short tiecheck commands against ``python -c pass``.

Target (issue 12): ``tiecheck --version`` and ``tiecheck scan fixtures/gemma2-merge-duplicated-head``
in under 150 ms of wall time. Each command runs ``--runs`` times in a fresh process, interleaved
(so a burst of load on a shared machine hits every command alike); the table gives the median and
the minimum, absolute and as a ratio of the interpreter's own start-up (``python -c pass``), which
is what is left when nothing is imported. ``--importtime`` prints the slowest imports of each command.

    PYTHONPATH=src python benchmarks/bench_startup.py [--runs 21] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "gemma2-merge-duplicated-head"

COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "import tiecheck": ["-c", "import tiecheck"],
    "tiecheck --version": ["-m", "tiecheck", "--version"],
    "tiecheck scan <fixture>": ["-m", "tiecheck", "scan", str(FIXTURE)],
    "tiecheck scan -f json <fixture>": ["-m", "tiecheck", "scan", "-f", "json", str(FIXTURE)],
}


def _once(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _slowest_imports(args: list[str], env: dict[str, str], top: int = 8) -> list[tuple[int, str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], env=env, capture_output=True, text=True, check=False
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line[len("import time:") :].split("|")
            if cumulative.strip().isdigit() and not name.startswith("   "):  # top-level imports only
                rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--importtime", action="store_true", help="list each command's slowest top-level imports")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "100"}
    for command in COMMANDS.values():  # warm the page cache and the bytecode caches
        _once(command, env)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            times[name].append(_once(command, env))
    base = statistics.median(times["python -c pass"])
    print(f"{args.runs} runs each, interleaved; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print("| command | median (ms) | min (ms) | median / python -c pass | minus python -c pass (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(
            f"| `{name}` | {median * 1000:.0f} | {min(runs) * 1000:.0f} | {median / base:.1f}x | "
            f"{(median - base) * 1000:.0f} |"
        )
    if args.importtime:
        for name, command in COMMANDS.items():
            print(f"\n{name}: slowest top-level imports (cumulative ms)")
            for micros, module in _slowest_imports(command, env):
                print(f"  {micros / 1000:7.1f}  {module}")


if __name__ == "__main__":
    main()
