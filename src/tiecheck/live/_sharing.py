"""What the savers do with tensors that share memory, as pure functions over byte areas.

``safetensors.torch.save_file`` refuses a dict in which two tensors overlap in memory ("Some tensors
share memory"); transformers' ``save_pretrained`` drops the names its model declares tied and refuses
the other overlaps. Both decide from the same facts: which storage each tensor views and which byte
range of it. Those facts are extracted from torch (or numpy) objects elsewhere; here they are plain
data, so the decisions can be tested without torch and mirrored exactly, quirks included:

- safetensors groups by (device, storage pointer, storage size), skips meta tensors and empty
  storages, and splits a group into runs of overlapping areas remembering only the *last* area's end
  (a full tensor followed by two slices can be split into two runs).
- transformers groups meta tensors by object identity, remembers the furthest end of a run, deletes the
  declared tied names of identical areas (keeping one name of each group) and refuses the rest.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Area:
    """Where one tensor's elements live: a storage and a byte range inside it (end exclusive)."""

    name: str
    device: str
    storage: int
    """Storage identity: its data pointer, or an object identity where there is none (meta tensors)."""
    storage_size: int
    start: int
    """Address of the first element."""
    end: int
    """Address just past the last element in C order (the start for an empty tensor)."""
    meta: bool = False
    numpy: bool = False
    """A numpy array: ``safetensors.numpy.save_file`` copies bytes and never checks sharing."""


@dataclass(frozen=True)
class SaveOutcome:
    """What a saver does with a state dict: the names it writes, drops or refuses."""

    dropped: tuple[str, ...] = ()
    """Names not written (the loader must restore them from a tie)."""
    cloned: tuple[str, ...] = ()
    """Names that share a storage with others without overlapping; written as separate copies."""
    refused: tuple[tuple[str, ...], ...] = ()
    """Groups of overlapping names that make the saver raise."""

    @property
    def raises(self) -> bool:
        return bool(self.refused)


def _runs(group: Sequence[Area], keep_max_end: bool) -> list[list[Area]]:
    """Split one storage's areas into runs of overlapping areas, the way each saver does."""
    ordered = sorted(group, key=lambda a: (a.start, a.end, a.name))
    runs = [[ordered[0]]]
    last_stop = ordered[0].end
    for area in ordered[1:]:
        if area.start >= last_stop:
            runs.append([area])
        else:
            runs[-1].append(area)
        last_stop = max(last_stop, area.end) if keep_max_end else area.end
    return runs


def safetensors_save_file(areas: Iterable[Area]) -> SaveOutcome:
    """Mirror ``safetensors.torch.save_file``: overlapping torch tensors raise; nothing is dropped."""
    groups: dict[tuple[str, int, int], list[Area]] = defaultdict(list)
    for area in areas:
        if not area.meta and not area.numpy and area.storage != 0 and area.storage_size != 0:
            groups[(area.device, area.storage, area.storage_size)].append(area)
    refused = [
        tuple(sorted(a.name for a in run))
        for group in groups.values()
        for run in _runs(group, keep_max_end=False)
        if len(run) > 1
    ]
    return SaveOutcome(refused=tuple(sorted(refused)))


def transformers_save_pretrained(areas: Iterable[Area], tied_keys: Iterable[str]) -> SaveOutcome:
    """Mirror transformers 5's ``remove_tied_weights_from_state_dict``.

    ``tied_keys`` are the tie targets the model declares (``_tied_weights_keys`` keys of every
    submodule, prefixed), matched with ``re.search`` as transformers does.
    """
    patterns = [re.compile(k) for k in tied_keys]
    groups: dict[tuple[str, int, int] | tuple[str, int], list[Area]] = defaultdict(list)
    for area in areas:
        key = ("meta", area.storage) if area.meta else (area.device, area.storage, area.storage_size)
        groups[key].append(area)
    shared = [g for g in groups.values() if len(g) > 1]

    to_delete: set[str] = set()
    for group in shared:
        found = 0
        for name in sorted(a.name for a in group):
            if any(p.search(name) for p in patterns):
                found += 1
                if found < len(group):
                    to_delete.add(name)

    cloned: list[str] = []
    overlapping: list[list[Area]] = []
    for group in shared:
        for run in _runs(group, keep_max_end=True):
            (cloned.append(run[0].name) if len(run) == 1 else overlapping.append(run))

    dropped: list[str] = []
    refused: list[tuple[str, ...]] = []
    for run in overlapping:
        if len({(a.device, a.start, a.end) for a in run}) == 1:  # identical areas: aliases of one tensor
            names = {a.name for a in run}
            dropped.extend(sorted(names & to_delete))
            unknown = names - to_delete
            if len(unknown) > 1:
                refused.append(tuple(sorted(unknown)))
        else:
            refused.append(tuple(sorted(a.name for a in run)))
    return SaveOutcome(dropped=tuple(sorted(dropped)), cloned=tuple(sorted(cloned)), refused=tuple(sorted(refused)))


def sharing_groups(areas: Iterable[Area]) -> list[list[Area]]:
    """Names that view one storage, grouped by storage identity (two or more names each)."""
    groups: dict[tuple[str, int], list[Area]] = defaultdict(list)
    for area in areas:
        groups[(area.device, area.storage)].append(area)
    return [sorted(g, key=lambda a: a.name) for g in groups.values() if len(g) > 1]


def relation(group: Sequence[Area]) -> str:
    """``identical`` (every name views the same bytes), ``overlapping`` or ``disjoint`` views of one storage."""
    if len({(a.start, a.end) for a in group}) == 1:
        return "identical"
    ordered = sorted(group, key=lambda a: (a.start, a.end))
    furthest = ordered[0].end
    for area in ordered[1:]:
        if area.start < furthest:
            return "overlapping"
        furthest = max(furthest, area.end)
    return "disjoint"
