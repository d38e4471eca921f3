"""Reading PyTorch pickle checkpoints (``pytorch_model.bin``) without unpickling them.

``torch.load`` runs whatever the pickle tells it to; a CI gate scanning untrusted uploads
must never do that. This reader walks the pickle's opcodes (``pickletools.genops`` only
decodes them) through a small symbolic stack machine that knows the few callables torch
uses to rebuild tensors, and reads the zip's central directory and local headers to locate
every storage record. No tensor byte is read, no import happens, no code runs.

Anything the pickle imports outside the allowlist of ``torch.load(weights_only=True)`` makes
the file unsafe (TC401): its globals are listed and nothing else is interpreted.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickletools
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import BinaryIO

from tiecheck.checkpoint import TensorRecord
from tiecheck.errors import FormatError
from tiecheck.formats.dtypes import DTYPES
from tiecheck.io.source import ByteSource

#: Sub-rules of :class:`FormatError` raised here; ``UNSAFE`` maps to TC401, the others to TC403.
UNSAFE = "unsafe-pickle"
UNREADABLE = "unreadable-pickle"

#: data.pkl of a real state dict is kilobytes to a few MB; a bigger one is refused, not read.
MAX_PICKLE_SIZE = 256 << 20
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
ZIP_MAGIC = b"PK\x03\x04"
LOCAL_HEADER = struct.Struct("<4s5H3I2H")
WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")

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


@dataclass(frozen=True)
class TorchFile:
    """What a pickle checkpoint holds: its tensors (with storage keys) and how it was written."""

    tensors: tuple[TensorRecord, ...]
    metadata: Mapping[str, str]


class UnsafePickleError(FormatError):
    """The pickle imports globals that ``torch.load(weights_only=True)`` refuses."""

    def __init__(self, globals_: list[str], detail: str) -> None:
        super().__init__(UNSAFE, detail)
        self.globals = tuple(globals_)


def _unreadable(detail: str, tensor: str | None = None) -> FormatError:
    return FormatError(UNREADABLE, detail, tensor)


# --- the symbolic values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Global:
    module: str
    name: str

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    nbytes: int
    location: str


@dataclass(frozen=True, eq=False)
class _Tensor:
    storage: _Storage
    dtype: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class _Opaque:
    """Something built by a call tiecheck does not model (a set, a device, a quantised tensor)."""

    what: str


class _Broken(Exception):
    """The opcode stream does not make sense as a state dict; the reason is the message."""


_MACHINE_ERRORS = (_Broken, IndexError, KeyError, TypeError, ValueError, AttributeError, RecursionError)


# --- the stack machine ------------------------------------------------------------------------------


@dataclass
class PickleWalk:
    """The outcome of walking one pickle: its value (when it made sense) and every global it imports."""

    value: object = None
    globals: tuple[str, ...] = ()
    unsafe: tuple[str, ...] = ()
    protocol: int = 0
    broken: str | None = None
    end: int = 0
    """Offset just after STOP."""
    storages: Mapping[str, _Storage] = field(default_factory=dict)
    """Every storage a persistent id declares, by key (also those outside the state dict)."""


def walk_pickle(stream: BinaryIO | bytes) -> PickleWalk:
    """Walk one pickle without executing it. Never raises for malformed input: see ``broken``."""
    if isinstance(stream, bytes | bytearray):
        stream = io.BytesIO(stream)
    machine = _Machine()
    walk = PickleWalk()
    try:
        for opcode, arg, pos in pickletools.genops(stream):
            if machine.broken is None:
                try:
                    machine.step(opcode.name, arg)
                except _MACHINE_ERRORS as exc:
                    machine.broken = f"{opcode.name} at byte {pos}: {_reason(exc)}"
            else:
                machine.note_global_only(opcode.name, arg)
            if opcode.name == "STOP":
                break
    except (ValueError, struct.error, EOFError, UnicodeDecodeError) as exc:
        if machine.broken is None:
            machine.broken = f"the pickle stream is corrupt or truncated ({_reason(exc)})"
    walk.value = machine.result
    walk.globals = tuple(dict.fromkeys(machine.globals))
    walk.unsafe = tuple(dict.fromkeys(machine.unsafe))
    walk.protocol = machine.protocol
    walk.broken = machine.broken
    walk.end = stream.tell()
    walk.storages = MappingProxyType(machine.storages)
    return walk


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."


class _Machine:
    def __init__(self) -> None:
        self.stack: list[object] = []
        self.metastack: list[list[object]] = []
        self.memo: dict[int, object] = {}
        self.globals: list[str] = []
        self.unsafe: list[str] = []
        self.protocol = 0
        self.broken: str | None = None
        self.result: object = None
        self.storages: dict[str, _Storage] = {}

    # Once the machine is lost, only GLOBAL arguments can still be read; a STACK_GLOBAL then
    # names something unknown, which cannot be proven safe.
    def note_global_only(self, name: str, arg: object) -> None:
        if name in ("GLOBAL", "INST"):
            self._global(*str(arg).split(" ", 1))
        elif name == "STACK_GLOBAL":
            self.globals.append("<unresolved STACK_GLOBAL>")
            self.unsafe.append("<unresolved STACK_GLOBAL>")

    def _global(self, module: str, name: str) -> _Global:
        if self.protocol < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        found = _Global(module, name)
        self.globals.append(found.full)
        if found.full not in SAFE_GLOBALS:
            self.unsafe.append(found.full)
        return found

    def _pop_mark(self) -> list[object]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def step(self, name: str, arg: object) -> None:
        stack = self.stack
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name == "PROTO":
            assert isinstance(arg, int)
            self.protocol = arg
        elif name == "FRAME":
            pass
        elif name == "STOP":
            self.result = stack.pop()
        elif name == "MARK":
            self.metastack.append(stack)
            self.stack = []
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                self._pop_mark()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "BYTEARRAY8":
            stack.append(bytes(arg))  # type: ignore[call-overload]
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "TUPLE":
            items = self._pop_mark()
            self.stack.append(tuple(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                raise _Broken("stack underflow")
            stack[-n:] = [tuple(stack[-n:])]
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "LIST":
            items = self._pop_mark()
            self.stack.append(items)
        elif name == "APPEND":
            item = stack.pop()
            self._list().append(item)
        elif name == "APPENDS":
            items = self._pop_mark()
            self._list().extend(items)
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "DICT":
            items = self._pop_mark()
            self.stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            self._dict()[key] = value
        elif name == "SETITEMS":
            items = self._pop_mark()
            target = self._dict()
            if len(items) % 2:
                raise _Broken("odd number of items")
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]
        elif name in ("EMPTY_SET", "FROZENSET"):
            if name == "FROZENSET":
                self._pop_mark()
            self.stack.append(_Opaque("set"))
        elif name == "ADDITEMS":
            self._pop_mark()
            if not isinstance(self.stack[-1], _Opaque):
                raise _Broken("ADDITEMS on something that is not a set")
        elif name == "GLOBAL":
            stack.append(self._global(*str(arg).split(" ", 1)))
        elif name == "STACK_GLOBAL":
            global_name, module = stack.pop(), stack.pop()
            if not isinstance(module, str) or not isinstance(global_name, str):
                self.note_global_only(name, arg)
                raise _Broken("STACK_GLOBAL operands are not strings")
            stack.append(self._global(module, global_name))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            assert isinstance(arg, int)
            if arg < 0:
                raise _Broken("negative memo index")
            self.memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            assert isinstance(arg, int)
            if arg not in self.memo:
                raise _Broken(f"memo index {arg} was never stored")
            stack.append(self.memo[arg])
        elif name == "BINPERSID":
            storage = _persistent(stack.pop())
            known = self.storages.setdefault(storage.key, storage)
            if (known.dtype, known.nbytes) != (storage.dtype, storage.nbytes):
                raise _Broken(f"storage {storage.key} is declared twice with different sizes or types")
            stack.append(known)
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack[-1] = self._call(stack[-1], args)
        elif name == "NEWOBJ_EX":
            stack.pop()  # keyword arguments
            args = stack.pop()
            stack[-1] = self._call(stack[-1], args)
        elif name == "BUILD":
            stack.pop()  # state: OrderedDict._metadata, Parameter flags; nothing tiecheck needs
            if not stack:
                raise _Broken("stack underflow")
        elif name == "INST":
            self._global(*str(arg).split(" ", 1))
            raise _Broken("INST builds an arbitrary object (torch never writes it)")
        elif name == "OBJ":
            raise _Broken("OBJ builds an arbitrary object (torch never writes it)")
        else:
            raise _Broken(f"opcode {name} is not used by torch.save")

    def _list(self) -> list[object]:
        target = self.stack[-1]
        if type(target) is not list:
            raise _Broken(f"expected a list on the stack, found {_describe(target)}")
        return target

    def _dict(self) -> dict[object, object]:
        target = self.stack[-1]
        if type(target) is not dict:
            raise _Broken(f"expected a dict on the stack, found {_describe(target)}")
        return target

    def _call(self, func: object, args: object) -> object:
        if not isinstance(func, _Global):
            raise _Broken(f"calls {_describe(func)}, which is not a global")
        if not isinstance(args, tuple):
            raise _Broken(f"arguments of {func.full} are {_describe(args)}, not a tuple")
        if func.full in self.unsafe:
            return _Opaque(func.full)
        name = func.full
        if name in ("collections.OrderedDict", "collections.Counter"):
            result: dict[object, object] = {}
            if args and isinstance(args[0], list):
                for pair in args[0]:
                    if not (isinstance(pair, tuple) and len(pair) == 2):
                        raise _Broken(f"{name} items are not pairs")
                    result[pair[0]] = pair[1]
            return result
        if name in ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2"):
            return _tensor(name, args, None)
        if name == "torch._utils._rebuild_tensor_v3":
            if len(args) < 7:
                raise _Broken(f"{name} takes 7 arguments, got {len(args)}")
            return _tensor(name, args, args[6])
        if name in (
            "torch._utils._rebuild_parameter",
            "torch._utils._rebuild_parameter_with_state",
            "torch.nn.parameter.Parameter",
        ):
            return args[0] if args and isinstance(args[0], _Tensor) else _Opaque(name)
        if name == "torch._tensor._rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[2], tuple):
            inner = self._call(args[0], args[2])
            new_type = args[1]
            plain = isinstance(new_type, _Global) and new_type.full in ("torch.Tensor", "torch.nn.parameter.Parameter")
            return inner if plain else _Opaque(f"{name} of {_describe(new_type)}")
        if name == "torch.Size" and len(args) == 1 and isinstance(args[0], tuple):
            return args[0]
        return _Opaque(name)


_PUSH_ARG = frozenset(
    " ".join(
        (
            "INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING",
            "UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8",
        )
    ).split()
)


def _describe(value: object) -> str:
    if isinstance(value, _Global):
        return value.full
    if isinstance(value, _Opaque):
        return f"<{value.what}>"
    if isinstance(value, _Tensor):
        return "a tensor"
    return f"a {type(value).__name__}"


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _persistent(pid: object) -> _Storage:
    """``('storage', <StorageType>, key, location, numel)``, the only persistent id torch writes.

    The legacy format adds a sixth member, view metadata, which is None unless the tensor
    views a storage view (torch < 0.4; not supported).
    """
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and _text(pid[0]) == "storage"):
        raise _Broken(f"persistent id {_short(pid)} is not ('storage', type, key, location, numel)")
    if len(pid) == 6 and pid[5] is not None:
        raise _Broken("storage views (torch < 0.4) are not supported")
    _, storage_type, key, location, numel = pid[:5]
    key, location = _text(key), _text(location)
    if not isinstance(storage_type, _Global) or key is None or location is None or not _count(numel):
        raise _Broken(f"persistent id {_short(pid)} is malformed")
    assert isinstance(numel, int)
    kind = storage_type.name
    if storage_type.full == "torch.storage.UntypedStorage":
        return _Storage(key, "U8", numel, location)
    if kind not in _STORAGE_DTYPES:
        raise _Broken(f"storage type {storage_type.full} is not supported")
    dtype = _STORAGE_DTYPES[kind]
    return _Storage(key, dtype, numel * DTYPES[dtype].bits // 8, location)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:120] + "..."


def _tensor(func: str, args: tuple[object, ...], dtype_arg: object) -> _Tensor:
    if len(args) < 4:
        raise _Broken(f"{func} takes at least 4 arguments, got {len(args)}")
    storage, offset, shape, stride = args[:4]
    if not isinstance(storage, _Storage):
        raise _Broken(f"{func} is given {_describe(storage)} instead of a storage")
    if not _count(offset):
        raise _Broken(f"{func} storage offset {offset!r} is not a non-negative integer")
    if not (isinstance(shape, tuple) and isinstance(stride, tuple) and len(shape) == len(stride)):
        raise _Broken(f"{func} shape {_short(shape)} and stride {_short(stride)} do not match")
    if not all(_count(d) for d in (*shape, *stride)):
        raise _Broken(f"{func} shape {_short(shape)} or stride {_short(stride)} is not non-negative integers")
    dtype = storage.dtype
    if dtype_arg is not None:
        full = dtype_arg.full if isinstance(dtype_arg, _Global) else None
        if full not in _TORCH_DTYPES:
            raise _Broken(f"dtype {_describe(dtype_arg)} is not supported")
        dtype = _TORCH_DTYPES[full]
    assert isinstance(offset, int)
    return _Tensor(storage, dtype, offset, tuple(shape), tuple(stride))


# --- the file ---------------------------------------------------------------------------------------


class _SourceFile(io.RawIOBase):
    """A read-only file object over a :class:`ByteSource`, for ``zipfile`` and ``genops``.

    ``read`` and ``readline`` never allocate more than the file holds: a hostile length prefix
    (BINBYTES8 of 2**60 bytes) costs nothing, unlike ``io.BufferedReader``, which allocates first.
    """

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._source.size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the file")
        self._pos = base + offset
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._source.size - self._pos)
        data = bytes(self._source.read(self._pos, size))
        self._pos += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = self._source.size - self._pos if size is None or size < 0 else size
        line = bytearray()
        while len(line) < limit:
            chunk = bytes(self._source.read(self._pos, min(4096, limit - len(line))))
            if not chunk:
                break
            end = chunk.find(b"\n")
            if end >= 0:
                chunk = chunk[: end + 1]
            line += chunk
            self._pos += len(chunk)
            if end >= 0:
                break
        return bytes(line)

    def peek_byte(self) -> bytes:
        return bytes(self._source.read(self._pos, 1))

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._source.read(self._pos, len(view))
        n = len(data)
        view[:n] = data
        self._pos += n
        return n


def detect_format(head: bytes) -> str:
    """Name a weight file's container from its first bytes (512 are enough)."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(LEGACY_MAGIC):
        return "legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:1] == b"\x80":
        return "pickle"
    if not head:
        return "empty"
    return "unknown"


