"""Find a checkpoint's files and read their headers into a :class:`Checkpoint`.

Follows the loaders' own precedence (transformers ``from_pretrained``): an index if there is
one, else ``model.safetensors``, else the single weight file there is. Broken files become
recorded problems so the scan can go on with the rest.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from pathlib import Path

from tiecheck.checkpoint import (
    AddedToken,
    Checkpoint,
    FileFormat,
    FileProblem,
    LoadIssue,
    ModelConfig,
    ShardIndex,
    WeightFile,
)
from tiecheck.errors import FormatError, TargetNotFound, UnreadableCheckpoint
from tiecheck.formats.intent import generation_evidence
from tiecheck.formats.jsonfiles import parse_config, parse_index
from tiecheck.formats.lfs import MAX_POINTER_SIZE, parse_lfs_pointer
from tiecheck.formats.safetensors import read_header
from tiecheck.formats.tokenizer import TOKENIZER_FILES, read_added_tokens
from tiecheck.io.paths import within
from tiecheck.io.source import ByteSource, CheckpointStore, LocalStore
from tiecheck.ties.table import is_base_model

#: The problem of a weight file that is a Git LFS pointer (TC011), for the rules.
LFS_POINTER = "lfs-pointer"

SINGLE_FILE = "model.safetensors"
INDEX_SUFFIX = ".safetensors.index.json"
CONFIG_FILE = "config.json"
SHARD_PATTERN = re.compile(r"^(?P<prefix>.+)-(?P<part>\d+)-of-(?P<total>\d+)\.safetensors$")
# Pickle checkpoints, read only when there are no safetensors weights (transformers' precedence).
PICKLE_SINGLE = "pytorch_model.bin"
PICKLE_INDEX_SUFFIX = ".bin.index.json"
PICKLE_SHARD_PATTERN = re.compile(r"^(?P<prefix>.+)-(?P<part>\d+)-of-(?P<total>\d+)\.bin$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
#: Pickles a transformers Trainer writes beside the weights: not weights, never scanned as such.
NOT_WEIGHTS = re.compile(r"^(training_args\.bin|optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state.*\.pth)$")
#: Every pickle-format file: all of them are read for their imports (TC401), weights or not.
PICKLE_FORMAT_SUFFIXES = (*PICKLE_SUFFIXES, ".ckpt", ".pkl")
#: Beside the weights, any name a pickle goes by (``.pth.tar``, joblib's dumps), in any case: what
#: matters is what loading it runs, and ``torch.load`` or ``pickle.load`` do not look at the name.
_SIDE_SUFFIXES = (*PICKLE_FORMAT_SUFFIXES, ".pickle", ".joblib", ".tar")


def is_pickle_name(name: str) -> bool:
    """A name a pickle goes by, in any letter case: such a file is read for its imports wherever it is found."""
    return name.lower().endswith(_SIDE_SUFFIXES)


#: A side pickle loaded with weights_only=False: the issue code recorded for it (TC401).
SIDE_PICKLE = "TC401"
#: A side pickle whose imports could not all be walked (padding past the opcode budget): TC403.
SIDE_PICKLE_UNCHECKED = "TC403"
#: Imports that the Trainer's own side files hold (``training_args.bin``: its argument classes and enums;
#: ``rng_state*.pth``: numpy arrays). Only the classes of these modules, and only in files named like the
#: Trainer's: anything else a side pickle imports (``os.system``, ``builtins.exec``...) is reported.
_TRAINER_CLASSES = re.compile(
    r"^(transformers\.(training_args|trainer_utils|trainer_pt_utils|debug_utils)|accelerate\.(state|utils\.dataclasses))"
    r"\.[A-Z][A-Za-z0-9_]*$"
)
_TRAINER_GLOBALS = frozenset(
    f"numpy.{core}.{name}" for core in ("core", "_core") for name in ("multiarray._reconstruct", "multiarray.scalar")
) | {"numpy.ndarray", "numpy.dtype"}


def store_for(path: str | Path) -> CheckpointStore:
    """The store for a local path: a checkpoint folder or a single ``.safetensors`` file."""
    target = Path(path)
    if not target.exists():
        raise TargetNotFound(f"{target}: no such file or directory")
    if target.is_dir():
        return LocalStore(target)
    if target.name.endswith((INDEX_SUFFIX, PICKLE_INDEX_SUFFIX)):
        return LocalStore(target.parent)
    if target.suffix == ".safetensors" or is_pickle_name(target.name):
        if _indexed_beside(target):
            # One shard of a sharded checkpoint is not a model: its index makes loaders read the folder.
            return LocalStore(target.parent)
        return LocalStore(target.parent, only=target.name)
    raise UnreadableCheckpoint(
        f"{target}: not a checkpoint (expected a folder, a .safetensors or .bin/.pt/.pth/.ckpt/.pkl file, or an index)"
    )


def _indexed_beside(target: Path) -> bool:
    """Whether an index in the same folder maps tensors to ``target`` (a shard named on its own)."""
    for entry in target.parent.iterdir():
        if entry.name.endswith((INDEX_SUFFIX, PICKLE_INDEX_SUFFIX)) and entry.is_file():
            try:
                index = parse_index(entry.read_text(encoding="utf-8"), entry.name)
            except (FormatError, OSError, UnicodeDecodeError):
                continue
            if target.name in index.weight_map.values():
                return True
    return False


def load_checkpoint(store: CheckpointStore) -> Checkpoint:
    names = store.list_files()
    issues: list[LoadIssue] = []
    _leftovers(store, names, issues)
    config, config_file = _read_config(store, names, issues)
    pickle = _pickle_only(names)
    single, index_suffix, shard_pattern = (
        (PICKLE_SINGLE, PICKLE_INDEX_SUFFIX, PICKLE_SHARD_PATTERN)
        if pickle
        else (SINGLE_FILE, INDEX_SUFFIX, SHARD_PATTERN)
    )
    shadowing = single in names and any(n.endswith(index_suffix) for n in names)
    index, index_name = (None, None) if shadowing else _read_index(store, names, issues, index_suffix)

    weight_names: list[str]
    orphans: list[str] = []
    missing: list[str] = []
    if shadowing:
        # transformers loads the single weights file when it exists and never opens the index.
        weight_names = [single]
        orphans = [n for n in names if n.endswith(index_suffix) or shard_pattern.match(n)]
    elif index is not None:
        referenced = sorted(set(index.weight_map.values()))
        listed = set(names)  # one listing, not a stat per name: an index may name a million shards
        present = {n for n in referenced if n in listed or ("/" in n and store.exists(n))}
        weight_names = [n for n in referenced if n in present]
        missing = [n for n in referenced if n not in present]
        orphans = [n for n in names if _is_weight_name(n, pickle) and n not in present]
    elif index_name is not None:
        # The index is broken: read every shard-looking file so the rest can still be checked.
        weight_names = [n for n in names if _is_weight_name(n, pickle)]
    elif SINGLE_FILE in names:
        weight_names = [SINGLE_FILE]
    elif pickle:
        weight_names = [PICKLE_SINGLE] if PICKLE_SINGLE in names else _pickle_weights(names)
        shards = [n for n in weight_names if PICKLE_SHARD_PATTERN.match(n)]
        if len(shards) > 1:
            issues.append(LoadIssue("TC008", shards[0], "shards without an index: loaders cannot find the tensors"))
    else:
        weight_names = [n for n in names if n.endswith(".safetensors")]
        shards = [n for n in weight_names if SHARD_PATTERN.match(n)]
        if len(shards) > 1:
            issues.append(LoadIssue("TC008", shards[0], "shards without an index: loaders cannot find the tensors"))
    side = [n for n in names if is_pickle_name(n) and n not in weight_names]
    if not weight_names and index_name is None and not side:
        found = "no .safetensors or pytorch_model*.bin weights found"
        raise UnreadableCheckpoint(f"{store.location}: not a checkpoint ({found}){_hint(store, names)}")

    outside = _outside(store, [*weight_names, *([index_name] if index_name else [])])
    for name in outside:
        issues.append(LoadIssue("TC008", name, "resolves outside the checkpoint folder (a symlink); not read"))
    weight_names = [n for n in weight_names if n not in outside]
    prefetch: Callable[[list[str]], None] | None = getattr(store, "prefetch_headers", None)
    if prefetch is not None:
        prefetch(weight_names)  # a remote store reads the headers concurrently, not one request after another
    files = tuple(_read_weight_file(store, n) for n in weight_names)
    issues += [issue for n in side if (issue := _side_pickle(store, n)) is not None]
    return Checkpoint(
        location=store.location,
        files=files,
        index=index,
        config=config,
        config_file=config_file,
        orphans=tuple(orphans),
        shadowed_by=single if shadowing else None,
        missing_files=tuple(missing),
        issues=tuple(issues),
        generation_evidence=generation_evidence(store, names) if _base_model(config) else (),
        # An adapter folder has no config.json; beside one, the weights are a model's (a repo can ship both).
        adapter_config=ADAPTER_CONFIG if ADAPTER_CONFIG in names and config_file is None else None,
        added_tokens=_added_tokens(store, names) if config is not None else (),
    )


def _added_tokens(store: CheckpointStore, names: list[str]) -> tuple[AddedToken, ...]:
    """The tokenizer's added tokens, from its files in the folder (never through a symlink out of it)."""
    present = [n for n in names if n in TOKENIZER_FILES]
    outside = _outside(store, present)
    return read_added_tokens(store, [n for n in present if n not in outside])


