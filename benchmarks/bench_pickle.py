#!/usr/bin/env python3
"""Scanning a ``pytorch_model.bin`` with tiecheck vs. listing it with ``torch.load``.

The alternative a user runs to see what a pickle checkpoint holds is ``torch.load(path,
weights_only=True)`` (or with ``mmap=True``). Each contender runs in a fresh process so its peak
RSS is its own; results are printed as ratios to tiecheck in one run.

    python benchmarks/bench_pickle.py [SIZE_MB] [WORKDIR]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = {
    "tiecheck scan": "from tiecheck import scan; r = scan(PATH); n = r.summary.tensors",
    "torch.load(weights_only=True)": "import torch; n = len(torch.load(PATH, weights_only=True))",
    "torch.load(weights_only=True, mmap=True)": (
        "import torch; n = len(torch.load(PATH, weights_only=True, mmap=True))"
    ),
}

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent.
RUNNER = """
import sys, time
PATH = sys.argv[1]
start = time.perf_counter()
{code}
elapsed = time.perf_counter() - start
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(elapsed, hwm * 1024, n)
"""


def make_checkpoint(folder: Path, size_mb: int) -> Path:
    """A tied Llama-shaped state dict of about ``size_mb`` MB in bfloat16, saved with torch.save."""
    import torch

    hidden, vocab = 2048, 32000
    layer_params = 12 * hidden * hidden
    layers = max(1, (size_mb * 1_000_000 // 2 - vocab * hidden) // layer_params)
    state: dict[str, torch.Tensor] = {}
    embed = torch.zeros(vocab, hidden, dtype=torch.bfloat16)
    state["model.embed_tokens.weight"] = embed
    for i in range(layers):
        p = f"model.layers.{i}."
        for name, shape in (
            ("self_attn.q_proj.weight", (hidden, hidden)),
            ("self_attn.k_proj.weight", (hidden, hidden)),
            ("self_attn.v_proj.weight", (hidden, hidden)),
            ("self_attn.o_proj.weight", (hidden, hidden)),
            ("mlp.gate_proj.weight", (4 * hidden, hidden)),
            ("mlp.up_proj.weight", (4 * hidden, hidden)),
            ("mlp.down_proj.weight", (hidden, 4 * hidden)),
            ("input_layernorm.weight", (hidden,)),
            ("post_attention_layernorm.weight", (hidden,)),
        ):
            state[p + name] = torch.zeros(shape, dtype=torch.bfloat16)
    state["model.norm.weight"] = torch.zeros(hidden, dtype=torch.bfloat16)
    state["lm_head.weight"] = embed  # tied: one storage
    torch.save(state, folder / "pytorch_model.bin")
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "tie_word_embeddings": True}
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "pytorch_model.bin"


def run(code: str, path: Path) -> tuple[float, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", RUNNER.format(code=code), str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def drop_page_cache_hint(path: Path) -> None:
    """Read the file once so every contender starts from the same (warm) page cache."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory(dir=sys.argv[2] if len(sys.argv) > 2 else None) as tmp:
        folder = Path(tmp)
        # Written by a child process, so that this one stays small.
        subprocess.run([sys.executable, __file__, "--make", str(size_mb), str(folder)], check=True)
        path = folder / "pytorch_model.bin"
        drop_page_cache_hint(path)
        print(f"checkpoint: {path.stat().st_size / 1e6:,.0f} MB, torch.save of a tied bf16 Llama-shaped state dict")
        results = {}
        for name, code in CONTENDERS.items():
            # tiecheck is given the folder (config beside it), torch the file.
            target = folder if name.startswith("tiecheck") else path
            runs = [run(code, target) for _ in range(3)]
            best = min(runs)
            results[name] = best
            print(f"  {name:45s} {best[0] * 1000:9.1f} ms  peak RSS {best[1] / 1e6:8.1f} MB  tensors {best[2]}")
        base_t, base_rss, _ = results["tiecheck scan"]
        print("ratios (contender / tiecheck):")
        for name, (t, rss, _) in results.items():
            if name != "tiecheck scan":
                print(f"  {name:45s} time x{t / base_t:6.1f}   peak RSS x{rss / base_rss:5.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make"]:
        make_checkpoint(Path(sys.argv[3]), int(sys.argv[2]))
        sys.exit(0)
    start = time.perf_counter()
    main()
    print(f"(benchmark wall time {time.perf_counter() - start:.0f} s)")
