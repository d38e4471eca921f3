"""What keeps `fix` at copy speed without weakening it: no numpy on its path, an exact pair compare
that reads into reused buffers, and the constancy check's numpy-free shortcut agreeing with the full one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import tiecheck._reading
from tiecheck._bytes import SMALL, constant_pattern
from tiecheck.content import ContentReader
from tiecheck.formats.safetensors import write_file
from tiecheck.io.source import LocalStore
from tiecheck.loader import load_checkpoint

_WIDTH = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "F64": 8, "U8": 1}
_SIGN = {"BF16": 0x8000, "F16": 0x8000, "F32": 0x8000_0000, "F64": 1 << 63}


def _reference(data: bytes, dtype: str) -> bytes | None:
    """constant_pattern's meaning, spelled out with numpy over every element."""
    width = _WIDTH[dtype]
    values = np.frombuffer(data, dtype=f"<u{width}")
    if (values == values[0]).all():
        sign = _SIGN.get(dtype)
        if sign is not None and int(values[0]) & ~sign == 0:
            return bytes(width)
        return bytes(values[:1].tobytes())
    sign = _SIGN.get(dtype)
    if sign is not None and ((values & values.dtype.type(~sign & ((1 << (8 * width)) - 1))) == 0).all():
        return bytes(width)
    return None


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(_WIDTH)),
    st.sampled_from([16, SMALL // 2 + 3, 2 * SMALL + 5]),
    st.sampled_from(["zero", "negative-zero", "one", "pattern"]),
    st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["other", "negative-zero", "zero"])), max_size=3),
)
def test_constant_pattern_shortcut_agrees_with_every_element(
    dtype: str, count: int, fill: str, changes: list[tuple[float, str]]
) -> None:
    """Near-constant data, changed at the edges (the shortcut's sample), in the middle, or not at all."""
    width = _WIDTH[dtype]
    sign = _SIGN.get(dtype, 0)
    value = {"zero": 0, "negative-zero": sign, "one": 1, "pattern": 0x5A5A5A5A5A5A5A5A & ((1 << (8 * width)) - 1)}
    values = np.full(count, value[fill], dtype=f"<u{width}")
    for where, what in changes:
        values[min(count - 1, int(where * count))] = {"other": 3, "negative-zero": sign, "zero": 0}[what]
    data = values.tobytes()
    assert constant_pattern(data, dtype) == _reference(data, dtype)


def _pair(folder: Path, embed: np.ndarray, head: np.ndarray) -> Path:
    folder.mkdir()
    tensors = {
        "model.embed_tokens.weight": ("F16", embed.shape, embed.tobytes()),
        "lm_head.weight": ("F16", head.shape, head.tobytes()),
        "model.norm.weight": ("F16", (embed.shape[1],), np.ones(embed.shape[1], np.float16).tobytes()),
    }
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    config = {
        "model_type": "gemma2",
        "architectures": ["Gemma2ForCausalLM"],
        "tie_word_embeddings": True,
        "dtype": "float16",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_fix_does_not_import_numpy(tmp_path: Path) -> None:
    """The tied pair is compared byte for byte (2 x 2.4 MB, a zero first row as a pad token has) without numpy."""
    rng = np.random.default_rng(1)
    embed = rng.standard_normal((600, 2048)).astype(np.float16)
    embed[0] = 0
    folder = _pair(tmp_path / "m", embed, embed.copy())
    code = (
        "import sys\n"
        "from tiecheck.fixer import Options, run_fix\n"
        "outcome = run_fix(sys.argv[1], Options(drop_duplicates=True))\n"
        "print(outcome.applied is not None, outcome.plan.dropped_names == {'lm_head.weight'}, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]


@pytest.mark.parametrize("at", [None, 0, -1, "boundary"])
def test_pair_compare_reads_exactly_the_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: object) -> None:
    """Reused buffers over several chunks and a short tail: equal when equal, and a one-bit change anywhere found."""
    chunk = 64 * 1024
    monkeypatch.setattr(tiecheck._reading, "PAIR_CHUNK", chunk)
    rng = np.random.default_rng(2)
    embed = rng.standard_normal((101, 1003)).astype(np.float16)  # 202,606 bytes: 3 chunks and a tail
    head = embed.copy()
    if at is not None:
        flat = head.reshape(-1).view(np.uint8)
        flat[2 * chunk if at == "boundary" else at] ^= 0x10
    folder = _pair(tmp_path / "m", embed, head)
    store = LocalStore(folder)
    tensors = load_checkpoint(store).tensor_map()
    a, b = tensors["model.embed_tokens.weight"], tensors["lm_head.weight"]
    with ContentReader(store) as reader:
        before = reader.bytes_read
        assert reader._compare_bytes(a, b, hash_into=True) is (at is None)
        if at is None:
            assert reader.bytes_read - before == 2 * a.nbytes
            (content,) = {reader.analyse([a, b]).content(t) for t in (a, b)}
            assert content is not None
            assert content.hash == f"xxh3_128:{xxhash.xxh3_128(embed.tobytes()).hexdigest()}"