#: What PEFT's save_pretrained writes beside an adapter's weights (``adapter_model.safetensors``).
ADAPTER_CONFIG = "adapter_config.json"
_FSDP_FOLDER = "pytorch_model_fsdp_0"


def _hint(store: CheckpointStore, names: list[str]) -> str:
    """What a folder without weights holds instead, when it is a format loaders cannot read as it is."""
    # accelerate's FSDP save with SHARDED_STATE_DICT: pytorch_model_fsdp_0/ holds the distributed checkpoint
    if any(n.endswith(".distcp") for n in names) or store.exists(f"{_FSDP_FOLDER}/.metadata"):
        return (
            "; it holds a torch.distributed.checkpoint (*.distcp, FSDP's sharded state dict), which loaders do not "
            "read: merge it (`accelerate merge-weights`, or dcp_to_torch_save) and save the model with save_pretrained"
        )
    if "zero_to_fp32.py" in names:
        return (
            "; it holds a DeepSpeed checkpoint (zero_to_fp32.py beside global_step*/): run zero_to_fp32.py to write "
            "the consolidated weights"
        )
    if any(n.endswith(".gguf") for n in names):
        return "; it holds GGUF (llama.cpp's format), not a transformers checkpoint"
    return ""


def _base_model(config: ModelConfig | None) -> bool:
    return config is not None and bool(config.architectures) and is_base_model(config.architectures[0])


