#!/usr/bin/env python3
"""Headers-only scan of a checkpoint with many shards.

Target (issue #2): a headers-only scan of a 1,000-shard checkpoint in under a second. The default
scan also fingerprints every tensor for the content rules (4 sampled blocks each, issue #4);
`--ignore TC202,TC203,TC205` turns those off and reads headers only (plus any tie pair to compare).
Compared in one run with what a user would otherwise script to list a checkpoint's tensors: open
every shard with `safetensors.safe_open` and read its keys (the reference reader, headers only too).
Each method runs in its own process so its peak RSS is its own.

    python benchmarks/bench_headers.py [--shards 1000] [--tensors-per-shard 12]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tiecheck.formats.safetensors import write_file

LISTING = r"""
import json, sys
from pathlib import Path
from safetensors import safe_open
folder = Path(sys.argv[1])
index = json.loads((folder / "model.safetensors.index.json").read_text())
names = 0
for shard in sorted(set(index["weight_map"].values())):
    with safe_open(folder / shard, "numpy") as f:
        names += len(list(f.keys()))
print(names)
"""


def generate(folder: Path, shards: int, per_shard: int) -> None:
    weight_map: dict[str, str] = {}
    total = 0
    for s in range(1, shards + 1):
        name = f"model-{s:05d}-of-{shards:05d}.safetensors"
        tensors = {}
        for i in range(per_shard):
            tensor = f"model.layers.{s}.block.{i}.weight"
            tensors[tensor] = ("BF16", (16, 16), os.urandom(512))
            weight_map[tensor] = name
            total += 512
        write_file(folder / name, tensors, {"format": "pt"})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))


def timed(cmd: list[str], repeat: int) -> tuple[float, float]:
    """Best wall time of ``repeat`` runs and the peak RSS (MB) of the children."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return best, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--tensors-per-shard", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(folder, args.shards, args.tensors_per_shard)
        headers_only = "rules=frozenset(tiecheck.rules.RULES) - {'TC202', 'TC203'}"
        in_process = {}
        for label, kwargs in (("headers only", headers_only), ("default", "")):
            code = "import time, tiecheck, tiecheck.rules; t = time.perf_counter(); "
            code += f"tiecheck.scan({str(folder)!r}, {kwargs})"
            run = [sys.executable, "-c", code + "; print(time.perf_counter() - t)"]
            in_process[label] = float(subprocess.run(run, capture_output=True, text=True, check=True).stdout)
        cli = [sys.executable, "-m", "tiecheck", "scan", str(folder), "--format", "json"]
        rows = [
            ("tiecheck scan --ignore TC202,TC203,TC205 (headers only)", [*cli, "--ignore", "TC202,TC203,TC205"]),
            ("tiecheck scan (default: + content fingerprints)", cli),
            ("safe_open + keys() per shard", [sys.executable, "-c", LISTING, str(folder)]),
            ("python startup only", [sys.executable, "-c", "import tiecheck.cli"]),
        ]
        results = []
        for label, cmd in rows:
            # A fresh RUSAGE_CHILDREN reading needs a fresh parent; run each method through a tiny launcher.
            launcher = [sys.executable, __file__, "--measure", json.dumps(cmd), str(args.repeat)]
            out = subprocess.run(launcher, capture_output=True, text=True, check=True).stdout
            wall, rss = json.loads(out)
            results.append((label, wall, rss))
        print(f"{args.shards} shards, {args.shards * args.tensors_per_shard} tensors; best of {args.repeat}")
        for label, seconds in in_process.items():
            print(f"scan() inside Python, {label}: {seconds:.3f} s")
        print("| method (whole process) | wall time (s) | peak RSS (MB) | ratio to the first |")
        print("|---|---:|---:|---:|")
        base = results[0][1]
        for label, wall, rss in results:
            print(f"| {label} | {wall:.3f} | {rss:.0f} | {wall / base:.2f}x |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        wall, rss = timed(json.loads(sys.argv[2]), int(sys.argv[3]))
        print(json.dumps([wall, rss]))
    else:
        main()