def read_torch_file(source: ByteSource, file_name: str) -> TorchFile:
    """Read the tensor table of a ``torch.save`` file; raises :class:`FormatError` (TC401/TC403)."""
    kind = detect_format(bytes(source.read(0, 512)))
    if kind == "zip":
        return _read_zip(source, file_name)
    if kind == "empty":
        raise _unreadable("the file is empty")
    if kind == "tar":
        raise _unreadable("legacy tar format (torch < 0.1.10) is not supported; re-save it with a recent torch")
    if kind == "unknown":
        raise _unreadable("not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    # Legacy and bare pickles: walk the leading pickles (unsafe globals first), then read or refuse.
    stream = _SourceFile(source)
    walks: list[PickleWalk] = []
    for _ in range(len(LEGACY_PICKLES) if kind == "legacy" else 1):
        walks.append(walk_pickle(stream))  # type: ignore[arg-type]
        if walks[-1].broken or stream.peek_byte() != b"\x80":
            break
    unsafe = [g for walk in walks for g in walk.unsafe]
    if unsafe:
        raise _unsafe(list(dict.fromkeys(unsafe)), walks)
    if kind == "legacy":
        return _read_legacy(source, file_name, walks, stream.tell())
    raise _unreadable("a bare pickle, not a torch.save zip archive")


#: The pickles at the start of a legacy (non-zip) file; the storages' bytes follow the last one.
LEGACY_PICKLES = ("magic number", "protocol version", "system info", "object", "storage keys")
LEGACY_VERSION = 1001
LEGACY_NAME = "legacy non-zip torch format (torch < 1.6 or _use_new_zipfile_serialization=False)"


def _read_legacy(source: ByteSource, file_name: str, walks: list[PickleWalk], data_start: int) -> TorchFile:
    """``torch.save``'s format before the zip: five pickles, then each storage as int64 numel + bytes."""
    broken = next(((i, w.broken) for i, w in enumerate(walks) if w.broken), None)
    if broken is not None:
        raise _unreadable(f"{LEGACY_NAME}: the {LEGACY_PICKLES[broken[0]]} pickle cannot be walked: {broken[1]}")
    if len(walks) < len(LEGACY_PICKLES):
        raise _unreadable(f"{LEGACY_NAME}: the file ends after the {LEGACY_PICKLES[len(walks) - 1]} pickle")
    _, version, sys_info, main, keys = walks
    if version.value != LEGACY_VERSION:
        raise _unreadable(f"{LEGACY_NAME}: protocol version {_short(version.value)} is not supported")
    if isinstance(sys_info.value, dict) and sys_info.value.get("little_endian") is False:
        raise _unreadable(f"{LEGACY_NAME}: big-endian files are not supported")
    if not (isinstance(keys.value, list) and all(isinstance(k, str) for k in keys.value)):
        raise _unreadable(f"{LEGACY_NAME}: the storage keys pickle is not a list of strings")
    entries, wrapper = _state_dict(main.value)
    starts: dict[str, int] = {}
    offset = data_start
    for key in keys.value:
        storage = main.storages.get(key)
        if storage is None:
            raise _unreadable(f"{LEGACY_NAME}: storage {key} is listed but never declared")
        header = bytes(source.read(offset, 8))
        itemsize = DTYPES[storage.dtype].bits // 8
        if len(header) < 8 or offset + 8 + storage.nbytes > source.size:
            raise _unreadable(f"{LEGACY_NAME}: storage {key} runs past the end of the file (truncated?)")
        numel = int.from_bytes(header, "little")
        if numel * itemsize != storage.nbytes:
            raise _unreadable(
                f"{LEGACY_NAME}: storage {key} holds {numel:,} elements, the pickle declares "
                f"{storage.nbytes // itemsize:,}"
            )
        starts[key] = offset + 8
        offset += 8 + storage.nbytes
    tensors = []
    for name, tensor in entries:
        if tensor.storage.key not in starts:
            raise _unreadable(f"{LEGACY_NAME}: storage {tensor.storage.key} is not in the file", name)
        tensors.append(_record(name, tensor, starts[tensor.storage.key], file_name))
    metadata = {"format": "torch-legacy", "pickle_protocol": str(main.protocol)}
    if wrapper:
        metadata["state_dict_key"] = wrapper
    return TorchFile(tuple(tensors), MappingProxyType(metadata))


def _printable(text: str) -> str:
    """Names come from hostile bytes: a newline in one must not break the one-line message."""
    return text if text.isprintable() else repr(text)


def _unsafe(globals_: list[str], walks: list[PickleWalk]) -> UnsafePickleError:
    names = [_printable(g) for g in globals_]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    stopped = next((w.broken for w in walks if w.broken), None)
    why = (
        f" (the walk lost track at {_printable(str(stopped))}, so later imports could not be named)" if stopped else ""
    )
    return UnsafePickleError(
        globals_,
        f"the pickle imports {shown}, outside what torch.load(weights_only=True) accepts{why}; "
        "loading it with weights_only=False runs code",
    )


#: What ``zipfile`` raises on a hostile directory (found by the mutation property test).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    struct.error,
    KeyError,
    IndexError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
)


