"""``tiecheck fix --to-safetensors``: pickle checkpoints converted without unpickling, verified, atomically.

Real artefacts: state dicts of transformers models written by ``torch.save`` (single and sharded
with an index, tied storages and plain copies), loaded back with ``from_pretrained``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixhelpers import as_bytes, codes, loadable, run_hooked, snapshot
from pickle_helpers import glob, write_torch_zip
from tiecheck import Severity, scan
from tiecheck.fixer import Options, RefusedError, run_fix

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SMALL = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
CONVERT = Options(to_safetensors=True)


def model(tie: bool, model_type: str = "llama", arch: str = "LlamaForCausalLM") -> Any:
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(model_type, **SMALL, tie_word_embeddings=tie)
    return getattr(transformers, arch)(config).eval()


def save_pickle(m: Any, folder: Path, shards: int = 1) -> None:
    """What transformers < 4.35 and many training scripts wrote: torch.save of the state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    m.config.save_pretrained(folder)
    state = m.state_dict()
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
        return
    names = list(state)
    step = -(-len(names) // shards)
    weight_map = {}
    total = 0
    for i in range(shards):
        part = {n: state[n] for n in names[i * step : (i + 1) * step]}
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save(part, folder / file)
        weight_map.update(dict.fromkeys(part, file))
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))


def logits(folder: Path) -> Any:
    loaded, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        return loaded.eval()(torch.arange(12).reshape(1, 12)).logits


def reference_logits(m: Any) -> Any:
    with torch.no_grad():
        return m(torch.arange(12).reshape(1, 12)).logits


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_single_pickle_round_trip(tmp_path: Path, tie: bool) -> None:
    m = model(tie)
    folder = tmp_path / "ckpt"
    save_pickle(m, folder)
    assert "TC402" in codes(folder)

    outcome = run_fix(folder, CONVERT)
    assert outcome.applied is not None
    names = sorted(p.name for p in folder.iterdir())
    assert "pytorch_model.bin" not in names and "model.safetensors" in names
    assert not [c for c in codes(folder) if c in {"TC101", "TC102", "TC201", "TC402"}]
    stored = set(loadable(folder))
    assert ("lm_head.weight" in stored) is (not tie), "a tied alias is stored once, an untied one twice"
    assert torch.equal(logits(folder), reference_logits(m))


def test_sharded_pickle_round_trip(tmp_path: Path) -> None:
    m = model(tie=False, model_type="qwen2", arch="Qwen2ForCausalLM")
    folder = tmp_path / "ckpt"
    save_pickle(m, folder, shards=3)
    sizes = sorted(p.stat().st_size for p in folder.glob("pytorch_model-*.bin"))

    outcome = run_fix(folder, CONVERT)
    assert outcome.applied is not None
    shards = sorted(folder.glob("model-*-of-00003.safetensors"))
    assert len(shards) == 3
    assert not list(folder.glob("*.bin")) and not (folder / "pytorch_model.bin.index.json").exists()
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in m.state_dict().values())
    # Shard sizes close to the original's (the pickle adds its own framing).
    for new, old in zip(sorted(p.stat().st_size for p in shards), sizes, strict=True):
        assert 0.5 * old < new <= old
    assert not [f for f in scan(folder).findings if f.severity >= Severity.WARNING]
    assert torch.equal(logits(folder), reference_logits(m))


def test_tied_copies_in_different_shards_are_dropped_with_drop_duplicates(tmp_path: Path) -> None:
    m = model(tie=True, model_type="gemma2", arch="Gemma2ForCausalLM")
    folder = tmp_path / "ckpt"
    save_pickle(m, folder, shards=2)  # embedding first, head last: two files, so two copies
    assert "TC101" in codes(folder)
    run_fix(folder, Options(to_safetensors=True, drop_duplicates=True))
    assert "lm_head.weight" not in loadable(folder)
    assert not codes(folder) & {"TC101", "TC402"}
    assert torch.equal(logits(folder), reference_logits(m))


def test_transposed_view_is_written_in_c_order(tmp_path: Path) -> None:
    weight = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"w.T": weight.t(), "w": weight}, folder / "pytorch_model.bin")
    run_fix(folder, CONVERT)
    tensors = loadable(folder)
    assert tensors["w.T"] == as_bytes(weight.t().contiguous())
    assert tensors["w"] == as_bytes(weight)


