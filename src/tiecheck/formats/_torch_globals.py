"""What ``torch.save`` pickles may import: the allowlist of ``torch.load(weights_only=True)`` and the
storage types and dtypes the walk understands, copied from torch 2.13 so that the core never imports torch.
"""

from __future__ import annotations

from tiecheck.formats.dtypes import DTYPES

_STORAGE_DTYPES = {
    "DoubleStorage": "F64",
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
    "BFloat16Storage": "BF16",
    "ComplexFloatStorage": "C64",
}
_TORCH_DTYPES = {f"torch.{d.torch_name}": d.name for d in DTYPES.values() if d.torch_name and d.bits % 8 == 0}

_LEGACY_STORAGES = (
    *_STORAGE_DTYPES,
    "ComplexDoubleStorage",
    "QInt32Storage",
    "QInt8Storage",
    "QUInt2x4Storage",
    "QUInt4x2Storage",
    "QUInt8Storage",
)
_TENSOR_TYPES = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
_REBUILD = (
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_nested_tensor",
    "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_device_tensor_from_cpu_tensor",
)
_DTYPE_NAMES = " ".join(
    (
        "bfloat16 bits16 bits1x8 bits2x4 bits4x2 bits8 bool complex128 complex32 complex64 float16 float32",
        "float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu",
        "int1 int16 int2 int3 int32 int4 int5 int6 int64 int7 int8 qint32 qint8 quint2x4 quint4x2 quint8",
        "uint1 uint16 uint2 uint3 uint32 uint4 uint5 uint6 uint64 uint7 uint8 per_channel_affine",
        "per_channel_affine_float_qparams per_channel_symmetric per_tensor_affine per_tensor_symmetric",
    )
).split()

#: What ``torch.load(weights_only=True)`` of torch 2.13 accepts (``torch/_weights_only_unpickler.py``,
#: ``_get_allowed_globals``), copied so that the core never imports torch.
SAFE_GLOBALS: frozenset[str] = frozenset(
    {
        "collections.OrderedDict",
        "collections.Counter",
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch.Size",
        "torch.Tensor",
        "torch.device",
        "_codecs.encode",
        "builtins.bytearray",
        "builtins.set",
        "builtins.complex",
        "torch._tensor._rebuild_from_type_v2",
        "torch.storage.TypedStorage",
        "torch.storage.UntypedStorage",
        *(f"torch.{name}" for name in _DTYPE_NAMES),
        *(f"torch._utils.{name}" for name in _REBUILD),
        *(f"torch.{name}" for name in _LEGACY_STORAGES),
        *(f"torch.cuda.{name}" for name in _LEGACY_STORAGES if not name.startswith("Q")),
        *(f"torch.{t}Tensor" for t in _TENSOR_TYPES),
        *(f"torch.cuda.{t}Tensor" for t in _TENSOR_TYPES),
        *(f"torch.sparse.{t}Tensor" for t in _TENSOR_TYPES if t != "Bool"),
        *(f"torch.cuda.sparse.{t}Tensor" for t in _TENSOR_TYPES if t != "Bool"),
    }
)