def _read_zip(source: ByteSource, file_name: str) -> TorchFile:
    try:
        archive = zipfile.ZipFile(_SourceFile(source))
    except _ZIP_ERRORS as exc:
        raise _unreadable(f"the zip directory cannot be read ({_reason(exc)}): truncated or corrupt") from None
    with archive:
        infos = archive.infolist()
        if not infos:
            raise _unreadable("the zip archive is empty")
        root = infos[0].filename.split("/", 1)[0]
        names = {i.filename: i for i in infos}
        if (
            f"{root}/constants.pkl" in names
            or f"{root}/code/" in names
            or any(n.startswith(f"{root}/code/") for n in names)
        ):
            raise _unreadable("a TorchScript archive (torch.jit.save), not a state dict; tiecheck does not read it")
        pkl = names.get(f"{root}/data.pkl")
        if pkl is None:
            raise _unreadable(f"the zip archive has no {root}/data.pkl: not a torch.save checkpoint")
        if pkl.file_size > MAX_PICKLE_SIZE:
            raise _unreadable(f"{pkl.filename} is {pkl.file_size:,} bytes, over the {MAX_PICKLE_SIZE:,}-byte limit")
        metadata = {"format": "torch-zip", "archive_root": root}
        for record, key in (("byteorder", "byteorder"), ("version", "version"), (".data/version", "data_version")):
            info = names.get(f"{root}/{record}")
            if info is not None and info.file_size <= 64:
                metadata[key] = _read_member(archive, info).decode("ascii", "replace").strip()
        if metadata.get("byteorder", "little") != "little":
            raise _unreadable(f"byte order {metadata['byteorder']!r} is not supported (only little-endian)")
        walk = walk_pickle(_read_member(archive, pkl))
        if walk.unsafe:
            raise _unsafe(list(walk.unsafe), [walk])
        if walk.broken:
            raise _unreadable(f"{pkl.filename} cannot be walked: {walk.broken}")
        metadata["pickle_protocol"] = str(walk.protocol)
        entries, wrapper = _state_dict(walk.value)
        if wrapper:
            metadata["state_dict_key"] = wrapper
        ranges: dict[str, tuple[int, _Storage]] = {}
        tensors = []
        for name, tensor in entries:
            storage = tensor.storage
            known = ranges.get(storage.key)
            if known is None:
                start = _record_start(source, names, f"{root}/data/{storage.key}", storage, name)
                ranges[storage.key] = (start, storage)
            else:
                start, first = known
                if (first.dtype, first.nbytes) != (storage.dtype, storage.nbytes):
                    raise _unreadable(f"storage {storage.key} is declared twice with different sizes or types", name)
            tensors.append(_record(name, tensor, start, file_name))
    return TorchFile(tuple(tensors), MappingProxyType(metadata))


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except _ZIP_ERRORS as exc:
        raise _unreadable(f"{info.filename} cannot be read ({_reason(exc)})") from None


