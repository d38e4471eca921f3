#!/usr/bin/env python3
"""Content scan benchmark: tiecheck against what a user would otherwise script, and against the disk.

Generates a realistic checkpoint (default 4 GB: 4 safetensors shards of a Llama-shaped bfloat16 model,
with a redundant copy of the tied head), then runs, each in its own process:

1. ``tiecheck scan`` (default: headers, fingerprints, and full reads only of what may be duplicated),
2. ``tiecheck scan --deep`` (every tensor read once: hash, NaN/Inf, constants),
3. the script a user would write: ``safe_open`` each shard, load every tensor, sha256 it, group digests,
4. the physical limit for ``--deep``: ``cat`` every shard to /dev/null.

It reports wall time, bytes read and peak RSS (``wait4`` rusage of the child) per method, cold (page
cache dropped before each run, when permitted) and warm. Ratios come from one run on one machine.

    python benchmarks/bench_content.py [--size-gb 4] [--repeat 3] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tiecheck.formats.safetensors import encode_header

VOCAB, HIDDEN, FFN, KV = 32000, 2560, 6912, 640
SHARDS = 4
POOL_BYTES = 64 << 20
WRITE_CHUNK = 16 << 20

BASELINE = r"""
import hashlib, sys, glob
from collections import defaultdict
import torch
from safetensors import safe_open

groups = defaultdict(list)
for path in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    with safe_open(path, framework="pt") as f:
        for name in f.keys():
            tensor = f.get_tensor(name)
            digest = hashlib.sha256(tensor.contiguous().view(torch.uint8).numpy()).hexdigest()
            groups[digest].append(name)
duplicates = [names for names in groups.values() if len(names) > 1]
print(duplicates)
"""


LIBRARY = r"""
import json, sys, time
import tiecheck
start = time.perf_counter()
report = tiecheck.scan(sys.argv[1], deep=sys.argv[2] == "deep")
print(json.dumps({"elapsed": time.perf_counter() - start, "summary": {"bytes_read": report.bytes_read}}))
"""
"""The scan as a library user (or a long-running service) pays it: interpreter start and imports excluded."""


def layer_shapes(i: int) -> list[tuple[str, tuple[int, ...]]]:
    p = f"model.layers.{i}."
    return [
        (p + "input_layernorm.weight", (HIDDEN,)),
        (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
        (p + "self_attn.k_proj.weight", (KV, HIDDEN)),
        (p + "self_attn.v_proj.weight", (KV, HIDDEN)),
        (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
        (p + "post_attention_layernorm.weight", (HIDDEN,)),
        (p + "mlp.gate_proj.weight", (FFN, HIDDEN)),
        (p + "mlp.up_proj.weight", (FFN, HIDDEN)),
        (p + "mlp.down_proj.weight", (HIDDEN, FFN)),
    ]


def nbytes(shape: tuple[int, ...]) -> int:
    count = 1
    for d in shape:
        count *= d
    return 2 * count


def model_shapes(size: int) -> list[tuple[str, tuple[int, ...]]]:
    embed = (VOCAB, HIDDEN)
    per_layer = sum(nbytes(s) for _, s in layer_shapes(0))
    layers = max(1, round((size - 2 * nbytes(embed)) / per_layer))
    shapes = [("model.embed_tokens.weight", embed)]
    for i in range(layers):
        shapes.extend(layer_shapes(i))
    shapes.append(("model.norm.weight", (HIDDEN,)))
    shapes.append(("lm_head.weight", embed))  # redundant: the config ties it to the embedding
    return shapes


def generate(folder: Path, size: int) -> None:
    """Stream a checkpoint to disk; memory stays at the 64 MB value pool whatever the size."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    floats = (rng.standard_normal(POOL_BYTES // 2, dtype=np.float32) * 0.02).view(np.uint32)
    pool = (floats >> 16).astype(np.uint16).tobytes()  # valid bfloat16 values, no NaN/Inf
    norms = ((1.0 + rng.standard_normal(HIDDEN, dtype=np.float32) * 0.05).view(np.uint32) >> 16).astype(np.uint16)
    shapes = model_shapes(size)
    ordinals = {name: i for i, (name, _) in enumerate(shapes)}
    total = sum(nbytes(s) for _, s in shapes)
    target = total / SHARDS
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    filled = 0
    for name, shape in shapes:
        if filled >= target * len(shards) and len(shards) < SHARDS:
            shards.append([])
        shards[-1].append((name, shape))
        filled += nbytes(shape)
    weight_map = {}
    for k, shard in enumerate(shards, 1):
        file = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        layout = {name: ("BF16", shape, nbytes(shape)) for name, shape in shard}
        with open(folder / file, "wb") as out:
            out.write(encode_header(layout, {"format": "pt"}))
            for name, shape in shard:
                weight_map[name] = file
                if name.endswith("norm.weight"):
                    # distinct per layer: rotate the trained-looking norm values by a per-tensor amount
                    out.write(np.roll(norms, len(weight_map)).tobytes())
                    continue
                # every tensor starts at its own place in the pool (the head repeats the embedding's)
                ordinal = ordinals["model.embed_tokens.weight" if name == "lm_head.weight" else name]
                _write_pattern(out, pool, (ordinal * 8198) % POOL_BYTES, nbytes(shape))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": sum(1 for n, _ in shapes if n.endswith("q_proj.weight")),
        "vocab_size": VOCAB,
        "tie_word_embeddings": True,
        "dtype": "bfloat16",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def _write_pattern(out: object, pool: bytes, offset: int, length: int) -> None:
    view = memoryview(pool)
    written = 0
    while written < length:
        start = (offset + written) % len(pool)
        step = min(length - written, len(pool) - start, WRITE_CHUNK)
        out.write(view[start : start + step])  # type: ignore[attr-defined]
        written += step