def test_a_small_expanded_buffer_is_written_out_in_full(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    mask = torch.arange(4, dtype=torch.float32).expand(1000, 4)  # stride (0, 1): 16 KB from 16 bytes
    torch.save({"mask": mask, "w": torch.ones(3)}, folder / "pytorch_model.bin")
    run_fix(folder, CONVERT)
    assert loadable(folder)["mask"] == as_bytes(mask.contiguous())


@pytest.mark.parametrize("output", [False, True])
def test_an_expanded_tensor_of_terabytes_is_refused_before_writing(tmp_path: Path, output: bool) -> None:
    """torch.zeros(1).expand(2**40) pickles to 4 bytes of storage; converted it would be 4 TB."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"bomb": torch.zeros(1).expand(2**40), "w": torch.ones(3)}, folder / "pytorch_model.bin")
    (tc402,) = [f for f in scan(folder).findings if f.code == "TC402"]
    assert not tc402.fixable and "expanded view" in tc402.message, "the scan says the conversion refuses"
    before = snapshot(folder)
    out = tmp_path / "out"
    with pytest.raises(RefusedError, match="expanded tensor"):
        run_fix(folder, CONVERT, output=out if output else None)
    assert snapshot(folder) == before and not out.exists()


def test_output_folder_leaves_the_source_alone(tmp_path: Path) -> None:
    m = model(tie=True)
    folder = tmp_path / "ckpt"
    save_pickle(m, folder)
    (folder / "tokenizer.json").write_text("{}")
    before = snapshot(folder)
    out = tmp_path / "converted"
    run_fix(folder, CONVERT, output=out)
    assert snapshot(folder) == before
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert torch.equal(logits(out), reference_logits(m))


def test_unsafe_pickle_is_refused_and_nothing_is_touched(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    payload = b"\x80\x02" + glob("posix", "system") + b"X\x04\x00\x00\x00true\x85R."
    write_torch_zip(folder / "pytorch_model.bin", payload, {})
    before = snapshot(folder)
    with pytest.raises(RefusedError, match="TC401"):
        run_fix(folder, CONVERT)
    assert snapshot(folder) == before


def test_without_the_flag_pickles_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    save_pickle(model(tie=True), folder)
    with pytest.raises(RefusedError, match="--to-safetensors"):
        run_fix(folder, Options())


def test_cli_dry_run_lists_the_conversion(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    save_pickle(model(tie=True), folder)
    before = snapshot(folder)
    result = subprocess.run(
        [sys.executable, "-m", "tiecheck", "fix", str(folder), "--to-safetensors", "--dry-run", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kinds = [a["kind"] for a in json.loads(result.stdout)["plan"]["actions"]]
    assert kinds == ["drop-tensor", "convert-shard", "remove-shard"]
    assert snapshot(folder) == before


def pickle_tensors(folder: Path) -> dict[str, bytes]:
    """What a loader reads from a pickle checkpoint (our own test files: safe to load)."""
    index = folder / "pytorch_model.bin.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["pytorch_model.bin"]
    )
    result: dict[str, bytes] = {}
    for file in files:
        result.update({k: as_bytes(v) for k, v in torch.load(folder / file, weights_only=True).items()})
    return result


def state_of(folder: Path) -> dict[str, bytes]:
    """The tensors transformers would load: safetensors when the commit point has passed, else the pickles."""
    if (folder / "model.safetensors.index.json").exists() or (folder / "model.safetensors").exists():
        return loadable(folder)
    return pickle_tensors(folder)


@pytest.mark.parametrize("shards", [1, 2])
def test_kill_at_every_step_of_a_conversion(tmp_path: Path, shards: int) -> None:
    m = model(tie=False)
    pristine = tmp_path / "pristine"
    save_pickle(m, pristine, shards=shards)
    old = state_of(pristine)

    reference = tmp_path / "reference"
    shutil.copytree(pristine, reference)
    trace = tmp_path / "trace.txt"
    done = run_hooked(reference, ["--to-safetensors"], chunk=1024, trace=trace)
    assert done.returncode == 0
    new = state_of(reference)
    assert new == old
    final_files = sorted(p.name for p in reference.iterdir())
    steps = trace.read_text().splitlines()
    assert len(steps) > 10

    for number, line in enumerate(steps, 1):
        if line.split(" ", 1)[1].startswith("copy ") and not line.endswith(f" {1024}/" + line.rsplit("/", 1)[1]):
            continue  # of the many alike chunk copies, the first of each tensor is enough
        folder = tmp_path / f"kill-{number}"
        shutil.copytree(pristine, folder)
        killed = run_hooked(folder, ["--to-safetensors"], chunk=1024, kill_at=number)
        assert killed.returncode == -signal.SIGKILL, line
        assert state_of(folder) == old, f"after a kill at {line!r} the folder does not load the same tensors"
        run_fix(folder, CONVERT)
        assert sorted(p.name for p in folder.iterdir()) == final_files, line
        assert state_of(folder) == old
        shutil.rmtree(folder)


def test_deep_scan_of_a_tied_pickle(tmp_path: Path) -> None:
    """The tied alias is one storage: --deep reads it once and compares nothing twice."""
    folder = tmp_path / "ckpt"
    save_pickle(model(tie=True), folder)
    report = scan(folder, deep=True)
    assert {"TC201", "TC402"} <= {f.code for f in report.findings}
    assert report.bytes_read == sum(t.nbytes for t in report.checkpoint.stored_once())


def test_diff_after_converting_a_transpose_is_lossless(tmp_path: Path) -> None:
    from tiecheck.compare import diff

    weight = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"w.T": weight.t(), "w": weight}, folder / "pytorch_model.bin")
    out = tmp_path / "converted"
    run_fix(folder, CONVERT, output=out)
    result = diff(folder, out)
    assert result.lossless, [(t.name, t.status, t.detail) for t in result.tensors]


def test_pytorch_model_bin_beside_its_index_shadows_it(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    save_pickle(model(tie=False), folder, shards=2)
    torch.save(model(tie=False).state_dict(), folder / "pytorch_model.bin")
    report = scan(folder)
    assert [f.name for f in report.checkpoint.files] == ["pytorch_model.bin"]
    (orphans,) = [f for f in report.findings if f.code == "TC007"]
    assert "transformers loads pytorch_model.bin" in orphans.message
    assert "TC002" not in {f.code for f in report.findings}


def test_pickle_weights_win_over_an_adapter_beside_them(tmp_path: Path) -> None:
    from tiecheck.formats.safetensors import write_file

    folder = tmp_path / "ckpt"
    save_pickle(model(tie=False), folder)
    write_file(folder / "adapter_model.safetensors", {"lora_A.weight": ("F32", (2, 2), bytes(16))})
    report = scan(folder)
    assert [f.name for f in report.checkpoint.files] == ["pytorch_model.bin"]


@pytest.mark.parametrize("chunk", [64, 4096, 1 << 20])
def test_strided_views_are_gathered_in_blocks(tmp_path: Path, chunk: int) -> None:
    """Transposes and permutes, converted a block at a time (not an element per call), in C order."""
    from tiecheck.fixer.hooks import Run
    from tiecheck.fixer.writer import write_shard
    from tiecheck.formats.torch_pickle import read_torch_file
    from tiecheck.io.source import LocalFileSource

    torch.manual_seed(0)
    base = torch.randn(6, 70, 33)
    views = {
        "t": base[0].t(),
        "permuted": base.permute(2, 0, 1),
        "sliced": base[:, ::2, 1:],
        "half": base.to(torch.bfloat16).transpose(0, 2),
    }
    torch.save({**views, "base": base}, tmp_path / "w.pt")
    with LocalFileSource(tmp_path / "w.pt") as source:
        records = [t for t in read_torch_file(source, "w.pt").tensors if t.name in views]
    assert records and not any(r.contiguous for r in records)
    steps: list[str] = []

    class Hooks:
        def step(self, name: str) -> None:
            steps.append(name)

    fd = os.open(tmp_path / "w.pt", os.O_RDONLY)
    try:
        write_shard(tmp_path / "out.safetensors", records, None, lambda _: fd, Run(hooks=Hooks(), chunk=chunk))
    finally:
        os.close(fd)
    from safetensors.torch import load_file

    out = load_file(tmp_path / "out.safetensors")
    for name, view in views.items():
        assert torch.equal(out[name], view.contiguous()), name
    elements = sum(r.numel for r in records)
    assert len(steps) < elements / 4, "gathered in blocks, not element by element"


def save_head_in_two_shards(m: Any, folder: Path) -> None:
    """The head stored twice: an alias of the embedding's storage in shard 1, a plain copy in shard 2."""
    folder.mkdir(parents=True)
    m.config.save_pretrained(folder)
    state = m.state_dict()
    names = [n for n in state if n != "lm_head.weight"]
    first = {n: state[n] for n in names[: len(names) // 2]}
    first["lm_head.weight"] = first["model.embed_tokens.weight"]
    second = {n: state[n] for n in names[len(names) // 2 :]}
    second["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    weight_map = {}
    for i, part in enumerate((first, second), 1):
        file = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save(part, folder / file)
        weight_map.update(dict.fromkeys(part, file))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_head_stored_in_two_shards_converts_to_one_copy_or_none(tmp_path: Path, tie: bool) -> None:
    m = model(tie=tie)
    with torch.no_grad():
        m.lm_head.weight.copy_(m.model.embed_tokens.weight)
    folder = tmp_path / "ckpt"
    save_head_in_two_shards(m, folder)
    assert all(f.fixable for f in scan(folder).findings if f.code == "TC005")
    outcome = run_fix(folder, Options(to_safetensors=True, drop_duplicates=True))
    assert outcome.applied is not None
    stored = [t.name for f in scan(folder).checkpoint.files for t in f.tensors]
    assert stored.count("lm_head.weight") == (0 if tie else 1)
    assert not list(folder.glob("*.bin*"))
    assert torch.equal(logits(folder), reference_logits(m))
