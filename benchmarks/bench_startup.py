#!/usr/bin/env python3
"""Start-up: wall time of short tiecheck commands against ``python -c pass``.

Target (issue 12): ``tiecheck --version`` and ``tiecheck scan fixtures/gemma2-merge-duplicated-head``
in under 150 ms of wall time. Each command runs ``--runs`` times in a fresh process, interleaved
(so a burst of load on a shared machine hits every command alike); the table gives the median and
the minimum, the CPU time (user + system, which load on a shared machine inflates far less than the
wall time), and the ratio to the interpreter's own start-up (``python -c pass``), which
is what is left when nothing is imported. ``--importtime`` prints the slowest imports of each command.
Bytecode is cached (under ``--pycache``, outside the tree), as for an installed package: with
``PYTHONDONTWRITEBYTECODE`` set, every run would compile tiecheck's sources again.

    PYTHONPATH=src python benchmarks/bench_startup.py [--runs 21] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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


def _once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
    parser.add_argument("--pycache", default=str(Path(tempfile.gettempdir()) / "tiecheck-bench-pycache"))
    args = parser.parse_args()
    # Bytecode cached, as in an installed package (pip compiles it); kept out of the source tree.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "100", "PYTHONPYCACHEPREFIX": args.pycache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for command in COMMANDS.values():  # warm the page cache and the bytecode caches
        _once(command, env)
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    load = os.getloadavg()[0]
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            wall, cpu = _once(command, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base = statistics.median(walls["python -c pass"])
    load = max(load, os.getloadavg()[0])
    print(f"{args.runs} runs each, interleaved; {os.cpu_count()} CPUs, load average up to {load:.2f}")
    print("(CPU = user + system time of the process: about what the wall time is on an idle machine)")
    print("| command | wall median (ms) | wall min (ms) | CPU median (ms) | wall / python -c pass |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in walls.items():
        median = statistics.median(runs)
        print(
            f"| `{name}` | {median * 1000:.0f} | {min(runs) * 1000:.0f} | "
            f"{statistics.median(cpus[name]) * 1000:.0f} | {median / base:.1f}x |"
        )
    if args.importtime:
        for name, command in COMMANDS.items():
            print(f"\n{name}: slowest top-level imports (cumulative ms)")
            for micros, module in _slowest_imports(command, env):
                print(f"  {micros / 1000:7.1f}  {module}")


if __name__ == "__main__":
    main()