@dataclass
class Result:
    method: str
    wall: float
    maxrss: int
    disk_read: int
    bytes_read: int
    output: str
    spread: tuple[float, float] | None = None
    """Fastest and slowest wall time over the repeats."""


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def run(method: str, argv: list[str], bytes_read: int | None) -> Result:
    # GNU time reports the child's own peak RSS (KB) and file system inputs (512-byte blocks).
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M %I", "-o", stats.name, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        maxrss_kb, blocks = (int(v) for v in stats.read().split()[-2:])
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{method} failed with exit code {proc.returncode}")
    if bytes_read is None:  # tiecheck reports what it read
        document = json.loads(proc.stdout)
        document = document["reports"][0] if "reports" in document else document  # the CLI's JSON document
        bytes_read = document["summary"]["bytes_read"]
        wall = document.get("elapsed", wall)
    return Result(method, wall, maxrss_kb * 1024, blocks * 512, bytes_read, proc.stdout)


def methods(folder: Path, shard_bytes: int) -> list[tuple[str, list[str], int | None]]:
    tiecheck = [sys.executable, "-m", "tiecheck", "scan", str(folder), "-f", "json", "-q"]
    shards = sorted(str(p) for p in folder.glob("*.safetensors"))
    return [
        ("tiecheck scan", tiecheck, None),
        ("tiecheck scan --deep", [*tiecheck, "--deep"], None),
        ("`tiecheck.scan()` (library call)", [sys.executable, "-c", LIBRARY, str(folder), ""], None),
        ("`tiecheck.scan(deep=True)` (library call)", [sys.executable, "-c", LIBRARY, str(folder), "deep"], None),
        ("safe_open + sha256 (user script)", [sys.executable, "-c", BASELINE, str(folder)], shard_bytes),
        ("cat shards > /dev/null", ["sh", "-c", 'cat "$@" > /dev/null', "cat", *shards], shard_bytes),
    ]


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def median(repeats: list[list[Result]]) -> list[Result]:
    """Per method, the run with the median wall time."""
    if not repeats:
        return []
    chosen = []
    for runs in zip(*repeats, strict=True):
        ordered = sorted(runs, key=lambda r: r.wall)
        middle = ordered[len(ordered) // 2]
        middle.spread = (ordered[0].wall, ordered[-1].wall)
        chosen.append(middle)
    return chosen


def table(title: str, results: list[Result], size: int) -> str:
    base = next(r.wall for r in results if r.method.startswith("safe_open"))
    lines = [
        f"**{title}**",
        "",
        "| method | wall time | (fastest-slowest) | vs user script | bytes read | disk reads | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        spread = f"{r.spread[0]:.2f}-{r.spread[1]:.2f}" if r.spread else ""
        lines.append(
            f"| {r.method} | {r.wall:.2f} s | {spread} | {base / r.wall:.1f}x | {fmt_bytes(r.bytes_read)} "
            f"({r.bytes_read / size:.1%}) | {fmt_bytes(r.disk_read)} | {fmt_bytes(r.maxrss)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=4.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to generate (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoint")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="tiecheck-bench-"))
    size = int(args.size_gb * 1e9)
    if args.generate_only:
        generate(folder, size)
        return
    try:
        t = time.perf_counter()
        # In a child process: peak RSS is inherited across fork/exec, so this parent must stay small.
        subprocess.run(
            [sys.executable, __file__, "--generate-only", "--dir", str(folder), "--size-gb", str(args.size_gb)],
            check=True,
        )
        shard_bytes = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        print(f"generated {fmt_bytes(shard_bytes)} in {time.perf_counter() - t:.1f} s at {folder}", file=sys.stderr)
        report = json.loads(run("probe", methods(folder, shard_bytes)[0][1], None).output)
        report = report["reports"][0] if "reports" in report else report
        head = next(f["bytes"] for f in report["findings"] if f["code"] == "TC101")
        print(f"findings: {sorted({f['code'] for f in report['findings']})}", file=sys.stderr)

        cold_ok = drop_caches()
        runs: dict[str, list[list[Result]]] = {"cold": [], "warm": []}
        for repeat in range(args.repeat):  # methods in turn, so a busy moment of the machine hits them alike
            if cold_ok:
                runs["cold"].append([])
                for name, argv, read in methods(folder, shard_bytes):
                    drop_caches()
                    runs["cold"][-1].append(run(name, argv, read))
                    print(f"{repeat} cold {name}: {runs['cold'][-1][-1].wall:.2f} s", file=sys.stderr)
            name, argv, read = methods(folder, shard_bytes)[-1]
            run(name, argv, read)  # cat once: every shard in the page cache
            runs["warm"].append([])
            for name, argv, read in methods(folder, shard_bytes):
                runs["warm"][-1].append(run(name, argv, read))
                print(f"{repeat} warm {name}: {runs['warm'][-1][-1].wall:.2f} s", file=sys.stderr)
        cold, warm = median(runs["cold"]), median(runs["warm"])

        print(
            f"Checkpoint: {fmt_bytes(shard_bytes)} in {SHARDS} shards, bfloat16, tied head stored twice "
            f"({fmt_bytes(head)} redundant). Machine: {os.cpu_count()} cores, shared. Median of {args.repeat} runs.\n"
        )
        for title, results in (("cold page cache", cold), ("warm page cache", warm)):
            if not results:
                continue
            print(table(title, results, shard_bytes) + "\n")
            default, deep, lib, lib_deep, user, cat = results
            beyond = default.bytes_read - 2 * head
            print(
                f"- default scan: {user.wall / default.wall:.1f}x faster than the user script as a command, "
                f"{user.wall / lib.wall:.1f}x as a library call (target >= 20x); reads {fmt_bytes(beyond)} "
                f"({beyond / shard_bytes:.2%}) beyond the tied head pair it confirms (target < 5%)"
            )
            print(
                f"- --deep: {deep.wall / cat.wall:.2f}x the time of cat as a command, {lib_deep.wall / cat.wall:.2f}x "
                "as a library call (target <= 1.25x)"
            )
            print(
                f"- peak RSS: default {fmt_bytes(default.maxrss)}, --deep {fmt_bytes(deep.maxrss)} (target < 150 MB)\n"
            )
        if not cold_ok:
            print("(page cache could not be dropped: warm runs only)")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
