"""The symbolic stack machine that walks a pickle's opcodes without executing them.

``pickletools.genops`` only decodes opcodes; :class:`_Machine` gives them a meaning for the few
callables ``torch.save`` writes, records every global a pickle imports, and stays bounded on
hostile input: an opcode budget, integers of at most 64 bits, dict keys that are never hashed
unless they are plain scalars (a key nested a million tuples deep would recurse in C), and
messages that never ``repr`` an untrusted value.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, NoneType
from typing import BinaryIO

from tiecheck.formats._torch_globals import _STORAGE_DTYPES, _TORCH_DTYPES, SAFE_GLOBALS
from tiecheck.formats.dtypes import DTYPES

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
    exhausted: bool = False
    """The walk stopped at :data:`MAX_OPCODES`; later imports are unknown."""
    stopped: bool = False
    """The walk reached the STOP opcode (even if the machine lost track before): ``end`` is where it was."""


#: Opcodes walked before a pickle is refused (about 1.5 s): ``torch.save`` writes about 32 a tensor, so
#: a file of 30,000 tensors fits; a hostile stream of trivial opcodes would run for minutes and fill memory.
MAX_OPCODES = 1_000_000
#: Integers wider than this are no size, offset or count torch writes (the legacy magic number has 77
#: bits); a 20,000-bit one would not even print.
MAX_INT_BITS = 128
#: torch's own limit on a tensor's dimensions.
MAX_RANK = 64


def walk_pickle(stream: BinaryIO | bytes) -> PickleWalk:
    """Walk one pickle without executing it. Never raises for malformed input: see ``broken``."""
    if isinstance(stream, bytes | bytearray):
        stream = io.BytesIO(stream)
    machine = _Machine()
    walk = PickleWalk()
    frame_end: int | None = None
    try:
        for count, (opcode, arg, found_at) in enumerate(pickletools.genops(stream)):
            pos = found_at or 0
            if count >= MAX_OPCODES:
                walk.exhausted = True
                machine.broken = f"the pickle runs past the budget of {MAX_OPCODES:,} opcodes; tiecheck stopped there"
                break
            if frame_end is not None and pos > frame_end and machine.framing is None:
                machine.framing = f"an opcode at byte {pos:,} crosses the end of a frame at byte {frame_end:,}"
            if opcode.name == "FRAME":
                assert isinstance(arg, int)
                if frame_end is not None and pos < frame_end and machine.framing is None:
                    machine.framing = f"a frame starts at byte {pos:,}, inside the frame ending at {frame_end:,}"
                frame_end = pos + 9 + arg
            if machine.broken is None:
                try:
                    machine.step(opcode.name, arg)
                except _MACHINE_ERRORS as exc:
                    machine.broken = f"{opcode.name} at byte {pos:,}: {_reason(exc)}"
            else:
                machine.note_global_only(opcode.name, arg)
            if opcode.name == "STOP":
                walk.stopped = True
                break
    except (ValueError, struct.error, EOFError, UnicodeDecodeError, OverflowError) as exc:
        if machine.broken is None:
            machine.broken = f"the pickle stream is corrupt or truncated ({_reason(exc)})"
    end = stream.tell()
    if frame_end is not None and end < frame_end and machine.framing is None:
        machine.framing = f"the pickle stops at byte {end:,}, inside a frame that ends at byte {frame_end:,}"
    if machine.framing is not None and machine.broken is None:
        # Python's unpickler reads whole frames: it resumes where the frame ends, a scanner where STOP was.
        machine.broken = f"frames and opcodes disagree ({machine.framing}): readers would split the file differently"
    walk.value = machine.result
    walk.globals = tuple(dict.fromkeys(machine.globals))
    walk.unsafe = tuple(dict.fromkeys(machine.unsafe))
    walk.protocol = machine.protocol
    walk.broken = machine.broken
    walk.end = end
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
        self.framing: str | None = None

    # Once the machine is lost, only GLOBAL arguments can still be read; a STACK_GLOBAL then
    # names something unknown, which cannot be proven safe.
    def note_global_only(self, name: str, arg: object) -> None:
        if name in ("GLOBAL", "INST"):
            module, _, global_name = str(arg).partition(" ")
            self._global(module, global_name)
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
            if isinstance(arg, int) and arg.bit_length() > MAX_INT_BITS:
                raise _Broken(f"an integer of {arg.bit_length():,} bits (torch writes at most {MAX_INT_BITS})")
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
            self.stack.append({_key(k): v for k, v in zip(items[::2], items[1::2], strict=True)})
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            self._dict()[_key(key)] = value
        elif name == "SETITEMS":
            items = self._pop_mark()
            target = self._dict()
            if len(items) % 2:
                raise _Broken("odd number of items")
            for i in range(0, len(items), 2):
                target[_key(items[i])] = items[i + 1]
        elif name in ("EMPTY_SET", "FROZENSET"):
            if name == "FROZENSET":
                self._pop_mark()
            self.stack.append(_Opaque("set"))
        elif name == "ADDITEMS":
            self._pop_mark()
            if not isinstance(self.stack[-1], _Opaque):
                raise _Broken("ADDITEMS on something that is not a set")
        elif name == "GLOBAL":
            mod, _, attr = str(arg).partition(" ")
            stack.append(self._global(mod, attr))
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
            mod, _, attr = str(arg).partition(" ")
            self._global(mod, attr)
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
                    result[_key(pair[0])] = pair[1]
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
    """A value for a message, never through ``repr`` of a container (hostile nesting recurses)."""
    if isinstance(value, str | bytes):
        text = repr(value[:120])
        return text + ("..." if len(value) > 120 else "")
    if isinstance(value, bool | float | NoneType) or (isinstance(value, int) and value.bit_length() <= MAX_INT_BITS):
        return repr(value)
    if isinstance(value, tuple) and len(value) <= 8:
        return "(" + ", ".join(_describe(v) if isinstance(v, tuple | list | dict) else _short(v) for v in value) + ")"
    return _describe(value)


_SCALARS = (str, bytes, int, float, bool, NoneType)


def _key(value: object) -> object:
    """A dict key that is safe to hash: scalars as they are, anything else as a fresh opaque key.

    Hashing a tuple nested a million levels deep recurses in C and crashes the process; torch's
    state dicts are keyed by strings, so nothing is lost.
    """
    return value if type(value) in _SCALARS else _Opaque(_describe(value))


def _tensor(func: str, args: tuple[object, ...], dtype_arg: object) -> _Tensor:
    if len(args) < 4:
        raise _Broken(f"{func} takes at least 4 arguments, got {len(args)}")
    storage, offset, shape, stride = args[:4]
    if not isinstance(storage, _Storage):
        raise _Broken(f"{func} is given {_describe(storage)} instead of a storage")
    if not _count(offset):
        raise _Broken(f"{func} storage offset {offset!r} is not a non-negative integer")
    if isinstance(shape, tuple) and len(shape) > MAX_RANK:
        raise _Broken(f"{func} shape has {len(shape):,} dimensions (torch allows {MAX_RANK})")
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
