"""Property tests for the pickle reader: it agrees with torch, and hostile bytes never crash it."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiecheck.errors import FormatError
from tiecheck.formats.torch_pickle import read_torch_file, walk_pickle
from tiecheck.io.source import LocalFileSource

DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int8: "I8",
    torch.uint8: "U8",
}


class _Bytes:
    """A ByteSource over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + max(length, 0)]

    def close(self) -> None:
        pass


@st.composite
def state_dicts(draw: st.DrawFn) -> dict[str, torch.Tensor]:
    """Random state dicts: several dtypes and shapes, plus aliases, transposes and slices of earlier tensors."""
    state: dict[str, torch.Tensor] = {}
    for i in range(draw(st.integers(1, 6))):
        dtype = draw(st.sampled_from(sorted(DTYPES, key=str)))
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
        base = torch.arange(int(torch.tensor(shape).prod().item()) if shape else 1).reshape(shape).to(dtype)
        state[f"t{i}"] = base
        if base.dim() >= 1 and base.numel():
            view = draw(st.sampled_from(["alias", "transpose", "slice", "none"]))
            if view == "alias":
                state[f"t{i}.alias"] = base
            elif view == "transpose" and base.dim() >= 2:
                state[f"t{i}.T"] = base.transpose(0, -1)
            elif view == "slice":
                state[f"t{i}.slice"] = base[base.shape[0] // 2 :]
    return state


def _logical(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=state_dicts())
def test_random_state_dicts_match_torch(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    result = read_torch_file(_Bytes(data), "x.bin")
    loaded = torch.load(io.BytesIO(data), weights_only=True)
    records = {t.name: t for t in result.tensors}
    assert list(records) == list(loaded)
    from tiecheck.content import ContentReader

    path = tmp_path / "x.bin"
    path.write_bytes(data)

    class Store:
        def open(self, name: str) -> LocalFileSource:
            return LocalFileSource(path)

    with ContentReader(Store()) as content:  # type: ignore[arg-type]
        for name, value in loaded.items():
            record = records[name]
            assert (record.dtype, record.shape, record.stride) == (
                DTYPES[value.dtype],
                tuple(value.shape),
                value.stride(),
            )
            assert b"".join(content.logical_chunks(record)) == _logical(value)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_walking_arbitrary_bytes_never_raises(data: bytes) -> None:
    walk = walk_pickle(b"\x80\x02" + data)
    assert walk.broken is not None or walk.value is not None or data[:1] == b"N"


def _saved(zip_format: bool) -> bytes:
    buffer = io.BytesIO()
    state = {"w": torch.arange(12.0).reshape(3, 4), "b": torch.ones(3), "t": torch.ones(2, 3).t(), "none": None}
    torch.save(state, buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


GOOD = {"zip": _saved(True), "legacy": _saved(False)}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(GOOD)), data=st.data())
def test_mutated_files_give_a_table_or_a_format_error(kind: str, data: st.DataObject) -> None:
    original = GOOD[kind]
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), min_size=1, max_size=4)
    )
    cut = data.draw(st.integers(0, len(original)))
    mutated = bytearray(original)
    for offset, value in edits:
        mutated[offset] = value
    for candidate in (bytes(mutated), bytes(mutated[:cut])):
        try:
            result = read_torch_file(_Bytes(candidate), "x.bin")
        except FormatError as error:
            assert "\n" not in error.detail
            continue
        for t in result.tensors:
            assert 0 <= t.start <= len(candidate)
            if t.contiguous:
                assert t.end <= len(candidate)