def _outside(store: CheckpointStore, names: list[str]) -> set[str]:
    """Names of a local folder that lead out of it through a symlink (a Hugging Face cache's blobs/ excepted)."""
    if not isinstance(store, LocalStore):
        return set()
    return {n for n in names if not within(store.root, store.root / n)}


def _leftovers(store: CheckpointStore, names: list[str], issues: list[LoadIssue]) -> None:
    """Files an interrupted ``tiecheck fix`` left: a pending journal, or temp files.

    In a local folder they are validated as the fix would (they may have come with the download, not
    from a fix): what the fix refuses to run is reported as such, and not as fixable.
    """
    journal = ".tiecheck-fix.json" in names
    temps = [n for n in names if n.startswith(".tiecheck-tmp-")]
    if not journal and not temps:
        return
    if isinstance(store, LocalStore):
        from tiecheck.fixer.journal import JournalRefused, read_pending

        try:
            read_pending(store.root)
        except JournalRefused as exc:
            detail = f"left as if by an interrupted fix, but tiecheck will not run or delete it: {exc.why}"
            issues.append(LoadIssue("TC020", ".tiecheck-fix.json" if journal else temps[0], detail, fixable=False))
            return
    if journal:
        issues.append(LoadIssue("TC020", ".tiecheck-fix.json", "a pending fix journal: a fix was interrupted"))
    if temps:
        issues.append(LoadIssue("TC020", temps[0], f"{len(temps)} temporary file(s) of an interrupted fix"))


def _is_weight_name(name: str, pickle: bool = False) -> bool:
    if pickle:
        return bool(PICKLE_SHARD_PATTERN.match(name)) or name == PICKLE_SINGLE
    return bool(SHARD_PATTERN.match(name)) or name == SINGLE_FILE


def _pickle_only(names: list[str]) -> bool:
    """No ``model.safetensors`` and no safetensors index, but pickle weights: transformers reads ``.bin``.

    Other safetensors files do not count: transformers reads neither stray shards without an index
    (a ``fix --to-safetensors`` interrupted before its commit point looks like this) nor files under
    other names (``adapter_model.safetensors``) when pickle weights are there.
    """
    if SINGLE_FILE in names or any(n.endswith(INDEX_SUFFIX) for n in names):
        return False
    return any(n.endswith(PICKLE_INDEX_SUFFIX) for n in names) or bool(_pickle_weights(names))


def _pickle_weights(names: list[str]) -> list[str]:
    return [n for n in names if n.endswith(PICKLE_SUFFIXES) and not NOT_WEIGHTS.match(n)]


def _read_index(
    store: CheckpointStore, names: list[str], issues: list[LoadIssue], suffix: str = INDEX_SUFFIX
) -> tuple[ShardIndex | None, str | None]:
    candidates = [n for n in names if n.endswith(suffix)]
    if not candidates:
        return None, None
    preferred = ("pytorch_model" if suffix == PICKLE_INDEX_SUFFIX else "model") + suffix
    name = preferred if preferred in candidates else candidates[0]
    try:
        return parse_index(store.read_text(name), name), name
    except FormatError as exc:
        issues.append(LoadIssue("TC008", name, exc.detail))
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(LoadIssue("TC008", name, f"cannot be read ({_os_reason(exc)})"))
    return None, name


