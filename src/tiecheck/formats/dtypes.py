"""Element types of the safetensors format, with their bit widths.

The table is the single source of truth for sizes: header validation, summaries and
memory estimates all read it, so a new dtype is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    name: str
    bits: int
    is_float: bool
    torch_name: str | None = None


_ALL = (
    DType("BOOL", 8, False, "bool"),
    DType("U8", 8, False, "uint8"),
    DType("I8", 8, False, "int8"),
    DType("I16", 16, False, "int16"),
    DType("U16", 16, False, "uint16"),
    DType("I32", 32, False, "int32"),
    DType("U32", 32, False, "uint32"),
    DType("I64", 64, False, "int64"),
    DType("U64", 64, False, "uint64"),
    DType("F16", 16, True, "float16"),
    DType("BF16", 16, True, "bfloat16"),
    DType("F32", 32, True, "float32"),
    DType("F64", 64, True, "float64"),
    DType("C64", 64, False, "complex64"),
    DType("F8_E4M3", 8, True, "float8_e4m3fn"),
    DType("F8_E5M2", 8, True, "float8_e5m2"),
    DType("F8_E8M0", 8, True, "float8_e8m0fnu"),
    DType("F8_E4M3FNUZ", 8, True, "float8_e4m3fnuz"),
    DType("F8_E5M2FNUZ", 8, True, "float8_e5m2fnuz"),
    DType("F6_E2M3", 6, True, None),
    DType("F6_E3M2", 6, True, None),
    DType("F4", 4, True, None),
)

DTYPES: dict[str, DType] = {d.name: d for d in _ALL}

#: Full-precision floating types a config's ``dtype`` can name; narrower floats are quantised storage.
WIDE_FLOATS = frozenset({"F16", "BF16", "F32", "F64"})

_TORCH_TO_SAFETENSORS = {d.torch_name: d.name for d in _ALL if d.torch_name}
_TORCH_TO_SAFETENSORS.update({"half": "F16", "float": "F32", "double": "F64"})


def from_torch_name(name: str) -> str | None:
    """Map a config's ``torch_dtype``/``dtype`` string (``"torch.bfloat16"`` too) to a safetensors dtype."""
    return _TORCH_TO_SAFETENSORS.get(name.removeprefix("torch."))


def nbytes(dtype: str, numel: int) -> int | None:
    """Byte length of ``numel`` elements, or None when the bits do not fill whole bytes."""
    bits = DTYPES[dtype].bits * numel
    return bits // 8 if bits % 8 == 0 else None
