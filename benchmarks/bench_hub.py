#!/usr/bin/env python3
"""A remote scan against what a user would otherwise do, on a Hub served from 127.0.0.1.

The repo: N shards of a Llama-shaped bf16 checkpoint (default 30 shards, about 1 GB), tied, with the
head duplicated in the last shard (the merge bug). Compared in one run, each in its own process:

- ``tiecheck``: ``scan_store(HubStore(...))``, the default scan (headers, index, config, and sampled
  blocks of every tensor for the tie and duplicate questions, coalesced into few range requests);
- ``tiecheck-headers``: the same with the content rules deselected (headers, index, config and the
  samples of the tie pair only);
- ``tiecheck-none``: ``content="none"``, no tensor byte at all (headers, index and config);
- ``metadata``: ``huggingface_hub.get_safetensors_metadata`` (headers only, no checks at all);
- ``download``: ``snapshot_download`` of the repo into a temporary cache (what you do to check it locally).

Reported: wall time, requests and bytes the server saw, and peak RSS of the process.

    python benchmarks/bench_hub.py [--shards 30] [--shard-mb 34] [--only tiecheck,tiecheck-none] [--src DIR]

``--src`` runs another copy of tiecheck (say, an older commit's ``src`` from ``git archive``) for a before/after.
The server is Python's ``http.server`` (HTTP/1.0, a new connection per request); ``--rtt-ms`` (default 20) makes
each request wait that long before its answer, as a round trip to a real Hub would.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hub_server import serve
from tiecheck.testing import config, write_json, write_sharded

RUNNERS = {
    "tiecheck": """
from tiecheck.io.hub import HubStore
from tiecheck.scan import scan_store
r = scan_store(HubStore(REPO, endpoint=URL, token=False))
print(sorted({f.code for f in r.findings}))
""",
    "tiecheck-headers": """
from tiecheck.io.hub import HubStore
from tiecheck.rules.catalog import RULES
from tiecheck.scan import scan_store
rules = frozenset(RULES) - {"TC202", "TC203", "TC205"}
r = scan_store(HubStore(REPO, endpoint=URL, token=False), rules=rules)
print(sorted({f.code for f in r.findings}))
""",
    "tiecheck-none": """
from tiecheck.io.hub import HubStore
from tiecheck.scan import scan_store
r = scan_store(HubStore(REPO, endpoint=URL, token=False), content="none")
print(sorted({f.code for f in r.findings}))
""",
    "metadata": """
import os
from huggingface_hub import get_safetensors_metadata
m = get_safetensors_metadata(REPO)
print(sum(len(f.tensors) for f in m.files_metadata.values()), "tensors; no checks")
""",
    "download": """
import tempfile
from huggingface_hub import snapshot_download
with tempfile.TemporaryDirectory() as d:
    snapshot_download(REPO, cache_dir=d)
print("downloaded")
""",
}


def make_repo(folder: Path, shards: int, shard_mb: int) -> None:
    hidden = 1024
    rows = shard_mb * (1 << 20) // (hidden * 2 * 4)  # four tensors of this many rows per shard
    blob = bytes(range(256)) * (rows * hidden * 2 // 256)

    def tensor(i: int) -> tuple[str, tuple[int, ...], bytes]:
        data = i.to_bytes(4, "little") + blob[4:]  # distinct first bytes: no accidental duplicates
        return "BF16", (rows, hidden), data

    parts = [{f"model.layers.{s}.mlp.w{j}.weight": tensor(s * 4 + j) for j in range(4)} for s in range(shards)]
    embedding = tensor(10**6)
    parts[0]["model.embed_tokens.weight"] = embedding
    parts[-1]["lm_head.weight"] = embedding
    write_sharded(folder, parts)
    write_json(folder / "config.json", config("gemma2", "Gemma2ForCausalLM", tie_word_embeddings=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=30)
    parser.add_argument("--shard-mb", type=int, default=34)
    parser.add_argument("--rtt-ms", type=float, default=20, help="each request's wait at the server (a round trip)")
    parser.add_argument("--only", default="", help="comma-separated runners (default: all)")
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    args = parser.parse_args()
    runners = {k: v for k, v in RUNNERS.items() if not args.only or k in args.only.split(",")}
    with tempfile.TemporaryDirectory() as tmp, serve() as hub:
        folder = Path(tmp)
        make_repo(folder, args.shards, args.shard_mb)
        size = sum(p.stat().st_size for p in folder.iterdir())
        hub.add_folder("bench/repo", folder)
        hub.delay = args.rtt_ms / 1000
        hub.page_size = 1000  # the real Hub lists up to 1,000 files a page (the tests use 2, to exercise paging)
        print(
            f"repo: {args.shards} shards, {size / 1e9:.2f} GB; server on {hub.hub_url}, {args.rtt_ms:g} ms per request"
        )
        print(f"{'method':18} {'wall s':>7} {'requests':>9} {'bytes':>14} {'% of repo':>9} {'peak MB':>8}  output")
        for name, code in runners.items():
            before = (hub.hub.requests + hub.cdn.requests, hub.hub.bytes + hub.cdn.bytes)
            prelude = f"REPO = 'bench/repo'\nURL = {hub.hub_url!r}\n"
            # Peak memory of this process's own image (ru_maxrss would carry the parent's, which holds the repo).
            hwm = "\nimport re\nprint(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
            runner = prelude + code + hwm
            env = {
                "HF_ENDPOINT": hub.hub_url,
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(args.src.resolve()),  # this checkout, not whatever copy is installed
            }
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - start
            lines = done.stdout.strip().splitlines() or ["", "0"]
            requests = hub.hub.requests + hub.cdn.requests - before[0]
            transferred = hub.hub.bytes + hub.cdn.bytes - before[1]
            output = lines[0] if done.returncode == 0 else done.stderr.strip()[-1500:]
            print(
                f"{name:18} {wall:7.2f} {requests:9d} {transferred:14,d} {100 * transferred / size:8.3f}% "
                f"{int(lines[-1]) / 1024 if lines[-1].isdigit() else 0:8.0f}  {output}"
            )


if __name__ == "__main__":
    main()