def _read_config(
    store: CheckpointStore, names: list[str], issues: list[LoadIssue]
) -> tuple[ModelConfig | None, str | None]:
    if CONFIG_FILE not in names:
        odd = _not_a_file(store, CONFIG_FILE)
        if odd is None:
            return None, None
        # Loaders open it all the same: a folder fails, a FIFO blocks, /dev/zero never ends.
        issues.append(LoadIssue("TC009", CONFIG_FILE, f"is {odd}, not a regular file; not read"))
        return None, CONFIG_FILE
    if _outside(store, [CONFIG_FILE]):
        issues.append(LoadIssue("TC009", CONFIG_FILE, "resolves outside the checkpoint folder (a symlink); not read"))
        return None, CONFIG_FILE
    try:
        return parse_config(store.read_text(CONFIG_FILE)), CONFIG_FILE
    except FormatError as exc:
        issues.append(LoadIssue("TC009", CONFIG_FILE, exc.detail))
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(LoadIssue("TC009", CONFIG_FILE, f"cannot be read ({_os_reason(exc)})"))
    return None, CONFIG_FILE


def _not_a_file(store: CheckpointStore, name: str) -> str | None:
    """What the local entry ``name`` is when it exists but is no regular file (nor a link to one); else None."""
    if not isinstance(store, LocalStore):
        return None
    path = store.root / name
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a broken symlink" if path.is_symlink() else None
    except OSError as exc:
        return f"unreadable ({_os_reason(exc)})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket or other special file"


def _read_weight_file(store: CheckpointStore, name: str) -> WeightFile:
    kind = FileFormat.SAFETENSORS if name.endswith(".safetensors") else FileFormat.PICKLE
    try:
        source = store.open(name)
    except OSError as exc:
        return WeightFile(name, kind, 0, problem=FileProblem("io", f"cannot be read ({_os_reason(exc)})"))
    if source.size <= MAX_POINTER_SIZE:  # a Git LFS pointer where the weights should be?
        pointer = parse_lfs_pointer(bytes(source.read(0, source.size)))
        if pointer is not None:
            source.close()
            detail = f"a Git LFS pointer to a {pointer.size:,}-byte file (sha256 {pointer.oid[:12]}...)"
            return WeightFile(name, kind, source.size, problem=FileProblem(LFS_POINTER, detail))
    if kind is FileFormat.PICKLE:
        return _read_pickle_file(source, name)
    try:
        header = read_header(source, name)
    except FormatError as exc:
        return WeightFile(
            name, FileFormat.SAFETENSORS, source.size, problem=FileProblem(exc.rule, exc.detail, exc.tensor)
        )
    except OSError as exc:
        return WeightFile(name, FileFormat.SAFETENSORS, source.size, problem=FileProblem("io", _os_reason(exc)))
    finally:
        source.close()
    return WeightFile(name, FileFormat.SAFETENSORS, source.size, header.tensors, header.metadata)


def _read_pickle_file(source: ByteSource, name: str) -> WeightFile:
    from tiecheck.formats.torch_pickle import read_torch_file  # only for pickles: a sixth of a scan's imports

    try:
        torch_file = read_torch_file(source, name)
    except FormatError as exc:
        return WeightFile(name, FileFormat.PICKLE, source.size, problem=FileProblem(exc.rule, exc.detail, exc.tensor))
    except OSError as exc:
        return WeightFile(name, FileFormat.PICKLE, source.size, problem=FileProblem("io", _os_reason(exc)))
    finally:
        source.close()
    return WeightFile(name, FileFormat.PICKLE, source.size, torch_file.tensors, torch_file.metadata)


def _side_pickle(store: CheckpointStore, name: str) -> LoadIssue | None:
    """A pickle-format file the loader does not read as weights: only its imports matter (TC401).

    Loading it (Trainer resume, a user's ``torch.load``) runs what it imports. A pickle too long to walk
    whole is reported as unchecked (TC403): what lies past the walk's limits may import anything. Other
    problems (not a torch file, truncated) are not reported: it is not weights, and may be any pickle.
    """
    from tiecheck.formats.torch_pickle import UncheckedPickleError, UnsafePickleError, read_torch_file

    try:
        source = store.open(name)
    except OSError:
        return None
    try:
        read_torch_file(source, name)
    except UnsafePickleError as exc:
        trainer = NOT_WEIGHTS.match(name) is not None
        if trainer and all(g in _TRAINER_GLOBALS or _TRAINER_CLASSES.match(g) for g in exc.globals):
            return None
        return LoadIssue(SIDE_PICKLE, name, exc.detail)
    except UncheckedPickleError as exc:
        return LoadIssue(SIDE_PICKLE_UNCHECKED, name, exc.detail)
    except (FormatError, OSError):
        return None
    finally:
        source.close()
    return None


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)
