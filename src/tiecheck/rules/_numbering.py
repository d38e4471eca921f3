"""Numbered modules (``model.layers.{i}.``) against a count from config.json: which indices are missing.

The count is input like everything else in a checkpoint: ``num_hidden_layers: 10**18`` must cost what the
stored names cost, not what the count says. So missing indices are kept as runs, computed from the stored
indices only, and the tensor names a finding lists for them are capped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Missing tensor names a finding lists at most; its message still gives the full count.
MAX_NAMED = 4096


@dataclass(frozen=True)
class Run:
    """Indices ``first`` to ``last``, both included."""

    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def absent_runs(count: int, stored: Iterable[int]) -> list[Run]:
    """The runs of indices in ``range(count)`` that are not stored, in order, in time linear in ``stored``."""
    runs: list[Run] = []
    following = 0
    for i in sorted({i for i in stored if 0 <= i < count}):
        if i > following:
            runs.append(Run(following, i - 1))
        following = i + 1
    if following < count:
        runs.append(Run(following, count - 1))
    return runs


def runs_of(indices: Iterable[int]) -> list[Run]:
    """``[3, 4, 5, 9]`` -> runs 3-5 and 9."""
    runs: list[Run] = []
    for i in sorted(set(indices)):
        if runs and runs[-1].last == i - 1:
            runs[-1] = Run(runs[-1].first, i)
        else:
            runs.append(Run(i, i))
    return runs


def describe(runs: Iterable[Run]) -> str:
    """Runs as ``3-5, 9``."""
    return ", ".join(str(r.first) if r.size == 1 else f"{r.first}-{r.last}" for r in runs)


def is_tail(runs: list[Run], count: int) -> bool:
    """Whether the runs are one block that ends at the last index: the last modules cut, not a gap."""
    return len(runs) == 1 and runs[0].last == count - 1


def suffixes(prefix: str, stored: dict[int, list[str]]) -> list[str]:
    """What each index holds after ``prefix{i}.``: the suffixes every stored index has (all of them if none)."""
    found = [{n[len(prefix) + len(str(i)) + 1 :] for n in names} for i, names in stored.items()]
    common = set.intersection(*found) or set.union(*found)
    return sorted(common)


@dataclass(frozen=True)
class Missing:
    """The tensors that missing indices would hold: the first ``MAX_NAMED`` names and how many there are."""

    names: tuple[str, ...]
    count: int


def missing_names(prefix: str, stored: dict[int, list[str]], runs: Iterable[Run]) -> Missing:
    """The names the missing runs would hold, after the stored indices' pattern."""
    each = suffixes(prefix, stored)
    names: list[str] = []
    count = 0
    for run in runs:
        count += run.size * len(each)
        i = run.first
        while len(names) < MAX_NAMED and i <= run.last:
            names += [f"{prefix}{i}.{s}" for s in each][: MAX_NAMED - len(names)]
            i += 1
    return Missing(tuple(names), count)


def next_to(runs: Iterable[Run], stored: dict[int, list[str]]) -> list[str]:
    """The stored names of the indices right before and after each run: where the missing ones were expected."""
    return [n for r in runs for j in (r.first - 1, r.last + 1) if j in stored for n in stored[j]]
