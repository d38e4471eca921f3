"""What a fix plan is made of: the output layout, the actions shown to people, the notes on what stays.

Built by :mod:`tiecheck.fixer.plan`, executed by :mod:`tiecheck.fixer.apply`, checked by
:mod:`tiecheck.fixer.verify`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from tiecheck.checkpoint import TensorRecord
from tiecheck.errors import FixRefused
from tiecheck.findings import Finding


class RefusedError(FixRefused):
    """The fix would lose or corrupt something (a differing duplicate...): nothing is touched."""


class ActionKind(str, Enum):
    DROP_TENSOR = "drop-tensor"
    REWRITE_SHARD = "rewrite-shard"
    REMOVE_SHARD = "remove-shard"
    RENAME_SHARD = "rename-shard"
    REWRITE_INDEX = "rewrite-index"
    EDIT_CONFIG = "edit-config"
    DELETE_ORPHAN = "delete-orphan"
    ADD_TO_INDEX = "add-to-index"
    CONVERT_SHARD = "convert-shard"
    """``--to-safetensors``: a pickle file's tensors written as a safetensors shard."""


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    file: str
    reason: str
    tensor: str | None = None
    bytes_saved: int = 0
    new_name: str | None = None
    codes: tuple[str, ...] = ()
    """Finding codes this action resolves."""


@dataclass(frozen=True)
class KeptNote:
    """A tensor (or file) that looks redundant but stays, and why."""

    subject: str
    code: str
    reason: str


@dataclass(frozen=True)
class Options:
    drop_duplicates: bool = False
    tie_head: bool = False
    to_safetensors: bool = False


@dataclass(frozen=True)
class Dropped:
    """A stored copy the fix removes, and the byte-identical tensor a loader reads instead."""

    record: TensorRecord
    partner: TensorRecord
    via_tie: bool
    """True: a tie rule restores it from ``partner`` (the config must declare the tie).
    False: ``partner`` is another stored copy of the same name."""
    code: str


@dataclass(frozen=True)
class OutputFile:
    """One weight file of the fixed checkpoint."""

    name: str
    tensors: tuple[TensorRecord, ...]
    """Source ranges, in output order."""
    metadata: Mapping[str, str]
    source: str | None = None
    """Set when the file is a whole, unchanged source file (kept, or renamed): no rewrite needed."""


@dataclass(frozen=True)
class ConfigEdit:
    key: str
    value: bool
    reason: str


FindingKey = tuple[str, frozenset[str]]


@dataclass(frozen=True)
class Plan:
    location: str
    options: Options
    files: tuple[OutputFile, ...]
    index_name: str | None
    index_text: str | None
    """The new index, or None when there is no index (single file)."""
    config_name: str | None
    config_text: str | None
    """The new config, or None when it is not edited."""
    removed: tuple[str, ...]
    """Old weight files that the fixed checkpoint no longer has (emptied, deleted orphans, renamed away)."""
    dropped: tuple[Dropped, ...]
    actions: tuple[Action, ...]
    kept: tuple[KeptNote, ...]
    fixed: frozenset[FindingKey] = field(default_factory=frozenset)
    """Keys (see :func:`finding_key`) of the findings this plan resolves."""
    old_index_files: frozenset[str] = field(default_factory=frozenset)
    """Weight files the current index (or single-file layout) makes loaders read."""
    deleted_orphans: frozenset[str] = field(default_factory=frozenset)
    """Orphans the fix deletes (some may be overwritten by a renumbered shard instead)."""

    @property
    def bytes_saved(self) -> int:
        return sum(a.bytes_saved for a in self.actions)

    @property
    def empty(self) -> bool:
        return not self.actions

    @property
    def dropped_names(self) -> frozenset[str]:
        return frozenset(d.record.name for d in self.dropped)

    def changed_files(self) -> tuple[OutputFile, ...]:
        """Output files whose bytes or name differ from the source."""
        return tuple(f for f in self.files if f.source != f.name)


def finding_key(f: Finding, dropped: frozenset[str] = frozenset()) -> FindingKey:
    """What identifies a finding across a fix: its code and tensors (less those the fix drops), else its files."""
    names = frozenset(f.tensors) - dropped
    return (f.code, names if f.tensors else frozenset(f.files))