def _state_dict(value: object) -> tuple[list[tuple[str, _Tensor]], str | None]:
    """The tensors of a flat state dict, or of the state dict under a wrapper key."""
    if not isinstance(value, dict):
        raise _unreadable(f"the pickle holds {_describe(value)}, not a state dict")
    for key in (None, *WRAPPER_KEYS):
        holder = value if key is None else value.get(key)
        if not isinstance(holder, dict):
            continue
        entries = list(_tensors_in(holder))
        if entries or key is not None:
            return entries, key
    return [], None


def _tensors_in(holder: dict[object, object]) -> Iterator[tuple[str, _Tensor]]:
    for key, value in holder.items():
        name = key if isinstance(key, str) else str(key) if isinstance(key, int) else f"<{_describe(key)} key>"
        if isinstance(value, _Tensor):
            yield name, value
        elif isinstance(value, _Opaque) and value.what.startswith(("torch._utils._rebuild", "torch._tensor")):
            raise _unreadable(f"the tensor is built by {value.what}, a kind tiecheck does not read", name)


def _record_start(
    source: ByteSource, names: Mapping[str, zipfile.ZipInfo], record: str, storage: _Storage, tensor: str
) -> int:
    """Absolute offset of the record's bytes, after checking it is stored whole and uncompressed."""
    info = names.get(record)
    if info is None:
        raise _unreadable(f"storage record {record} is missing from the zip archive", tensor)
    if info.compress_type != zipfile.ZIP_STORED:
        raise _unreadable(f"storage record {record} is compressed; torch stores records uncompressed", tensor)
    if info.file_size != storage.nbytes or info.compress_size != storage.nbytes:
        raise _unreadable(
            f"storage record {record} holds {info.file_size:,} bytes, the pickle declares {storage.nbytes:,}", tensor
        )
    header = bytes(source.read(info.header_offset, LOCAL_HEADER.size))
    if len(header) < LOCAL_HEADER.size:
        raise _unreadable(f"the local header of {record} runs past the end of the file", tensor)
    fields = LOCAL_HEADER.unpack(header)
    if fields[0] != ZIP_MAGIC:
        raise _unreadable(f"the local header of {record} is corrupt", tensor)
    name_length, extra_length = fields[-2], fields[-1]
    local_name = bytes(source.read(info.header_offset + LOCAL_HEADER.size, name_length))
    if local_name.decode("utf-8", "replace") != record:
        raise _unreadable(f"the local header of {record} names {local_name!r}", tensor)
    start: int = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
    if start + storage.nbytes > source.size:
        raise _unreadable(f"storage record {record} runs past the end of the file (truncated?)", tensor)
    return start


def _record(name: str, tensor: _Tensor, record_start: int, file_name: str) -> TensorRecord:
    itemsize = DTYPES[tensor.dtype].bits // 8
    numel = math.prod(tensor.shape)
    if numel:
        last = tensor.offset + sum((d - 1) * s for d, s in zip(tensor.shape, tensor.stride, strict=True))
        if (last + 1) * itemsize > tensor.storage.nbytes:
            raise _unreadable(
                f"shape {list(tensor.shape)} with stride {list(tensor.stride)} at offset {tensor.offset} reaches "
                f"past its {tensor.storage.nbytes:,}-byte storage {tensor.storage.key}",
                name,
            )
    start = record_start + tensor.offset * itemsize
    return TensorRecord(
        name,
        tensor.dtype,
        tensor.shape,
        file_name,
        start,
        start + numel * itemsize,
        storage=tensor.storage.key,
        storage_offset=tensor.offset,
        stride=tensor.stride,
    )
