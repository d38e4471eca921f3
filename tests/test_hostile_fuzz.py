"""No hostile bytes make a reader raise anything but a finding: mutated real files, via hypothesis."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from tiecheck.errors import FormatError
from tiecheck.formats.safetensors import parse_header
from tiecheck.formats.torch_pickle import _read_torch_file, read_torch_file

STATE = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)}


def _torch_bytes(**kwargs: object) -> bytes:
    out = io.BytesIO()
    torch.save(STATE, out, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


SEEDS = {
    "zip": _torch_bytes(),
    "legacy": _torch_bytes(_use_new_zipfile_serialization=False),
    "protocol4": _torch_bytes(pickle_protocol=4),
}
SAFETENSORS = save(dict(STATE))


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + max(0, length)]

    def close(self) -> None:
        pass


mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate"]), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)
)


def mutate(data: bytes, steps: list[tuple[str, int, bytes]]) -> bytes:
    for kind, at, chunk in steps:
        at %= max(1, len(data))
        if kind == "flip":
            data = data[:at] + chunk + data[at + len(chunk) :]
        elif kind == "insert":
            data = data[:at] + chunk + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(chunk) :]
        else:
            data = data[:at]
    return data


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(SEEDS)), steps=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_torch_files_are_read_or_refused(seed: str, steps: list[tuple[str, int, bytes]]) -> None:
    """The reader proper, below its last-resort guard: a bug here must show, not become TC403."""
    with contextlib.suppress(FormatError):
        _read_torch_file(_Bytes(mutate(SEEDS[seed], steps)), "pytorch_model.bin")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_safetensors_headers_are_read_or_refused(steps: list[tuple[str, int, bytes]]) -> None:
    data = mutate(SAFETENSORS, steps)
    with contextlib.suppress(FormatError):
        parse_header(data[8:], len(data), "model.safetensors")


def test_seeds_are_readable(tmp_path: Path) -> None:
    for seed in SEEDS.values():
        assert len(read_torch_file(_Bytes(seed), "x").tensors) == 2  # type: ignore[arg-type]
