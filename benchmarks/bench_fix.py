#!/usr/bin/env python3
"""Benchmark: in-place `tiecheck fix --drop-duplicates` on a generated multi-GB sharded checkpoint.

Compared with what a user would otherwise run, each in its own process (wall time and that
process's peak RSS, from ``wait4``):

* ``cp``: copying the shard that the fix rewrites (the floor for rewriting it), with and
  without ``sync`` of the copy (tiecheck fsyncs what it writes), and then ``mv`` over the
  shard (an in-place rewrite also frees the old file: the kernel drops its cached pages and
  blocks);
* ``cp`` + ``sync``, then reading the embedding the dropped head must equal: the fix proves the
  drop byte for byte, so when the embedding lives in a shard the fix does not rewrite, no proof
  reads less than this;
* the hand-written script: ``safetensors.torch.load_file`` the shard, drop ``lm_head.weight``,
  ``save_file`` it back (and, as such scripts do, leave the index stale);
* ``tiecheck fix``: scan, plan, stream the shard without the head, verify (hash every copied
  byte, re-scan), switch atomically, index and totals included.

The checkpoint (a Gemma2-shaped config, tied, with the embedding copied into the last shard
as ``lm_head.weight`` the way merge tools do, by default in the middle of that shard) is
written streamed, never held in memory, under ``.bench-tmp/`` (git-ignored), and deleted at
the end. Every method runs warm (every file of the checkpoint read through just before) and cold
(the checkpoint's and the copy's pages dropped from the page cache with ``posix_fadvise(DONTNEED)``
before the run, so the machine's other users keep theirs). ``fix - start-up`` subtracts the median start-up of
the interpreter with tiecheck's CLI imported (``python -m tiecheck --version``).

``--strided`` instead times ``fix --to-safetensors`` of a pickle holding one 64 MB float32
tensor saved as a transpose, against the same tensor saved contiguous.

``--phases`` instead times the phases of a warm fix (``--cold``: with the checkpoint dropped from the
page cache), in one process per run, from the fix's own progress stages and named steps.

    python benchmarks/bench_fix.py [--gb 4] [--repeat 5] [--head middle|end] [--dir PATH]
                                   [--strided | --phases [--cold]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tiecheck import testing
from tiecheck.formats.safetensors import encode_header

VOCAB, HIDDEN, FFN = 131072, 2048, 8192
BLOCK = 16 << 20


def _fill(out: object, nbytes: int, seed: int, block: bytes) -> None:
    """Write ``nbytes`` of pseudo-random data, distinct per ``seed``, from one shared block."""
    tag = seed.to_bytes(8, "little")
    written = 0
    while written < nbytes:
        n = min(BLOCK, nbytes - written)
        chunk = tag + block[8:n] if n > 8 else block[:n]
        out.write(chunk)  # type: ignore[attr-defined]
        written += n


def _layer_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """One decoder layer's tensors: the layout ``tiecheck.testing`` builds, at Gemma2-2B-like sizes."""
    size = {testing.HIDDEN: HIDDEN, testing.FFN: FFN, testing.HIDDEN // 2: HIDDEN // 4}  # tiny dims -> real ones
    layer = testing.decoder_layers("", 1)
    return [(name.removeprefix("layers.0."), tuple(size[d] for d in shape)) for name, (_, shape, _) in layer.items()]


def generate(folder: Path, gb: float, head: str = "middle") -> tuple[str, int]:
    """A sharded checkpoint of about ``gb`` GB; returns the shard holding the duplicated head and its size."""
    block = os.urandom(BLOCK)
    embed = ("model.embed_tokens.weight", (VOCAB, HIDDEN))
    per_layer = _layer_shapes()
    layer_bytes = sum(2 * _numel(s) for _, s in per_layer)
    embed_bytes = 2 * _numel(embed[1])
    layers = max(1, int((gb * 1e9 - 2 * embed_bytes) // layer_bytes))
    tensors = [embed]
    for i in range(layers):
        tensors += [(f"model.layers.{i}.{n}", s) for n, s in per_layer]
    tensors.append(("model.norm.weight", (HIDDEN,)))
    target = sum(2 * _numel(s) for _, s in tensors) / 4
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for t in tensors:
        if size >= target and len(shards) < 4:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += 2 * _numel(t[1])
    middle = len(shards[-1]) // 2 if head == "middle" else len(shards[-1])
    shards[-1].insert(middle, ("lm_head.weight", embed[1]))
    seeds = {name: i for i, (name, _) in enumerate(tensors)}
    seeds["lm_head.weight"] = seeds[embed[0]]  # byte-identical to the embedding

    weight_map: dict[str, str] = {}
    total = 0
    names = [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    for name, shard in zip(names, shards, strict=True):
        layout = {t: ("BF16", s, 2 * _numel(s)) for t, s in shard}
        with open(folder / name, "wb") as out:
            out.write(encode_header(layout, {"format": "pt"}))
            for t, s in shard:
                _fill(out, 2 * _numel(s), seeds[t], block)
                weight_map[t] = name
                total += 2 * _numel(s)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    testing.write_json(folder / "model.safetensors.index.json", index)
    shapes = {"hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": layers, "vocab_size": VOCAB}
    config = testing.config("gemma2", "Gemma2ForCausalLM", **shapes, tie_word_embeddings=True)
    testing.write_json(folder / "config.json", config)
    return names[-1], (folder / names[-1]).stat().st_size


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def measure(cmd: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in bytes, and exit status of ``cmd`` run as its own process.

    Peak RSS is the process's ``VmHWM``, polled from /proc: ``ru_maxrss`` would also count the
    forking Python parent's memory, which the child inherits until it execs.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status = Path(f"/proc/{proc.pid}/status")
    peak = 0
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 and proc.stderr is not None:
        sys.stderr.write(proc.stderr.read().decode())
    return elapsed, peak, proc.returncode


CP = "cp (the shard the fix rewrites)"
CP_SYNC = "cp + sync of the copy (durable, as tiecheck is)"
PROOF_FLOOR = "cp + sync, then reading the embedding the head must equal (the least a proof adds)"
CP_SYNC_MV = "cp + sync + mv over the shard (frees the old one, as an in-place fix does)"
FIX = "tiecheck fix --drop-duplicates"
STARTUP = "start-up (python -m tiecheck --version)"
COLD = " (cold)"
HANDWRITTEN = """
import sys
from safetensors.torch import load_file, save_file
path = sys.argv[1]
tensors = load_file(path)
del tensors["lm_head.weight"]
save_file(tensors, path, metadata={"format": "pt"})
"""


def tensor_range(folder: Path, name: str) -> tuple[Path, int, int]:
    """The file holding tensor ``name`` of the checkpoint in ``folder``, and its bytes' offset and length."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    path = folder / index["weight_map"][name]
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        begin, end = json.loads(f.read(size))[name]["data_offsets"]
    return path, 8 + size + begin, end - begin


def warm_cache(paths: list[Path]) -> None:
    """Read these files through, so that a warm run finds every byte in the page cache.

    A cold run drops the whole checkpoint from the cache, and ``restore`` rewrites only the shard
    the fix changes: without this, the next "warm" run would read the embedding's shard from disk.
    """
    buffer = bytearray(BLOCK)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass


def drop_cache(paths: list[Path]) -> None:
    """Evict these files' pages from the page cache (cold start for them only)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


STRIDED = """
import sys, torch
n = int(sys.argv[2])
w = torch.randn(n, n)
torch.save({"w": w.t() if sys.argv[3] == "transposed" else w}, sys.argv[1])
"""


def strided(base: Path, repeat: int) -> None:
    n = 4096  # 64 MB of float32
    times: dict[str, list[float]] = {}
    for kind in ("contiguous", "transposed"):
        folder = base / kind
        folder.mkdir()
        subprocess.run([sys.executable, "-c", STRIDED, str(folder / "pytorch_model.bin"), str(n), kind], check=True)
        times[kind] = []
        for i in range(repeat):
            out = base / f"{kind}-out-{i}"
            cmd = [sys.executable, "-m", "tiecheck", "fix", "--to-safetensors", "-o", str(out), str(folder)]
            seconds, _, code = measure(cmd)
            assert code == 0, code
            times[kind].append(seconds)
            shutil.rmtree(out)
    print("\n`fix --to-safetensors` of one 64 MB float32 tensor (warm)\n")
    print("| saved as | median | min - max |")
    print("| --- | ---: | ---: |")
    for kind, values in times.items():
        print(f"| {kind} | {statistics.median(values):.2f} s | {min(values):.2f} - {max(values):.2f} s |")


PHASES = (
    "imports (tiecheck.fixer; tiecheck itself is loaded before)",
    "scan (headers, config, tie tables, samples) and plan",
    "scan: exact compare of head and embedding",
    "copy of the kept bytes (read, hash, copy_file_range)",
    "verification: re-hash of the staged shard",
    "verification: re-scan, nothing-lost checks, fsync wait",
    "journal and switch",
    "closing the replaced shard (the kernel frees it)",
)


def phases_of(folder: str) -> None:
    """In this process: fix ``folder`` and print how long each phase took (JSON), from the fix's own
    progress stages and hook steps."""
    t0 = time.perf_counter()
    from tiecheck.fixer import Options, run_fix

    events: list[tuple[float, str]] = []

    class Events:
        def step(self, name: str) -> None:
            if not name.startswith("copy "):
                events.append((time.perf_counter(), name))

        def begin(self, description: str, total: int) -> None:
            events.append((time.perf_counter(), "begin " + description.split()[0]))

        def advance(self, nbytes: int) -> None:
            pass

        def end(self) -> None:
            events.append((time.perf_counter(), "end"))

    t1 = time.perf_counter()
    run_fix(folder, Options(drop_duplicates=True), hooks=Events(), progress=Events())
    t2 = time.perf_counter()

    def at(name: str, after: float = 0.0) -> float:
        return next(t for t, n in events if n == name and t >= after)

    compare = at("begin comparing")
    copy, verify = at("begin copy"), at("begin verify")
    marks = [t1, compare, at("end", compare), copy, at("staged all"), verify, at("end", verify), at("verified")]
    spans = [t1 - t0, compare - t1 + copy - marks[2], marks[2] - compare, marks[4] - copy, marks[6] - verify]
    spans += [marks[7] - marks[6], at("journal removed") - marks[7], t2 - at("journal removed")]
    print(json.dumps(dict(zip(PHASES, spans, strict=True))))


def phases(folder: Path, restore: Callable[[], None], repeat: int, cold: bool = False) -> None:
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        restore()
        if cold:
            drop_cache(list(folder.iterdir()))
        else:
            warm_cache(list(folder.iterdir()))
        done = subprocess.run(
            [sys.executable, __file__, "--phases-of", str(folder)], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(done.stdout))
    kind = "cold" if cold else "warm"
    print(f"\nWhere a {kind} in-place fix spends its time (median of {repeat} runs, one process each)\n")
    print("| phase | median | min - max |")
    print("| --- | ---: | ---: |")
    for phase in PHASES:
        values = [r[phase] for r in runs]
        print(f"| {phase} | {statistics.median(values):.2f} s | {min(values):.2f} - {max(values):.2f} s |")
    totals = [sum(r.values()) for r in runs]
    print(f"| **total** | **{statistics.median(totals):.2f} s** | {min(totals):.2f} - {max(totals):.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs per method")
    parser.add_argument("--head", choices=("middle", "end"), default="middle", help="where the head sits in its shard")
    parser.add_argument("--dir", type=Path, default=Path(".bench-tmp"), help="where to generate the data (deleted)")
    parser.add_argument("--strided", action="store_true", help="time the conversion of a transposed pickle tensor")
    parser.add_argument("--no-handwritten", action="store_true", help="skip the load_file/save_file script")
    parser.add_argument("--phases", action="store_true", help="time the phases of a warm fix instead")
    parser.add_argument("--cold", action="store_true", help="with --phases: the checkpoint dropped from the cache")
    parser.add_argument("--phases-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phases_of:
        phases_of(args.phases_of)
        return
    args.dir.mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="tiecheck-bench-", dir=args.dir))
    if args.strided:
        try:
            strided(base, args.repeat)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
    try:
        folder = base / "ckpt"
        folder.mkdir()
        t0 = time.perf_counter()
        shard, shard_size = generate(folder, args.gb, args.head)
        total = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        print(f"generated {total / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s; head in {shard}", file=sys.stderr)
        pristine_shard = base / "pristine.safetensors"
        pristine_index = base / "pristine.index.json"
        shutil.copyfile(folder / shard, pristine_shard)
        shutil.copyfile(folder / "model.safetensors.index.json", pristine_index)

        def restore() -> None:
            for leftover in folder.glob(".tiecheck*"):
                leftover.unlink()
            (folder / shard).unlink()
            shutil.copyfile(pristine_shard, folder / shard)
            shutil.copyfile(pristine_index, folder / "model.safetensors.index.json")
            os.sync()  # no method pays for another's (or the generator's) pending writeback

        if args.phases:
            phases(folder, restore, args.repeat, cold=args.cold)
            return
        runs = {
            CP: ["cp", str(folder / shard), str(base / "copy.safetensors")],
            CP_SYNC: [
                "sh",
                "-c",
                'cp "$0" "$1" && sync "$1"',
                str(folder / shard),
                str(base / "copy.safetensors"),
            ],
            PROOF_FLOOR: [
                "sh",
                "-c",
                'cp "$0" "$1" && sync "$1" && dd if="$2" of=/dev/null bs=8M iflag=skip_bytes,count_bytes '
                'skip="$3" count="$4" status=none',
                str(folder / shard),
                str(base / "copy.safetensors"),
                *map(str, tensor_range(folder, "model.embed_tokens.weight")),
            ],
            CP_SYNC_MV: [
                "sh",
                "-c",
                'cp "$0" "$1" && sync "$1" && mv "$1" "$0"',
                str(folder / shard),
                str(base / "copy.safetensors"),
            ],
            FIX: [
                sys.executable,
                "-m",
                "tiecheck",
                "fix",
                str(folder),
                "--drop-duplicates",
                "--yes",
            ],
            "hand-written (load_file, del, save_file)": [sys.executable, "-c", HANDWRITTEN, str(folder / shard)],
            STARTUP: [sys.executable, "-m", "tiecheck", "--version"],
        }
        if args.no_handwritten:
            del runs["hand-written (load_file, del, save_file)"]
        runs = {f"{label}{mode}": cmd for mode in ("", COLD) for label, cmd in runs.items()}
        times: dict[str, list[float]] = {label: [] for label in runs}
        peaks: dict[str, int] = dict.fromkeys(runs, 0)
        codes: dict[str, int] = dict.fromkeys(runs, 0)
        for _ in range(args.repeat):
            for label, cmd in runs.items():  # interleaved, so background load hits every method alike
                restore()
                if label.endswith(COLD):
                    drop_cache([*folder.iterdir(), base / "copy.safetensors"])
                else:
                    warm_cache(list(folder.iterdir()))
                seconds, rss, code = measure(cmd)
                (base / "copy.safetensors").unlink(missing_ok=True)
                os.sync()
                times[label].append(seconds)
                peaks[label] = max(peaks[label], rss)
                codes[label] = codes[label] or code
        print(
            f"\nIn-place fix of a {total / 1e9:.1f} GB checkpoint; rewritten shard {shard_size / 1e9:.2f} GB, head in "
            f"the {args.head} of it; {args.repeat} interleaved run(s) per method\n"
        )
        print("| method | median wall time | min - max | median vs cp + sync | peak RSS | exit |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for mode in ("", COLD):
            floor = statistics.median(times[CP_SYNC + mode])
            startup = statistics.median(times[STARTUP + mode])
            for label in [name for name in runs if name.endswith(mode) and (mode or not name.endswith(COLD))]:
                median = statistics.median(times[label])
                spread = f"{min(times[label]):.2f} - {max(times[label]):.2f} s"
                print(
                    f"| {label} | {median:.2f} s | {spread} | {median / floor:.2f}x | "
                    f"{peaks[label] / 1e6:.0f} MB | {codes[label]} |"
                )
            fix = [t - startup for t in times[FIX + mode]]
            print(
                f"| **fix - start-up{mode}** | {statistics.median(fix):.2f} s | {min(fix):.2f} - {max(fix):.2f} s | "
                f"**{statistics.median(fix) / floor:.2f}x** | | |"
            )
            proof = statistics.median(times[PROOF_FLOOR + mode])
            print(
                f"| fix - start-up{mode} vs cp + sync + reading the embedding | | | "
                f"{statistics.median(fix) / proof:.2f}x | | |"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
